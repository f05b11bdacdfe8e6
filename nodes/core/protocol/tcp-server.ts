/**
 * The TCP (optionally TLS) server devices connect to (docs/protocol-tcp.md). Framework-free: the
 * conflux-tcp-in node only passes the gateway's pieces and forwards what comes out.
 *
 * Per connection, a state machine:
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
 * an ERROR the device can retry after. A device that does not read what it is sent (ACKs piling
 * up past maxWriteBufferBytes) is closed.
 */
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { DeviceDirectory, DeviceIdentity } from '../devices/directory';
import { decodeDevicePayload, deviceMessage } from '../devices/ingest';
import type { RateLimiter } from '../devices/rate-limit';
import { SessionLimitError, type Session, type SessionRegistry } from '../devices/sessions';
import type { IssuedToken, UdpTokens } from '../devices/udp-tokens';
import type { CanonicalMessage } from '../model/message';
import {
  dataFramePayload,
  decodeTokenRequest,
  encodeAck,
  encodeError,
  encodeFrame,
  encodeTokenGrant,
  FrameDecoder,
  FrameType,
  frameTypeName,
  isDataFrame,
  parseCorrelated,
  type Frame,
  type FrameError,
} from './frames';
import { ScramServerSession } from './scram-session';

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
  /** onReadings rejected a data frame (the session goes on) */
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
  rate: RateLimiter;
  tokens: UdpTokens;
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

type SendKind = 'command' | 'response' | 'token' | 'ping' | 'error';
const SEND_TYPES: Record<SendKind, number> = {
  command: FrameType.COMMAND,
  response: FrameType.RESPONSE,
  token: FrameType.TOKEN,
  ping: FrameType.PING,
  error: FrameType.ERROR,
};

/** Frames a connection queues before it stops reading from its socket. */
const QUEUE_HIGH = 64;
const QUEUE_LOW = 16;
/** After the last frame is written, a closing connection waits this long for the peer to close. */
const CLOSE_GRACE_MS = 2_000;

