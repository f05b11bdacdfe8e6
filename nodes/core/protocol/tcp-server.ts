/**
 * The TCP (optionally TLS) server devices connect to (docs/protocol-tcp.md). Framework-free: the
 * conflux-tcp-in node only passes the gateway's pieces and forwards what comes out.
 *
 * This module listens, accepts and keeps the counts and limits of all connections; each
 * connection is a TcpConnection (tcp-connection.ts), a state machine:
 *
 *   AUTH   only AUTH frames (SCRAM-SHA-256, scram-session.ts); anything else closes the connection;
 *          at most authTimeoutMs to finish
 *   READY  the device is registered in the SessionRegistry; every frame it sends is numbered;
 *          a data frame is decoded, handed to onReadings and ACKed once that resolved, or refused
 *          with an ERROR naming the frame and the reason; the connection goes on
 *   closed a frame whose length cannot be read (0, or over maxFrameBytes), silence for
 *          idleTimeoutMs, a failed login, a newer session of the same device, or close()
 *
 * Keepalive: TCP keepalive on every socket, and after half the idle timeout without a byte from
 * the device the server sends a PING, which a live device answers with a PONG; a device silent
 * for the whole idle timeout is closed (a half-open connection does not hold its place).
 *
 * Backpressure: at most maxInFlightPerSession data frames of a connection, and maxInFlight in
 * all, wait for onReadings at once; beyond that the server stops reading from the socket, so TCP
 * slows the device down instead of memory growing. The tenant's rate limit refuses a frame with
 * an ERROR the device can retry after. The rate and UDP tokens live in the gateway's database:
 * while a frame waits on it the connection handles nothing else, so frames keep their order. A device that does not read what it is sent (ACKs piling
 * up past maxWriteBufferBytes) is closed.
 */
import { deviceRefused } from '../metrics/metrics';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { DeviceDirectory, DeviceIdentity } from '../devices/directory';
import type { Session, SessionRegistry } from '../devices/sessions';
import type { TenantRate } from '../devices/tenant-rate';
import type { UdpTokens } from '../devices/udp-tokens';
import type { CanonicalMessage } from '../model/message';
import { TcpConnection, type ConnectionHost } from './tcp-connection';

export interface TcpTlsOptions {
  /** PEM certificate chain and private key of the server. */
  cert: string | Buffer;
  key: string | Buffer;
  passphrase?: string;
  /** PEM CA(s) that sign client certificates (and complete the chain). */
  ca?: string | Buffer;
  /** Require a client certificate signed by `ca`: a device without one is refused during TLS. */
  requestCert?: boolean;
}

export interface TcpLimits {
  /** Largest frame (type byte + payload) accepted. */
  maxFrameBytes: number;
  /** A device that sends nothing this long is disconnected (a PING goes out at half of it). */
  idleTimeoutMs: number;
}

export type TcpEventCode =
  /** a frame refused: its payload, type or content is wrong (the session goes on) */
  | 'bad-frame'
  /** the tenant's rate limit refused a data frame (the session goes on) */
  | 'rate-limited'
  /** onReadings rejected a data frame, or the gateway's database could not check it (the session goes on) */
  | 'not-accepted'
  /** the protocol was broken: a bad length, a frame before authentication (the connection closes) */
  | 'protocol'
  /** a login refused: wrong key, unknown device, replayed or malformed handshake */
  | 'auth-failed'
  /** the login did not finish in time */
  | 'auth-timeout'
  /** nothing received for the idle timeout */
  | 'idle-timeout'
  /** too many connections, sessions, or a device not reading */
  | 'limit'
  /** an ERROR frame sent by the device */
  | 'device-error'
  /** the socket failed (reset by the peer…) */
  | 'socket'
  /** a TLS handshake failed (no or a bad client certificate…) */
  | 'tls'
  /** the listening socket failed */
  | 'listener';

export class TcpEventError extends Error {
  override readonly name = 'TcpEventError';

  constructor(
    readonly code: TcpEventCode,
    message: string,
  ) {
    super(message);
  }
}

export interface TcpEventContext {
  /** host:port of the peer. */
  remote: string;
  /** Once authenticated. */
  device?: DeviceIdentity;
  /** The serial a device claimed in its login, authenticated or not. */
  serial?: string;
  /** The frame refused, with its number on the connection (0 before authentication). */
  frame?: { id: number; type: number; payload: Buffer };
}

