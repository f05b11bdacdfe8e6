/**
 * SqlClient over a PostgreSQL server with pg.Pool. A transaction holds one checked-out client
 * from BEGIN to COMMIT/ROLLBACK.
 *
 * Multi-host connection strings as libpq writes them (postgres://u@h1:5432,h2:5433/db?
 * target_session_attrs=read-write) are handled here, since pg itself takes one host: hosts are
 * tried in order, and with target_session_attrs=read-write (or primary) a host whose session
 * is read-only is passed over. One pool serves the current host; when it cannot connect, or a
 * new connection lands on a read-only server, the next host takes over.
 */
import * as pg from 'pg';
import type { ConnectionOptions } from 'node:tls';
import { PgListener } from './listen';
import { assertOutsideTransaction, insideTransaction, OID, parseInt8, withSavepoint, type QueryResult, type SqlClient, type SqlConfig } from './sql';

const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === OID.int8) return parseInt8;
    if (oid === OID.date) return (text: string) => text;
    return pg.types.getTypeParser(oid, format as 'text');
  }) as typeof pg.types.getTypeParser,
};

/** Errors meaning "this server is unreachable or going away": worth trying the next host. */
const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  '57P01',
  '57P02',
  '57P03',
]);

export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && CONNECTION_ERRORS.has(code)) return true;
  return err instanceof Error && /timeout expired|Connection terminated|not queryable/i.test(err.message);
}

export interface HostTarget {
  host: string;
  port?: number;
}

export interface ParsedConnection {
  hosts: HostTarget[];
  user?: string;
  password?: string;
  database?: string;
  applicationName?: string;
  /** From sslmode: false (disable), true (verify), 'no-verify'; undefined when not given. */
  ssl?: boolean | 'no-verify';
  requireWritable: boolean;
  connectTimeoutMs?: number;
}

/** Parses postgres:// or postgresql:// URLs, with one host or a comma-separated list of them. */
export function parseConnectionString(text: string): ParsedConnection {
  const m = /^(postgres(?:ql)?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)(.*)$/.exec(text.trim());
  if (!m) throw new Error('PostgreSQL connection string must start with postgres:// or postgresql://');
  const [, , userinfo, hostlist, rest] = m;
  // Parse the rest with one stand-in host so WHATWG URL does the decoding.
  const url = new URL(`postgres://${userinfo === undefined ? '' : `${userinfo}@`}h${rest}`);
  const hosts = hostlist
    .split(',')
    .filter((h) => h !== '')
    .map((h): HostTarget => {
      const hm = /^(\[[^\]]+\]|[^:]*)(?::(\d+))?$/.exec(h);
      if (!hm) throw new Error(`bad host in connection string: ${h}`);
      return { host: decodeURIComponent(hm[1].replace(/^\[|\]$/g, '')), port: hm[2] ? Number(hm[2]) : undefined };
    });
  const q = url.searchParams;
  const hostParam = q.get('host'); // postgres:///db?host=/var/run/postgresql
  if (hostParam) hosts.push(...hostParam.split(',').map((host) => ({ host })));
  const sslmode = q.get('sslmode');
  const tsa = q.get('target_session_attrs');
  const timeout = q.get('connect_timeout');
  return {
    hosts,
    user: url.username ? decodeURIComponent(url.username) : (q.get('user') ?? undefined),
    password: url.password ? decodeURIComponent(url.password) : (q.get('password') ?? undefined),
    database: url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : (q.get('dbname') ?? undefined),
    applicationName: q.get('application_name') ?? undefined,
    ssl: sslmode === null ? undefined : sslmode === 'disable' ? false : sslmode === 'no-verify' ? 'no-verify' : q.get('ssl') === 'false' ? false : true,
    requireWritable: tsa === 'read-write' || tsa === 'primary',
    connectTimeoutMs: timeout ? Number(timeout) * 1000 : undefined,
  };
}

