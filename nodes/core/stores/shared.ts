/**
 * Process-wide shared resources with reference counts. Two config nodes naming the same embedded
 * database must share one PGlite (it is one process's files), and a redeploy may open the new
 * user before the old one has finished closing: an acquire waits for a close in progress.
 */
interface Entry<R> {
  value: Promise<R>;
  refs: number;
  close: (value: R) => Promise<void>;
}

const entries = new Map<string, Entry<unknown>>();
const closing = new Map<string, Promise<void>>();

export interface Lease<R> {
  readonly value: Promise<R>;
  /** Drops this reference; the last one closes the resource. Safe to call twice. */
  release(): Promise<void>;
}

export function acquire<R>(key: string, open: () => Promise<R>, close: (value: R) => Promise<void>): Lease<R> {
  let entry = entries.get(key) as Entry<R> | undefined;
  if (entry) entry.refs++;
  else {
    const previous = closing.get(key) ?? Promise.resolve();
    const value = previous.then(open);
    entry = { value, refs: 1, close };
    entries.set(key, entry as Entry<unknown>);
    // A failed open is not cached: the next acquire tries again.
    value.catch(() => {
      if (entries.get(key) === entry) entries.delete(key);
    });
  }
  const held = entry;
  let released = false;
  return {
    value: held.value,
    release: async () => {
      if (released) return;
      released = true;
      if (--held.refs > 0) return;
      if (entries.get(key) === held) entries.delete(key);
      const done = held.value
        .then(
          (v) => held.close(v),
          () => undefined,
        )
        .finally(() => {
          if (closing.get(key) === done) closing.delete(key);
        });
      closing.set(key, done);
      await done;
    },
  };
}
