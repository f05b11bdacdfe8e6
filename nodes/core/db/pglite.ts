/**
 * SqlClient over embedded PGlite (PostgreSQL in WASM): the default when no server is configured.
 * PGlite is one connection: a lock admits one statement or one whole transaction at a time,
 * so concurrent callers never interleave inside someone else's transaction.
 */
import * as fs from 'node:fs';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { ownerOnlyTree } from './owner-only';
import { assertOutsideTransaction, checkChannel, insideTransaction, OID, parseInt8, withSavepoint, type QueryResult, type SqlClient } from './sql';

/** A FIFO mutex: each task starts when the previous one has settled. */
class Lock {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

const parsers = {
  [OID.int8]: parseInt8,
  [OID.date]: (text: string) => text,
  // PGlite gives a Uint8Array; pg gives a Buffer. Agree on Buffer.
  [OID.bytea]: (text: string) => Buffer.from(text.slice(2), 'hex'),
};

type Runner = Pick<PGlite, 'query'> | Transaction;

const SHARED_BUFFERS = '32MB';

async function run<T>(db: Runner, text: string, params?: readonly unknown[]): Promise<QueryResult<T>> {
  const result = await db.query<T>(text, params ? [...params] : undefined);
  // PGlite reports affectedRows 0 for SELECT; pg counts the rows returned.
  return { rows: result.rows, rowCount: result.affectedRows || result.rows.length };
}

function txClient(tx: Transaction): SqlClient {
  const client: SqlClient = {
    kind: 'pglite',
    query: (text, params) => run(tx, text, params),
    exec: async (script) => void (await tx.exec(script)),
    transaction: (fn) => withSavepoint(client, fn),
    listen: () => Promise.reject(new Error('listen on the outer SqlClient, not a transaction')),
    close: () => Promise.reject(new Error('close the outer SqlClient, not a transaction')),
  };
  return client;
}

/** Opens PGlite under dataDir (created if missing), or in memory when dataDir is empty. */
export async function openPglite(dataDir?: string): Promise<SqlClient> {
  const inMemory = !dataDir || dataDir.startsWith('memory://');
  if (!inMemory) fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // shared_buffers 32 MB instead of postgresql.conf's 128 MB: in one process beside Node-RED the
  // buffers are resident memory (bench/RESULTS.md, memory); the data directory's pages stay in
  // the OS cache anyway. A start parameter, not postgresqlconf, which would replace the whole
  // file (and its timezone = UTC).
  const db = await PGlite.create({
    dataDir: inMemory ? undefined : dataDir,
    parsers,
    startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${SHARED_BUFFERS}`],
  });
  if (!inMemory) ownerOnlyTree(dataDir); // device keys live here
  const lock = new Lock();
  let closed = false;
  const owner = {};
  // Checked before taking the lock: a call from inside a transaction would wait on it forever.
  const guarded = <T>(task: () => Promise<T>): Promise<T> => {
    try {
      assertOutsideTransaction(owner);
    } catch (err) {
      return Promise.reject(err);
    }
    return lock.run(() => {
      if (closed) throw new Error('SqlClient is closed');
      return task();
    });
  };
  return {
    kind: 'pglite',
    query: (text, params) => guarded(() => run(db, text, params)),
    exec: (script) => guarded(async () => void (await db.exec(script))),
    transaction: (fn) => guarded(() => db.transaction((tx) => insideTransaction(owner, () => fn(txClient(tx))))),
    // PGlite's own LISTEN: one in-process session, so notifications are never lost and onReconnect is never called.
    listen: async (channel, onPayload) => {
      checkChannel(channel);
      if (closed) throw new Error('SqlClient is closed');
      const unlisten = await db.listen(channel, onPayload);
      let done = false;
      return async () => {
        if (done || closed) return;
        done = true;
        await unlisten();
      };
    },
    close: () =>
      lock.run(async () => {
        if (closed) return;
        closed = true;
        await db.close();
      }),
  };
}