function tlsOptions(config: SqlConfig, fromUrl: ParsedConnection['ssl']): false | ConnectionOptions {
  const tls = config.tls ?? (fromUrl === 'no-verify' ? { rejectUnauthorized: false } : fromUrl);
  if (!tls) return false;
  if (tls === true) return {};
  const opts: ConnectionOptions = { rejectUnauthorized: tls.rejectUnauthorized ?? true };
  if (tls.ca) opts.ca = tls.ca;
  if (tls.cert) opts.cert = tls.cert;
  if (tls.key) opts.key = tls.key;
  if (tls.servername) opts.servername = tls.servername;
  return opts;
}

/** One pg.PoolConfig per host, in the order to try them. Explicit fields override the URL. */
export function poolConfigs(config: SqlConfig): { configs: pg.PoolConfig[]; requireWritable: boolean } {
  const parsed: ParsedConnection = config.connectionString?.trim() ? parseConnectionString(config.connectionString) : { hosts: [], requireWritable: false };
  const hosts = config.host?.trim()
    ? config.host.split(',').map((host) => ({ host: host.trim(), port: config.port }))
    : parsed.hosts.length > 0
      ? parsed.hosts
      : [{ host: 'localhost' }];
  const common: pg.PoolConfig = {
    user: config.user || parsed.user,
    password: config.password || parsed.password,
    database: config.database || parsed.database,
    application_name: config.applicationName || parsed.applicationName || 'conflux',
    ssl: tlsOptions(config, parsed.ssl),
    max: config.poolSize ?? 10,
    connectionTimeoutMillis: parsed.connectTimeoutMs ?? 10_000,
    idleTimeoutMillis: 30_000,
    types,
  };
  return {
    configs: hosts.map((h) => ({ ...common, host: h.host, port: h.port ?? config.port ?? 5432 })),
    requireWritable: parsed.requireWritable,
  };
}

type Checked = pg.PoolClient & { confluxChecked?: boolean; confluxGuarded?: boolean };

const ignore = (): void => undefined;

class ReadOnlyServer extends Error {
  override readonly name = 'ReadOnlyServer';
  readonly code = '25006';
}

function result<T>(r: pg.QueryResult): QueryResult<T> {
  return { rows: r.rows as T[], rowCount: r.rowCount ?? r.rows.length };
}

/**
 * A pg.Pool on the current host of a list; when a connection fails, or (with requireWritable)
 * lands on a read-only server, the next host takes over. Shared by the SqlClient and the COPY
 * channel (copy.ts), so both follow a failover alike.
 */
export class HostPool {
  private current = 0;
  private pool: pg.Pool;
  private closed = false;

  constructor(
    private readonly configs: readonly pg.PoolConfig[],
    private readonly requireWritable: boolean,
  ) {
    this.pool = HostPool.newPool(configs[0]);
  }

  private static newPool(cfg: pg.PoolConfig): pg.Pool {
    const p = new pg.Pool(cfg);
    // An idle client losing its server emits 'error' on the pool; unhandled, it would crash Node.
    p.on('error', () => undefined);
    return p;
  }

  private failover(from: pg.Pool): void {
    if (this.pool !== from || this.configs.length === 1) return;
    this.current = (this.current + 1) % this.configs.length;
    this.pool = HostPool.newPool(this.configs[this.current]);
    void from.end().catch(() => undefined);
  }

