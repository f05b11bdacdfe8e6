import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * One SQL interface over two engines: a real PostgreSQL (pg.Pool) and embedded PGlite. Stores
 * are written once against SqlClient; `openSql` picks the engine from the configuration.
 *
 * Both engines return the same JS values: int8 as a number (a bigint past 2^53), numeric as a
 * string, timestamptz as a Date, date as 'YYYY-MM-DD', json/jsonb parsed, bytea as a Buffer.
 * Parameters: pass jsonb values as JSON.stringify(value) — pg would send a JS array as a
 * PostgreSQL array, not as JSON.
 */

export interface QueryResult<T> {
  rows: T[];
  /** Rows returned or affected (INSERT/UPDATE/DELETE without RETURNING count too). */
  rowCount: number;
}

export interface SqlClient {
  readonly kind: 'postgres' | 'pglite';
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<T>>;
  /** Runs a script of one or more statements without parameters (migrations). */
  exec(script: string): Promise<void>;
  /**
   * Runs fn inside BEGIN … COMMIT on one connection, ROLLBACK if it throws. Use only `tx`
   * inside fn: the outer client rejects calls made from fn (on PGlite they would deadlock, on
   * PostgreSQL run outside the transaction). Nested `tx.transaction` calls use a savepoint.
   */
  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T>;
  /**
   * LISTENs on `channel` (a lower-case identifier, see checkChannel) and calls onPayload with
   * each NOTIFY's payload; resolves once the LISTEN is in effect, to the function that stops it.
   * On PostgreSQL a dedicated connection outside the pool carries every channel of this client:
   * after it is lost it reconnects and LISTENs again, then calls onReconnect, since notifications
   * sent meanwhile are lost and the caller must look again at what it waits for. On PGlite it is
   * PGlite's own listen (never lost). Transaction handles refuse it.
   */
  listen(channel: string, onPayload: (payload: string) => void, onReconnect?: () => void): Promise<Unlisten>;
  close(): Promise<void>;
}

export type Unlisten = () => Promise<void>;

/** NOTIFY's limit is 8000 bytes; under it, with room to spare. */
export const MAX_NOTIFY_BYTES = 7900;

const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Channel names are identifiers: lower case, digits and underscores, at most 63 bytes, so that
 * they need no quoting and mean the same to LISTEN, pg_notify and PGlite (which lower-cases
 * unquoted names).
 */
export function checkChannel(channel: string): void {
  if (!CHANNEL.test(channel)) throw new Error(`"${channel}" is not a channel name: lower-case letters, digits and _, at most 63`);
}

/**
 * Sends `payload` to the listeners of `channel` (pg_notify; inside a transaction, at its commit).
 * A payload over MAX_NOTIFY_BYTES is refused here, clearly: send an id and keep the data in a table.
 */
export async function notify(sql: SqlClient, channel: string, payload: string): Promise<void> {
  checkChannel(channel);
  const bytes = Buffer.byteLength(payload);
  if (bytes > MAX_NOTIFY_BYTES) throw new Error(`a notification carries at most ${MAX_NOTIFY_BYTES} bytes; this one has ${bytes}`);
  await sql.query('SELECT pg_notify($1, $2)', [channel, payload]);
}

export interface TlsOptions {
  /** false accepts any certificate: only for testing. Default true. */
  rejectUnauthorized?: boolean;
  /** PEM: a CA bundle, and a client certificate and key for mutual TLS. */
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
}

export interface SqlConfig {
  /**
   * postgres://user:pass@host:port/db?… — also multi-host as libpq writes it
   * (host1:5432,host2:5432/db?target_session_attrs=read-write). Empty means PGlite.
   */
  connectionString?: string;
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  /** Maximum pooled connections (PostgreSQL only). Default 10. */
  poolSize?: number;
  /** true: TLS with the system CAs; an object: TLS with these options. */
  tls?: boolean | TlsOptions;
  applicationName?: string;
  /** PGlite's data directory; empty or 'memory://' keeps the database in memory. */
  dataDir?: string;
}

/** Whether the configuration names a PostgreSQL server; otherwise openSql uses PGlite. */
export function isServerConfig(config: SqlConfig): boolean {
  return Boolean(config.connectionString?.trim() || config.host?.trim());
}

/** Opens the engine the configuration names. PGlite is loaded only when used: it is heavy. */
export async function openSql(config: SqlConfig): Promise<SqlClient> {
  if (isServerConfig(config)) {
    const { openPostgres } = await import('./postgres');
    return openPostgres(config);
  }
  const { openPglite } = await import('./pglite');
  return openPglite(config.dataDir);
}

/** int8 as a number while exact, else a bigint: ids and counts stay plain numbers. */
export function parseInt8(text: string): number | bigint {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : BigInt(text);
}

/** OIDs of the types whose parsing both engines override to agree. */
export const OID = { int8: 20, bytea: 17, date: 1082 } as const;

let savepoints = 0;
/** A unique savepoint name, for nested transactions on both engines. */
export function nextSavepoint(): string {
  savepoints = (savepoints + 1) % 1_000_000_000;
  return `conflux_sp_${savepoints}`;
}

/** Runs fn between SAVEPOINT and RELEASE, rolling back to the savepoint if it throws. */
export async function withSavepoint<T>(tx: SqlClient, fn: (tx: SqlClient) => Promise<T>): Promise<T> {
  const name = nextSavepoint();
  await tx.query(`SAVEPOINT ${name}`);
  try {
    const result = await fn(tx);
    await tx.query(`RELEASE SAVEPOINT ${name}`);
    return result;
  } catch (err) {
    await tx.query(`ROLLBACK TO SAVEPOINT ${name}`);
    throw err;
  }
}

interface Frame {
  owner: object;
  active: boolean;
}
const frames = new AsyncLocalStorage<readonly Frame[]>();

/** Runs fn marked as inside a transaction of owner, until fn settles. */
export async function insideTransaction<T>(owner: object, fn: () => Promise<T>): Promise<T> {
  const frame: Frame = { owner, active: true };
  try {
    return await frames.run([...(frames.getStore() ?? []), frame], fn);
  } finally {
    frame.active = false; // timers fn left behind may use the client once it has ended
  }
}

/** Throws when called from inside a running transaction of owner: the caller meant `tx`. */
export function assertOutsideTransaction(owner: object): void {
  if (frames.getStore()?.some((f) => f.active && f.owner === owner)) {
    throw new Error('SqlClient used inside its own transaction: use the tx handle passed to the transaction function');
  }
}
