/**
 * One AMQP connection that keeps itself up: it tries the URLs in turn (failover), backs off
 * between rounds (exponential, capped, with jitter), and after a loss starts over. Users attach
 * with `use(setup)`: setup runs on every new connection (create channels, declare, consume) and
 * returns its teardown, run when that connection goes. Nothing here throws into the caller:
 * failures become states (`onState`) and the next attempt. Framework-free.
 */
import { backoffDelay } from '../mailbox/backoff';
import * as amqp from 'amqplib';
import type { ChannelModel } from 'amqplib';

export type AmqpState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface AmqpConnectionOptions {
  /** amqp:// or amqps:// URLs; the first that answers is used. */
  urls: string[];
  /** Overrides the URL's vhost when set ('' keeps the URL's, or '/'). */
  vhost?: string;
  username?: string;
  password?: string;
  /** Seconds; 0 disables heartbeats. */
  heartbeat?: number;
  /** TLS options for amqps:// (ca, cert, key, servername, rejectUnauthorized). */
  tls?: Record<string, unknown>;
  /** Client name shown in the broker's connection list. */
  name?: string;
  /** Backoff: first delay and cap, in ms. */
  minDelayMs?: number;
  maxDelayMs?: number;
  onState?(state: AmqpState, detail?: string): void;
}

/** What a user sets up on each connection; the returned function tears it down (optional). */
export type Setup = (conn: ChannelModel) => Promise<(() => void) | void>;

/** The URL as amqplib takes it: vhost and credentials from the options win over the URL's. */
export function connectUrl(url: string, options: Pick<AmqpConnectionOptions, 'vhost' | 'username' | 'password' | 'heartbeat'>): string {
  const u = new URL(url);
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') throw new Error(`not an AMQP URL (amqp:// or amqps://): ${redact(url)}`);
  if (options.username) u.username = encodeURIComponent(options.username);
  if (options.password) u.password = encodeURIComponent(options.password);
  if (options.vhost) u.pathname = `/${encodeURIComponent(options.vhost)}`;
  if (options.heartbeat !== undefined) u.searchParams.set('heartbeat', String(options.heartbeat));
  return u.toString();
}

/** A URL without its password, for logs and status. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export class AmqpConnection {
  private conn: ChannelModel | undefined;
  private readonly users = new Set<Setup>();
  private readonly teardowns = new Map<Setup, () => void>();
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;
  private connecting = false;
  state: AmqpState = 'connecting';
  detail = '';
  /** The URL connected to (without password). */
  current = '';

  constructor(private readonly options: AmqpConnectionOptions) {
    if (options.urls.length === 0) throw new Error('no AMQP URL given');
    for (const url of options.urls) connectUrl(url, options); // refuse a bad URL now, not at each retry
  }

  start(): void {
    void this.connect();
  }

  /** Adds a user: set up now when connected, and on every later connection. */
  use(setup: Setup): () => void {
    this.users.add(setup);
    if (this.conn) void this.run(setup, this.conn);
    return () => {
      this.users.delete(setup);
      this.teardowns.get(setup)?.();
      this.teardowns.delete(setup);
    };
  }

  /** Drops the current connection (a channel broke beyond repair): reconnects after the backoff. */
  reset(reason: string): void {
    const c = this.conn;
    if (!c) return;
    this.lost(reason);
    c.close().catch(() => undefined);
    this.schedule(reason);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const c = this.conn;
    this.lost('closed');
    this.setState('closed');
    await c?.close().catch(() => undefined);
  }

  private setState(state: AmqpState, detail = ''): void {
    this.state = state;
    this.detail = detail;
    this.options.onState?.(state, detail);
  }

  private async run(setup: Setup, conn: ChannelModel): Promise<void> {
    try {
      const teardown = await setup(conn);
      if (teardown) {
        if (this.conn === conn && this.users.has(setup)) this.teardowns.set(setup, teardown);
        else teardown();
      }
    } catch (err) {
      // A user that cannot set up (a queue missing, arguments refused) sees the reason in its own
      // status; the connection stays for the others.
      if (this.conn === conn) this.options.onState?.(this.state, `setup failed: ${(err as Error).message}`);
    }
  }

  private async connect(): Promise<void> {
    if (this.closed || this.connecting || this.conn) return;
    this.connecting = true;
    let lastError = '';
    for (const url of this.options.urls) {
      if (this.closed) break;
      try {
        const socketOptions: Record<string, unknown> = { ...(this.options.tls ?? {}), timeout: 10_000 };
        if (this.options.name) socketOptions.clientProperties = { connection_name: this.options.name };
        const conn = await amqp.connect(connectUrl(url, this.options), socketOptions);
        if (this.closed) {
          await conn.close().catch(() => undefined);
          break;
        }
        this.conn = conn;
        this.current = redact(url);
        this.attempt = 0;
        conn.on('error', () => undefined); // 'close' follows with the reason
        conn.on('close', (err?: Error) => {
          if (this.conn === conn) {
            this.lost(err?.message ?? 'connection closed');
            this.schedule(err?.message ?? 'connection closed');
          }
        });
        conn.on('blocked', (reason: string) => this.setState('connected', `blocked: ${reason}`));
        conn.on('unblocked', () => this.setState('connected'));
        this.connecting = false;
        this.setState('connected', this.current);
        for (const setup of this.users) void this.run(setup, conn);
        return;
      } catch (err) {
        lastError = `${redact(url)}: ${(err as Error).message}`;
      }
    }
    this.connecting = false;
    if (!this.closed) this.schedule(lastError);
  }

  private lost(reason: string): void {
    this.conn = undefined;
    for (const teardown of this.teardowns.values()) {
      try {
        teardown();
      } catch {
        // a teardown must not keep the others from running
      }
    }
    this.teardowns.clear();
    void reason;
  }

  private schedule(reason: string): void {
    if (this.closed || this.timer) return;
    const min = this.options.minDelayMs ?? 200;
    const max = this.options.maxDelayMs ?? 30_000;
    const delay = backoffDelay(this.attempt + 1, { baseDelayMs: min, maxDelayMs: max, maxAttempts: 1, jitter: 0.2 });
    this.attempt++;
    this.setState('reconnecting', reason);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.connect();
    }, delay);
  }
}