export class TcpDeviceServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  private readonly waiting = new Set<Connection>();
  /** Every accepted socket, TLS handshakes included, so close() leaves none behind. */
  private readonly raw = new Set<net.Socket>();
  private closing = false;
  /** Shared with the connections. */
  readonly opts: Required<Omit<TcpServerOptions, 'tls' | 'onError' | 'onDeviceMessage' | 'serverNonce'>> &
    Pick<TcpServerOptions, 'tls' | 'onError' | 'onDeviceMessage' | 'serverNonce'>;
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
    const conn = new Connection(this, socket, remote);
    this.connections.add(conn);
    conn.closed.then(() => {
      this.connections.delete(conn);
      this.waiting.delete(conn);
    });
    if (crowded) conn.closeWith('too many devices are logging in; try again later', { code: 'limit' });
  }

  /** A connection waits for in-flight room. */
  wait(conn: Connection): void {
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

class Connection {
  state: 'auth' | 'ready' | 'closing' | 'closed' = 'auth';
  readonly closed: Promise<void>;
  private readonly decoder: FrameDecoder;
  private readonly scram: ScramServerSession;
  private readonly queue: Frame[] = [];
  private fatal: FrameError | undefined;
  private authBusy = false;
  private seq = 0;
  private inFlight = 0;
  private paused = false;
  /** The device sent FIN: answer what it sent, then close. */
  private peerEnded = false;
  private lastActivity = Date.now();
  private pinged = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private authTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private device: DeviceIdentity | undefined;
  private session: Session | undefined;

  constructor(
    private readonly server: TcpDeviceServer,
    private readonly socket: net.Socket,
    private readonly remote: string,
  ) {
    const { opts } = server;
    this.decoder = new FrameDecoder(opts.limits.maxFrameBytes);
    this.scram = new ScramServerSession({ directory: opts.directory, secret: opts.secret, serverNonce: opts.serverNonce });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    server.authenticating++;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, opts.keepAliveMs);
    socket.on('data', (chunk: Buffer) => this.guard(() => this.onData(chunk)));
    socket.on('error', (err: Error) => {
      if (this.state !== 'closing') this.server.report('socket', err.message, this.context());
    });
    socket.on('close', () => this.guard(() => this.onClose()));
    socket.on('end', () =>
      this.guard(() => {
        this.peerEnded = true;
        this.pump();
      }),
    );
    this.authTimer = setTimeout(() => this.guard(() => this.closeWith('the login did not finish in time', { code: 'auth-timeout' })), opts.authTimeoutMs);
    this.scheduleIdle(opts.limits.idleTimeoutMs / 2);
  }

  /** Nothing thrown by a handler leaves it: the connection closes with the reason instead. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.server.report('protocol', `internal error: ${(err as Error).message}`, this.context());
      this.socket.destroy();
    }
  }

  private context(frame?: Frame, id = 0): TcpEventContext {
    return {
      remote: this.remote,
      device: this.device,
      serial: this.device?.serial ?? this.scram.serial,
      frame: frame && { id, type: frame.type, payload: frame.payload },
    };
  }

  // --- reading -----------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.lastActivity = Date.now();
    this.pinged = false;
    const { frames, error } = this.decoder.push(chunk);
    for (const f of frames) this.queue.push(f);
    if (error) this.fatal = error;
    if (error || this.queue.length >= QUEUE_HIGH) {
      this.paused = true;
      this.socket.pause();
    }
    this.pump();
  }

  /** Works through the queued frames until it must wait (a login lookup, in-flight room). */
  pump(): void {
    while (this.queue.length > 0 && (this.state === 'auth' || this.state === 'ready')) {
      const frame = this.queue[0];
      if (this.state === 'auth') {
        if (this.authBusy) return;
        this.queue.shift();
        this.authFrame(frame);
        continue;
      }
      if (isDataFrame(frame.type) && (this.inFlight >= this.server.opts.maxInFlightPerSession || this.server.inFlight >= this.server.opts.maxInFlight)) {
        if (this.inFlight === 0) this.server.wait(this); // else this connection's own completion calls pump
        return;
      }
      this.queue.shift();
      this.readyFrame(frame, ++this.seq);
    }
    if (this.queue.length === 0 && (this.state === 'auth' || this.state === 'ready')) {
      if (this.fatal) return this.closeWith(this.fatal.message, { code: 'protocol' });
      if (this.peerEnded && this.inFlight === 0 && !this.authBusy) return this.closeWith('', { silent: true });
    }
    if (this.paused && !this.fatal && this.queue.length <= QUEUE_LOW && this.state !== 'closed') {
      this.paused = false;
      this.socket.resume();
    }
  }

  // --- AUTH --------------------------------------------------------------------------------

  private authFrame(frame: Frame): void {
    if (frame.type !== FrameType.AUTH) {
      this.closeWith(`${frameTypeName(frame.type)} frame before authentication: log in with AUTH frames (SCRAM-SHA-256) first`, { code: 'protocol', frame });
      return;
    }
    if (!isUtf8(frame.payload)) {
      this.write(FrameType.AUTH, 'e=invalid-encoding');
      this.server.counters.authFailures++;
      this.closeWith('AUTH frame: not valid UTF-8', { code: 'auth-failed', frame });
      return;
    }
    this.authBusy = true;
    this.scram.step(frame.payload.toString('utf8')).then(
      (step) =>
        this.guard(() => {
          this.authBusy = false;
          if (this.state !== 'auth') return;
          if (step.kind === 'continue') {
            this.write(FrameType.AUTH, step.reply);
          } else if (step.kind === 'failed') {
            this.write(FrameType.AUTH, step.reply);
            this.server.counters.authFailures++;
            this.closeWith('authentication failed', { code: 'auth-failed', detail: step.reason });
            return;
          } else {
            this.loggedIn(step.device, step.reply);
          }
          this.pump();
        }),
      (err: Error) => this.guard(() => this.closeWith(`authentication failed: ${err.message}`, { code: 'auth-failed' })),
    );
  }

  private loggedIn(device: DeviceIdentity, reply: string): void {
    const session: Session = {
      device,
      transport: 'tcp',
      send: (kind, payload) => this.send(kind, payload),
      close: (reason) => this.closeWith(reason),
    };
    try {
      this.server.opts.sessions.add(session);
    } catch (err) {
      this.write(FrameType.AUTH, 'e=no-resources');
      this.closeWith(err instanceof SessionLimitError ? err.message : `cannot register the session: ${(err as Error).message}`, { code: 'limit' });
      return;
    }
    this.device = device;
    this.session = session;
    this.leaveAuth();
    this.state = 'ready';
    clearTimeout(this.authTimer);
    this.write(FrameType.AUTH, reply);
  }

  // --- READY -------------------------------------------------------------------------------

  private readyFrame(frame: Frame, id: number): void {
    switch (frame.type) {
      case FrameType.BINARY:
      case FrameType.ASCII:
      case FrameType.UTF8:
      case FrameType.JSON:
        return this.dataFrame(frame, id);
      case FrameType.PING:
        this.write(FrameType.PONG, frame.payload);
        return;
      case FrameType.PONG:
        return;
      case FrameType.TOKEN:
        return this.tokenRequest(frame, id);
      case FrameType.COMMAND_RESULT:
        return this.deviceMessage(frame, id, 'command-result');
      case FrameType.REQUEST:
        return this.deviceMessage(frame, id, 'request');
      case FrameType.ERROR: {
        const text = frame.payload.length >= 4 ? frame.payload.subarray(4).toString('utf8') : frame.payload.toString('utf8');
        this.server.report('device-error', `the device reported: ${text.slice(0, 500)}`, this.context(frame, id));
        return;
      }
      case FrameType.AUTH:
        return this.refuse(frame, id, 'bad-frame', 'AUTH frame: already authenticated');
      case FrameType.COMMAND:
      case FrameType.RESPONSE:
      case FrameType.ACK:
        return this.refuse(frame, id, 'bad-frame', `${frameTypeName(frame.type)} frames go from the server to the device`);
      default:
        return this.refuse(frame, id, 'bad-frame', `${frameTypeName(frame.type)}: not a frame type of this protocol`);
    }
  }

  private refuse(frame: Frame, id: number, code: TcpEventCode, reason: string): void {
    this.server.counters.refused++;
    this.write(FrameType.ERROR, encodeError(id, reason));
    this.server.report(code, reason, this.context(frame, id));
  }

  private dataFrame(frame: Frame, id: number): void {
    const device = this.device!;
    const { opts } = this.server;
    const receivedAt = Date.now();
    if (!opts.rate.take(device.tenant)) {
      const after = Math.max(1, opts.rate.retryAfter(device.tenant));
      return this.refuse(frame, id, 'rate-limited', `rate limit: tenant "${device.tenant}" sends more messages per second than allowed; send again in ${after} s`);
    }
    let msg: CanonicalMessage;
    try {
      const { format, body } = dataFramePayload(frame);
      msg = deviceMessage(device, decodeDevicePayload(format, body, device.serial, receivedAt / 1000), 'tcp', receivedAt);
    } catch (err) {
      return this.refuse(frame, id, 'bad-frame', (err as Error).message);
    }
    this.inFlight++;
    this.server.inFlight++;
    let handed: Promise<void>;
    try {
      handed = Promise.resolve(opts.onReadings(msg, this.session!));
    } catch (err) {
      handed = Promise.reject(err);
    }
    handed
      .then(
        () => {
          this.server.counters.accepted++;
          this.server.counters.records += msg.payload.length;
          this.write(FrameType.ACK, encodeAck(id));
        },
        (err: unknown) => this.refuse(frame, id, 'not-accepted', `not accepted: ${err instanceof Error ? err.message : String(err)}`),
      )
      .finally(() =>
        this.guard(() => {
          this.inFlight--;
          this.server.inFlight--;
          this.pump();
          this.server.released();
        }),
      );
  }

  private tokenRequest(frame: Frame, id: number): void {
    let count: number;
    try {
      count = decodeTokenRequest(frame.payload);
    } catch (err) {
      return this.refuse(frame, id, 'bad-frame', (err as Error).message);
    }
    const issued = this.server.opts.tokens.issue(this.device!, count);
    this.write(FrameType.TOKEN, grantOf(id, issued));
  }

  private deviceMessage(frame: Frame, id: number, kind: DeviceMessageEvent['kind']): void {
    const what = `${frameTypeName(frame.type)} frame`;
    const handler = this.server.opts.onDeviceMessage;
    if (!handler) return this.refuse(frame, id, 'bad-frame', `${what}: nothing on this server handles ${kind === 'request' ? 'requests' : 'command results'}`);
    let body: DeviceMessageEvent['body'];
    try {
      body = parseCorrelated(frame.payload, what);
    } catch (err) {
      return this.refuse(frame, id, 'bad-frame', (err as Error).message);
    }
    let handled: Promise<void>;
    try {
      handled = Promise.resolve(handler({ kind, device: this.device!, body, session: this.session! }));
    } catch (err) {
      handled = Promise.reject(err);
    }
    handled.catch((err: unknown) => this.refuse(frame, id, 'not-accepted', `${what}: ${err instanceof Error ? err.message : String(err)}`));
  }

  // --- writing -----------------------------------------------------------------------------

  /** Writes a frame; false when the connection is no longer open. */
  private write(type: number, payload: Uint8Array | string, cb?: (err?: Error | null) => void): boolean {
    if (this.state === 'closed' || this.socket.destroyed || !this.socket.writable) return false;
    if (this.socket.writableLength > this.server.opts.maxWriteBufferBytes) {
      this.server.counters.dropped++;
      this.server.report('limit', 'the device does not read what it is sent; disconnected', this.context());
      this.leaveAuth();
      this.state = 'closing';
      this.socket.destroy();
      return false;
    }
    this.socket.write(encodeFrame(type, payload), cb);
    return true;
  }

  /** Session.send: a frame to the device, resolved once handed to the operating system. */
  private send(kind: string, payload: unknown): Promise<void> {
    const type = SEND_TYPES[kind as SendKind];
    if (type === undefined) return Promise.reject(new TypeError(`a TCP session sends ${Object.keys(SEND_TYPES).join(', ')}; not "${kind}"`));
    let bytes: Uint8Array | string;
    if (kind === 'token' && Array.isArray(payload)) bytes = grantOf(0, payload as IssuedToken[]);
    else if (kind === 'error') bytes = payload instanceof Uint8Array ? payload : encodeError(0, String(payload));
    else if (payload instanceof Uint8Array || typeof payload === 'string') bytes = payload;
    else if (payload === undefined) bytes = Buffer.alloc(0);
    else {
      if ((kind === 'command' || kind === 'response') && (payload === null || typeof payload !== 'object' || !('id' in payload))) {
        return Promise.reject(new TypeError(`a ${kind} is a JSON object with an "id" (its correlation id)`));
      }
      bytes = JSON.stringify(payload);
    }
    if (this.state !== 'ready') return Promise.reject(new Error(`the session of device "${this.device?.serial}" is closed`));
    return new Promise((resolve, reject) => {
      const ok = this.write(type, bytes, (err) => (err ? reject(err) : resolve()));
      if (!ok) reject(new Error(`the session of device "${this.device?.serial}" is closed`));
    });
  }

  // --- time --------------------------------------------------------------------------------

  private scheduleIdle(ms: number): void {
    this.idleTimer = setTimeout(() => this.guard(() => this.checkIdle()), Math.max(1, ms));
  }

  private checkIdle(): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    const idle = this.server.opts.limits.idleTimeoutMs;
    const silent = Date.now() - this.lastActivity;
    if (silent >= idle) {
      this.closeWith(`idle timeout: nothing received for ${Math.round(silent / 1000)} s`, { code: 'idle-timeout' });
      return;
    }
    if (silent >= idle / 2 && !this.pinged && this.state === 'ready') {
      this.pinged = true;
      this.write(FrameType.PING, '');
    }
    this.scheduleIdle(silent >= idle / 2 ? idle - silent : idle / 2 - silent);
  }

  // --- closing -----------------------------------------------------------------------------

  private leaveAuth(): void {
    if (this.state === 'auth') this.server.authenticating--;
  }

  /**
   * Ends the connection: an ERROR frame (number 0) with the reason unless `silent`, then FIN;
   * destroyed if the device has not closed within graceMs. `code` reports the event (onError),
   * with `detail` (for the log only) in place of the reason when given.
   */
  closeWith(reason: string, how: { code?: TcpEventCode; detail?: string; frame?: Frame; silent?: boolean; graceMs?: number } = {}): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    const { code } = how;
    if (code && code !== 'auth-failed') this.server.counters.dropped++;
    if (code) this.server.report(code, how.detail ?? reason, this.context(how.frame));
    if (!how.silent) this.write(FrameType.ERROR, encodeError(0, reason));
    this.leaveAuth();
    this.state = 'closing';
    clearTimeout(this.idleTimer);
    clearTimeout(this.authTimer);
    this.queue.length = 0;
    this.socket.end();
    this.graceTimer = setTimeout(() => this.socket.destroy(), how.graceMs ?? CLOSE_GRACE_MS);
    this.graceTimer.unref();
  }

  private onClose(): void {
    this.leaveAuth();
    this.state = 'closed';
    clearTimeout(this.idleTimer);
    clearTimeout(this.authTimer);
    clearTimeout(this.graceTimer);
    this.queue.length = 0;
    if (this.session) this.server.opts.sessions.remove(this.session);
  }
}

function grantOf(id: number, issued: IssuedToken[]): Buffer {
  const now = Date.now();
  const expiresAt = issued.length ? Math.min(...issued.map((t) => t.expiresAt)) : now;
  return encodeTokenGrant({ id, ttlMs: expiresAt - now, tokens: issued.map((t) => t.token) });
}
