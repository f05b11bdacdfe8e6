/**
 * LISTEN on a PostgreSQL server (SqlClient.listen): one dedicated pg.Client per SqlClient, outside
 * the pool, since a pooled connection is handed to others between queries and LISTEN belongs to a
 * session. Every channel of the SqlClient shares it. It follows the pool's host list (and, with
 * target_session_attrs=read-write, passes over read-only hosts: a standby can neither LISTEN nor
 * NOTIFY). When the connection is lost — an error, the server ending it, or a ping unanswered
 * within its timeout (a half-open connection says nothing) — it reconnects with a growing delay,
 * LISTENs again on every channel, and then calls each subscriber's onReconnect: notifications sent
 * meanwhile are gone, so the subscriber looks again at what it waits for. With no channel left it
 * closes the connection.
 */
import * as pg from 'pg';
import { checkChannel, type Unlisten } from './sql';

export interface ListenerOptions {
  /** A ping every this long checks the connection. Default 30 s. */
  pingMs?: number;
  /** A ping (or connection attempt) unanswered this long counts as a lost connection. Default 10 s. */
  timeoutMs?: number;
  /** First delay before reconnecting; doubles up to maxRetryMs. Defaults 200 ms and 5 s. */
  retryMs?: number;
  maxRetryMs?: number;
}

interface Subscriber {
  onPayload(payload: string): void;
  onReconnect?(): void;
}

/** Ends a client we are done with; its 'error' listener stays, so a late error cannot crash the process. */
function end(client: pg.Client): void {
  client.removeAllListeners('end');
  try {
    client.end().catch(() => undefined);
  } catch {
    // never connected
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export class PgListener {
  private client: pg.Client | undefined;
  private readonly channels = new Map<string, Set<Subscriber>>();
  /** Connecting, LISTEN and UNLISTEN one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private host = 0;
  private retryDelay: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The connection was lost since subscribers last heard: they get onReconnect after the next connect. */
  private wasLost = false;

  constructor(
    private readonly configs: readonly pg.ClientConfig[],
    private readonly requireWritable: boolean,
    private readonly options: ListenerOptions = {},
  ) {
    this.retryDelay = options.retryMs ?? 200;
  }

  /** Whether a connection is up (for tests and status). */
  get connected(): boolean {
    return this.client !== undefined;
  }

  async listen(channel: string, onPayload: (payload: string) => void, onReconnect?: () => void): Promise<Unlisten> {
    checkChannel(channel);
    const subscriber: Subscriber = { onPayload, onReconnect };
    await this.serial(async () => {
      if (this.closed) throw new Error('SqlClient is closed');
      const client = this.client ?? (await this.connect());
      if (!this.channels.has(channel)) {
        await client.query(`LISTEN ${channel}`);
        this.channels.set(channel, new Set());
      }
      this.channels.get(channel)!.add(subscriber);
    });
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      await this.serial(async () => {
        const set = this.channels.get(channel);
        if (!set?.delete(subscriber) || set.size > 0) return;
        this.channels.delete(channel);
        if (this.channels.size === 0) return this.drop(undefined);
        await this.client?.query(`UNLISTEN ${channel}`).catch(() => undefined);
      });
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.channels.clear();
    await this.serial(async () => this.drop(undefined));
  }

  // ---------------------------------------------------------------------------------------------

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.chain.then(task);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** A new connection, trying each host once from the current one; LISTENs on every channel known. */
  private async connect(): Promise<pg.Client> {
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    let lastError: unknown;
    for (let attempt = 0; attempt < this.configs.length; attempt++) {
      const config = this.configs[this.host];
      const client = new pg.Client({ ...config, keepAlive: true });
      // Unhandled, a lost connection's 'error' would crash the process.
      client.on('error', () => this.lost(client));
      client.on('end', () => this.lost(client));
      client.on('notification', (n) => this.deliver(n.channel, n.payload ?? ''));
      try {
        await withTimeout(client.connect(), timeoutMs, 'connecting');
        if (this.requireWritable) {
          const ro = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only');
          if (ro.rows[0]?.transaction_read_only === 'on') throw new Error(`${config.host} is read-only`);
        }
        for (const channel of this.channels.keys()) await client.query(`LISTEN ${channel}`);
        this.client = client;
        this.startPing(client);
        if (this.wasLost) {
          this.wasLost = false;
          // After the LISTENs above: what the subscribers look at now, they cannot miss again.
          const subscribers = [...this.channels.values()].flatMap((set) => [...set]);
          setImmediate(() => {
            for (const s of subscribers) s.onReconnect?.();
          });
        }
        return client;
      } catch (err) {
        lastError = err;
        end(client);
        this.host = (this.host + 1) % this.configs.length;
      }
    }
    throw lastError;
  }

  private deliver(channel: string, payload: string): void {
    for (const s of [...(this.channels.get(channel) ?? [])]) {
      try {
        s.onPayload(payload);
      } catch {
        // a subscriber's failure is its own
      }
    }
  }

  private startPing(client: pg.Client): void {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (this.client !== client) return;
      withTimeout(client.query('SELECT 1'), this.options.timeoutMs ?? 10_000, 'a ping').catch(() => this.lost(client));
    }, this.options.pingMs ?? 30_000);
    this.pingTimer.unref();
  }

  /** Forgets the connection (and ends it); with `client`, only if it is still the current one. */
  private drop(client: pg.Client | undefined): void {
    const current = this.client;
    if (!current || (client && client !== current)) return;
    this.client = undefined;
    clearInterval(this.pingTimer);
    end(current);
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.wasLost = true;
    this.drop(client);
    this.retry();
  }

  private retry(): void {
    if (this.closed || this.channels.size === 0 || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.serial(async () => {
        if (!this.closed && this.channels.size > 0 && !this.client) await this.connect();
      }).then(
        () => (this.retryDelay = this.options.retryMs ?? 200),
        () => {
          this.retryDelay = Math.min(this.retryDelay * 2, this.options.maxRetryMs ?? 5_000);
          this.retry();
        },
      );
    }, this.retryDelay);
    this.retryTimer.unref();
  }
}