/** A COMMAND_RESULT or REQUEST frame from an authenticated device. */
export interface DeviceMessageEvent {
  kind: 'command-result' | 'request';
  device: DeviceIdentity;
  /** The JSON object sent; `id` is its correlation id. */
  body: Record<string, unknown> & { id: string };
  /** The device's session, to answer a request on (send('response', {id, …})). */
  session: Session;
}

export interface TcpServerOptions {
  tls?: TcpTlsOptions;
  limits: TcpLimits;
  directory: DeviceDirectory;
  sessions: SessionRegistry;
  rate: TenantRate;
  tokens: Pick<UdpTokens, 'issue'>;
  /** A data frame's canonical message; the frame is ACKed once this resolves, refused if it rejects. */
  onReadings(msg: CanonicalMessage, session: Session): Promise<void> | void;
  /** Everything refused or failed, with the reason. Must not throw. */
  onError?(err: TcpEventError, context: TcpEventContext): void;
  /**
   * COMMAND_RESULT and REQUEST frames. Resolving means handled; rejecting answers the device with
   * an ERROR naming the reason. Without it such frames are refused.
   */
  onDeviceMessage?(event: DeviceMessageEvent): Promise<void> | void;
  /** Keys the fake salts answered to unknown serials; default random per server. */
  secret?: Buffer;
  /** Time to finish the login; default min(idleTimeoutMs, 30 s). */
  authTimeoutMs?: number;
  /** Connections still logging in, at most; default 4096. */
  maxAuthenticating?: number;
  /** Data frames of one connection waiting for onReadings; default 32. */
  maxInFlightPerSession?: number;
  /** Data frames of all connections waiting for onReadings; default 10,000. */
  maxInFlight?: number;
  /** Bytes queued to a device that does not read before it is closed; default max(1 MiB, 4 × maxFrameBytes). */
  maxWriteBufferBytes?: number;
  /** TCP keepalive's first probe after this much idleness; default min(idleTimeoutMs, 60 s). */
  keepAliveMs?: number;
  /** For tests: the server part of every SCRAM nonce. */
  serverNonce?: () => string;
}

export interface TcpServerStats {
  /** Open connections, logging in or logged in. */
  connections: number;
  authenticating: number;
  /** Authenticated connections open now. */
  sessions: number;
  /** Data frames ACKed, and the records they carried. */
  accepted: number;
  records: number;
  /** Frames refused with an ERROR (the session went on). */
  refused: number;
  /** Logins refused. */
  authFailures: number;
  /** Connections closed for breaking the protocol, silence or a limit. */
  dropped: number;
}

/** The options with their defaults filled in, as the connections read them. */
export type ResolvedTcpOptions = Required<Omit<TcpServerOptions, 'tls' | 'onError' | 'onDeviceMessage' | 'serverNonce'>> &
  Pick<TcpServerOptions, 'tls' | 'onError' | 'onDeviceMessage' | 'serverNonce'>;

export class TcpDeviceServer implements ConnectionHost {
  private readonly server: net.Server;
  private readonly connections = new Set<TcpConnection>();
  private readonly waiting = new Set<TcpConnection>();
  /** Every accepted socket, TLS handshakes included, so close() leaves none behind. */
  private readonly raw = new Set<net.Socket>();
  private closing = false;
  /** Shared with the connections. */
  readonly opts: ResolvedTcpOptions;
  readonly counters = { accepted: 0, records: 0, refused: 0, authFailures: 0, dropped: 0 };
  /** Data frames waiting for onReadings, all connections. */
  inFlight = 0;
  /** Connections in the AUTH state. */
  authenticating = 0;

