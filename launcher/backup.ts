/**
 * Backup and restore of the embedded PGlite database (the standalone platform's `<dataDir>/pglite`).
 * Framework-free; the CLIs are scripts/backup.ts and scripts/restore.ts.
 *
 * An archive is PGlite's own `dumpDataDir()` tarball (gzip): the whole PostgreSQL data directory,
 * taken after a CHECKPOINT while this process holds the only open instance. Restoring unpacks it
 * with PGlite's `loadDataDir` into a temporary folder beside the target, opens it and reads
 * schema_migrations, and only then swaps it in with a rename.
 *
 * Both refuse while the platform, or any process, has the database open (./pid-file.ts). Archives
 * are written owner-only (mode 0600, whatever the umask): they hold every device's key.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { PGlite } from '@electric-sql/pglite';
import { ownerOnlyTree } from '../nodes/core/db/owner-only';
import { platformPidFile, processesUsing, runningPlatformPid } from './pid-file';

export type BackupErrorCode =
  | 'NO_DATABASE' // nothing to back up at the given folder
  | 'PLATFORM_RUNNING' // the platform (or another process) has the database open
  | 'FILE_MISSING' // the archive to restore does not exist
  | 'CORRUPT_ARCHIVE' // the archive is not a readable Conflux database
  | 'TARGET_EXISTS' // restore onto an existing database without force, or backup onto an existing file
  | 'FAILED'; // anything else

/** Exit codes the CLIs use for each failure. */
export const EXIT_CODES: Readonly<Record<BackupErrorCode, number>> = {
  FAILED: 1,
  NO_DATABASE: 3,
  PLATFORM_RUNNING: 4,
  FILE_MISSING: 5,
  CORRUPT_ARCHIVE: 6,
  TARGET_EXISTS: 7,
};

export class BackupError extends Error {
  override readonly name = 'BackupError';
  constructor(
    readonly code: BackupErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

export interface BackupInfo {
  /** Absolute path of the archive written. */
  file: string;
  bytes: number;
  /** The highest applied schema migration in the backed-up database. */
  schemaVersion: number;
  createdAt: Date;
}

export interface RestoreInfo {
  /** The database folder now holding the restored data. */
  pgliteDir: string;
  schemaVersion: number;
  /** Where the database that was replaced went (force only); undefined when there was none. */
  movedAside?: string;
}

export interface RunningCheckOptions {
  /** The platform's data directory holding conflux.pid. Default: the parent of pgliteDir. */
  dataDir?: string;
}

// ---------------------------------------------------------------------------------------------
// Platform running check

/** The embedded database's folder under the platform's data directory. */
export function embeddedDir(dataDir: string): string {
  return path.join(dataDir, 'pglite');
}

function assertNotRunning(pgliteDir: string, options: RunningCheckOptions, doing: string): void {
  const dataDir = options.dataDir ?? path.dirname(pgliteDir);
  const pid = runningPlatformPid(dataDir);
  if (pid !== undefined) {
    throw new BackupError(
      'PLATFORM_RUNNING',
      `cannot ${doing}: the Conflux platform is running (pid ${pid}, ${platformPidFile(dataDir)}); stop it first. ` +
        `If no platform is running, that pid belongs to another process: delete the file.`,
    );
  }
  const holders = processesUsing(pgliteDir);
  if (holders.length > 0) {
    throw new BackupError('PLATFORM_RUNNING', `cannot ${doing}: ${pgliteDir} is open in process ${holders.join(', ')}; stop it first`);
  }
}

// ---------------------------------------------------------------------------------------------
// Archive checks

/** `20251122T101530Z`: UTC, sortable, safe in file names. */
export function utcStamp(date: Date = new Date()): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
}

/** The CLI's default archive name, relative to the working directory. */
export function defaultBackupFile(date: Date = new Date()): string {
  return path.join('backups', `conflux-${utcStamp(date)}.tar.gz`);
}

function hasDatabase(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'PG_VERSION'));
}