  /** A client on a usable host: the current one, or the next that connects and suits. */
  async checkout(): Promise<pg.PoolClient> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.configs.length; attempt++) {
      if (this.closed) throw new Error('the PostgreSQL connection pool is closed');
      const p = this.pool;
      let client: Checked | undefined;
      try {
        client = (await p.connect()) as Checked;
        // pg-pool listens for a client's 'error' only while it is idle. A server going away while
        // one is checked out between two queries (a restart's "terminating connection due to
        // administrator command" in the middle of a transaction) emitted 'error' with no listener
        // and took the whole process down. The client is unqueryable after it: its next query
        // fails, and pg-pool drops it on release.
        if (!client.confluxGuarded) {
          client.on('error', ignore);
          client.confluxGuarded = true;
        }
        if (this.requireWritable && !client.confluxChecked) {
          const ro = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only');
          if (ro.rows[0]?.transaction_read_only === 'on') throw new ReadOnlyServer(`${this.configs[this.current].host} is read-only`);
        }
        client.confluxChecked = true;
        return client;
      } catch (err) {
        lastError = err;
        client?.release(true);
        if (!(err instanceof ReadOnlyServer) && !isConnectionError(err)) throw err;
        this.failover(p);
      }
    }
    throw lastError;
  }

  async end(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

export function openPostgres(config: SqlConfig): SqlClient {
  const { configs, requireWritable } = poolConfigs(config);
  const hosts = new HostPool(configs, requireWritable);
  const unusable = new WeakSet<pg.PoolClient>();
  // Opened on the first listen: most clients never LISTEN, and it costs a server connection.
  let listener: PgListener | undefined;

  const owner = {};

  async function withClient<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    assertOutsideTransaction(owner);
    const client = await hosts.checkout();
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      if (isConnectionError(err) || unusable.has(client)) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  }

  return {
    kind: 'postgres',
    query: <T>(text: string, params?: readonly unknown[]) => withClient(async (c) => result<T>(await c.query(text, params as unknown[] | undefined))),
    // Without parameters pg uses the simple protocol, which accepts several statements.
    exec: (script: string) => withClient(async (c) => void (await c.query(script))),
    transaction: <T>(fn: (tx: SqlClient) => Promise<T>) =>
      withClient((c) =>
        transactionOn(
          c,
          owner,
          (tx) => tx,
          fn,
          () => unusable.add(c),
        ),
      ),
    listen: (channel, onPayload, onReconnect) => {
      listener ??= new PgListener(
        configs.map(({ max: _max, idleTimeoutMillis: _idle, ...client }) => ({
          ...client,
          application_name: `${client.application_name ?? 'conflux'}-listen`,
        })),
        requireWritable,
      );
      return listener.listen(channel, onPayload, onReconnect);
    },
    close: async () => {
      await listener?.close();
      await hosts.end();
    },
  };
}

/**
 * Runs fn between BEGIN and COMMIT on one checked-out connection, with a transaction handle
 * over it (`extend` may add to the handle, as the COPY channel adds copyFrom); ROLLBACK if fn
 * throws. A connection that cannot roll back is in an unknown state: `broken` is called, and
 * the caller must not hand it out again. Shared by the SqlClient and the COPY channel (copy.ts).
 */
export async function transactionOn<T, H extends SqlClient>(
  c: pg.PoolClient,
  owner: object,
  extend: (tx: SqlClient, guard: () => void) => H,
  fn: (tx: H) => Promise<T>,
  broken: () => void,
): Promise<T> {
  let open = true;
  const guard = () => {
    if (!open) throw new Error('Transaction is closed');
  };
  let tx: H | undefined;
  const base: SqlClient = {
    kind: 'postgres',
    query: async <R>(text: string, params?: readonly unknown[]) => {
      guard();
      return result<R>(await c.query(text, params as unknown[] | undefined));
    },
    exec: async (script: string) => {
      guard();
      await c.query(script);
    },
    transaction: (inner) => withSavepoint(tx ?? base, inner),
    listen: () => Promise.reject(new Error('listen on the outer SqlClient, not a transaction')),
    close: () => Promise.reject(new Error('close the outer SqlClient, not a transaction')),
  };
  const handle = (tx = extend(base, guard));
  await c.query('BEGIN');
  try {
    const value = await insideTransaction(owner, () => fn(handle));
    await c.query('COMMIT');
    return value;
  } catch (err) {
    // Keep fn's error; a connection that cannot roll back is discarded by the caller.
    await c.query('ROLLBACK').catch(broken);
    throw err;
  } finally {
    open = false;
  }
}