  constructor(options: TcpServerOptions) {
    const idle = options.limits.idleTimeoutMs;
    this.opts = {
      ...options,
      secret: options.secret ?? randomBytes(32),
      authTimeoutMs: options.authTimeoutMs ?? Math.min(idle, 30_000),
      maxAuthenticating: options.maxAuthenticating ?? 4096,
      maxInFlightPerSession: options.maxInFlightPerSession ?? 32,
      maxInFlight: options.maxInFlight ?? 10_000,
      maxWriteBufferBytes: options.maxWriteBufferBytes ?? Math.max(1 << 20, 4 * options.limits.maxFrameBytes),
      keepAliveMs: options.keepAliveMs ?? Math.min(idle, 60_000),
    };
    const accept = (socket: net.Socket) => {
      try {
        this.accept(socket);
      } catch (err) {
        socket.destroy();
        this.report('socket', `cannot accept a connection: ${(err as Error).message}`, { remote: remoteOf(socket) });
      }
    };
    if (options.tls) {
      const t = options.tls;
      // Not half-open: a client that gives up during the TLS handshake (FIN) must not leave its
      // socket waiting for handshakeTimeout.
      const server = tls.createServer({
        cert: t.cert,
        key: t.key,
        passphrase: t.passphrase,
        ca: t.ca,
        requestCert: !!t.requestCert,
        rejectUnauthorized: !!t.requestCert,
        handshakeTimeout: this.opts.authTimeoutMs,
        minVersion: 'TLSv1.2',
      });
      server.on('secureConnection', accept);
      server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
        this.counters.dropped++;
        this.report('tls', `TLS handshake failed: ${err.message}`, { remote: remoteOf(socket) });
        socket.destroy(); // not done for us once this event has a listener
      });
      this.server = server;
    } else {
      this.server = net.createServer({ allowHalfOpen: true }, accept);
    }
    this.server.on('error', (err) => {
      if (this.server.listening) this.report('listener', err.message, { remote: '' }); // listen() reports its own failure
    });
    this.server.on('connection', (raw: net.Socket) => {
      this.raw.add(raw);
      raw.once('close', () => this.raw.delete(raw));
    });
  }

  /** Starts listening; resolves with the address (port 0: a free port), rejects with the reason (EADDRINUSE…). */
  listen(port: number, host?: string): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const failed = (err: Error) => reject(err);
      this.server.once('error', failed);
      this.server.listen({ port, host: host || undefined, backlog: 1024 }, () => {
        this.server.off('error', failed);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  address(): net.AddressInfo | undefined {
    return (this.server.address() as net.AddressInfo | null) ?? undefined;
  }

  get listening(): boolean {
    return this.server.listening;
  }

  stats(): TcpServerStats {
    let sessions = 0;
    for (const c of this.connections) if (c.state === 'ready') sessions++;
    return { connections: this.connections.size, authenticating: this.authenticating, sessions, ...this.counters };
  }

  /** Stops listening and ends every connection (the device sees the reason); resolves once all are gone. */
  async close(reason = 'the server is stopping'): Promise<void> {
    this.closing = true;
    const stopped = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    const gone = [...this.connections].map((c) => c.closed);
    for (const c of [...this.connections]) c.closeWith(reason, { graceMs: 500 });
    await Promise.all(gone);
    for (const raw of this.raw) raw.destroy(); // TLS handshakes under way
    await stopped;
  }

  private accept(socket: net.Socket): void {
    const remote = remoteOf(socket);
    if (this.closing) {
      socket.destroy();
      return;
    }
    const crowded = this.authenticating >= this.opts.maxAuthenticating;
    const conn = new TcpConnection(this, socket, remote);
    this.connections.add(conn);
    conn.closed.then(() => {
      this.connections.delete(conn);
      this.waiting.delete(conn);
    });
    if (crowded) conn.closeWith('too many devices are logging in; try again later', { code: 'limit' });
  }

  /** A connection waits for in-flight room. */
  wait(conn: TcpConnection): void {
    this.waiting.add(conn);
  }

  /** A data frame left the in-flight count: connections waiting for room go on. */
  released(): void {
    for (const c of this.waiting) {
      if (this.inFlight >= this.opts.maxInFlight) break;
      this.waiting.delete(c);
      c.pump();
    }
  }

  report(code: TcpEventCode, message: string, context: TcpEventContext): void {
    // Socket errors, idle timeouts and listener faults are no refusals.
    if (code !== 'socket' && code !== 'listener' && code !== 'idle-timeout') deviceRefused('tcp', code);
    try {
      this.opts.onError?.(new TcpEventError(code, message), context);
    } catch {
      // the callback's own failure must not break a connection
    }
  }
}

function remoteOf(socket: net.Socket): string {
  const host = socket.remoteAddress ?? '?';
  return `${host.includes(':') ? `[${host}]` : host}:${socket.remotePort ?? '?'}`;
}