function isNonEmptyDir(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length > 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

function corrupt(file: string, why: string, cause?: unknown): BackupError {
  return new BackupError('CORRUPT_ARCHIVE', `${file} is not a usable Conflux database backup: ${why}`, { cause });
}

function octal(block: Buffer, start: number, length: number): number {
  const text = block
    .toString('latin1', start, start + length)
    .replace(/\0.*$/s, '')
    .trim();
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : NaN;
}

/**
 * Decompresses (when gzip) and walks the tar headers: every header's checksum must match, every
 * member must lie within the data, and the root PG_VERSION must be there. Returns the plain tar.
 */
export function checkArchive(data: Buffer, file = 'archive'): Buffer {
  let tarball = data;
  if (data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b) {
    try {
      tarball = zlib.gunzipSync(data);
    } catch (err) {
      throw corrupt(file, `gzip: ${(err as Error).message}`, err);
    }
  }
  let offset = 0;
  let members = 0;
  let pgVersion = false;
  for (;;) {
    if (offset + 512 > tarball.length) throw corrupt(file, 'the tar archive is truncated');
    const header = tarball.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break; // end of archive
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
    if (octal(header, 148, 8) !== sum) throw corrupt(file, `bad tar header at byte ${offset}`);
    const size = octal(header, 124, 12);
    if (!Number.isFinite(size)) throw corrupt(file, `bad tar member size at byte ${offset}`);
    const name = header.toString('latin1', 0, 100).replace(/\0.*$/s, '');
    const prefix = header.toString('latin1', 345, 500).replace(/\0.*$/s, '');
    const full = (prefix ? `${prefix}/${name}` : name).replace(/^(\.?\/)+/, '');
    if (full === 'PG_VERSION') pgVersion = true;
    offset += 512 + Math.ceil(size / 512) * 512;
    if (offset > tarball.length) throw corrupt(file, `the tar archive is truncated (in ${full})`);
    members++;
  }
  if (members === 0) throw corrupt(file, 'the archive is empty');
  if (!pgVersion) throw corrupt(file, 'no PG_VERSION: not a PostgreSQL data directory');
  return tarball;
}

/** A plain tar for PGlite's loadDataDir (a view, not a copy). */
function tarBlob(tarball: Buffer): Blob {
  return new Blob([new Uint8Array(tarball.buffer as ArrayBuffer, tarball.byteOffset, tarball.length)], { type: 'application/x-tar' });
}

async function loadPglite(): Promise<typeof PGlite> {
  return (await import('@electric-sql/pglite')).PGlite;
}

/** The highest applied migration; throws when schema_migrations is missing or empty. */
async function schemaVersion(db: PGlite): Promise<number> {
  const { rows } = await db.query<{ version: number | null }>('SELECT max(version)::int AS version FROM schema_migrations');
  const version = rows[0]?.version;
  if (typeof version !== 'number') throw new Error('schema_migrations is empty');
  return version;
}

/** Opens a tarball in an in-memory PGlite and reads its schema version. */
async function verifyInMemory(tarball: Buffer, file: string): Promise<number> {
  const PGliteClass = await loadPglite();
  let db: PGlite | undefined;
  try {
    db = await PGliteClass.create({ loadDataDir: tarBlob(tarball) });
    return await schemaVersion(db);
  } catch (err) {
    throw corrupt(file, (err as Error).message, err);
  } finally {
    await db?.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Backup and restore

/**
 * Writes a gzip tarball of the PGlite database in pgliteDir to outFile (created atomically: a
 * temporary file renamed at the end; never overwrites). Refuses while the platform is running.
 * The archive is checked by opening it in memory before it is kept.
 */
export async function backupEmbedded(pgliteDir: string, outFile: string, options: RunningCheckOptions = {}): Promise<BackupInfo> {
  const dir = path.resolve(pgliteDir);
  const out = path.resolve(outFile);
  if (!hasDatabase(dir)) {
    throw new BackupError(
      'NO_DATABASE',
      fs.existsSync(dir)
        ? `no database to back up: ${dir} holds no PGlite database (no PG_VERSION)`
        : `no database to back up: ${dir} does not exist (has the platform run with the embedded database?)`,
    );
  }
  assertNotRunning(dir, options, 'back up');
  if (fs.existsSync(out)) throw new BackupError('TARGET_EXISTS', `${out} already exists; choose another file`);

  const createdAt = new Date();
  const PGliteClass = await loadPglite();
  let db: PGlite | undefined;
  let tarball: Buffer;
  let version: number;
  try {
    db = await PGliteClass.create({ dataDir: dir });
    try {
      version = await schemaVersion(db);
    } catch (err) {
      throw new BackupError('NO_DATABASE', `no Conflux database to back up in ${dir}: ${(err as Error).message}`, { cause: err });
    }
    await db.exec('CHECKPOINT');
    const dump = await db.dumpDataDir('gzip');
    tarball = Buffer.from(await dump.arrayBuffer());
  } finally {
    await db?.close();
  }

  // The archive must restore: check it the way restore will, before keeping it.
  const verified = await verifyInMemory(checkArchive(tarball, out), out).catch((err: unknown) => {
    throw new BackupError('FAILED', `the backup did not verify: ${(err as Error).message}`, { cause: err });
  });
  if (verified !== version) throw new BackupError('FAILED', `the backup did not verify: schema version ${verified}, expected ${version}`);

  fs.mkdirSync(path.dirname(out), { recursive: true, mode: 0o700 });
  const tmp = `${out}.partial-${process.pid}`;
  try {
    fs.writeFileSync(tmp, tarball, { flag: 'wx', mode: 0o600 });
    const fd = fs.openSync(tmp, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (fs.existsSync(out)) throw new BackupError('TARGET_EXISTS', `${out} already exists; choose another file`);
    fs.renameSync(tmp, out);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return { file: out, bytes: tarball.length, schemaVersion: version, createdAt };
}

function asideName(dir: string): string {
  const base = `${dir}.before-restore-${utcStamp()}`;
  let name = base;
  for (let i = 1; fs.existsSync(name); i++) name = `${base}-${i}`;
  return name;
}

/**
 * Replaces the database in pgliteDir with the archive in file. Refuses while the platform is
 * running, and when pgliteDir already holds something unless force — then the old folder is
 * renamed to `<pgliteDir>.before-restore-<UTC timestamp>`, never deleted. The archive is
 * unpacked into a temporary folder beside pgliteDir and opened (schema_migrations read) before
 * anything is swapped; on any failure the temporary folder is removed and pgliteDir is untouched.
 */
export async function restoreEmbedded(file: string, pgliteDir: string, options: { force?: boolean } & RunningCheckOptions = {}): Promise<RestoreInfo> {
  const source = path.resolve(file);
  const dir = path.resolve(pgliteDir);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(source);
  } catch {
    throw new BackupError('FILE_MISSING', `backup file not found: ${source}`);
  }
  if (!stat.isFile()) throw new BackupError('FILE_MISSING', `not a file: ${source}`);
  assertNotRunning(dir, options, 'restore');
  const existing = isNonEmptyDir(dir);
  if (existing && !options.force) {
    throw new BackupError(
      'TARGET_EXISTS',
      `${dir} already holds a database; restore with force (--force) to replace it (the old one is kept beside it as ${path.basename(dir)}.before-restore-<timestamp>)`,
    );
  }

  const tarball = checkArchive(fs.readFileSync(source), source);

  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(`${dir}.restore-`);
  let version: number;
  try {
    const PGliteClass = await loadPglite();
    let db: PGlite | undefined;
    try {
      db = await PGliteClass.create({ dataDir: tmp, loadDataDir: tarBlob(tarball) });
      version = await schemaVersion(db);
    } catch (err) {
      throw corrupt(source, (err as Error).message, err);
    } finally {
      await db?.close().catch(() => undefined);
    }
    if (!hasDatabase(tmp)) throw corrupt(source, 'nothing was restored');
    ownerOnlyTree(tmp); // PGlite unpacks with mode 0666; the database holds device keys

    let movedAside: string | undefined;
    if (existing) {
      movedAside = asideName(dir);
      fs.renameSync(dir, movedAside);
    } else if (fs.existsSync(dir)) {
      fs.rmdirSync(dir); // an empty folder
    }
    try {
      fs.renameSync(tmp, dir);
    } catch (err) {
      if (movedAside) fs.renameSync(movedAside, dir);
      throw err;
    }
    return { pgliteDir: dir, schemaVersion: version, movedAside };
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (err instanceof BackupError) throw err;
    throw new BackupError('FAILED', `restore failed: ${(err as Error).message}`, { cause: err });
  }
}
