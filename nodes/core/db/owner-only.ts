/**
 * Files that hold device keys (the embedded database) and secrets are their owner's only. PGlite
 * unpacks its initial database with explicit chmod 0666 (Emscripten's file system ignores the
 * process umask there), so openPglite takes group and other permissions off after it opens; the
 * standalone launcher does the same to its whole data directory at start and sets umask 077.
 * Framework-free.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const OWNER_ONLY_UMASK = 0o077;

/** Creates dir (mode 0700) when missing and makes it and everything under it owner-only. Returns how many modes changed. */
export function ownerOnlyTree(dir: string): number {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  let changed = 0;
  const visit = (p: string): void => {
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) return; // its target is not ours to change
    const mode = st.mode & 0o7777;
    const wanted = st.isDirectory() ? (mode | 0o700) & ~0o077 : mode & ~0o077;
    if (mode !== wanted) {
      fs.chmodSync(p, wanted);
      changed++;
    }
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name));
  };
  visit(dir);
  return changed;
}
