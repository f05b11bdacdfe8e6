/**
 * One device's TCP connection to TcpDeviceServer (tcp-server.ts, which describes the protocol's
 * states): the frame decoder, the SCRAM login, numbered data frames handed on and ACKed or
 * refused, the keepalive PING, the queue that stops reading from a device the flow cannot keep up
 * with, and the close with a reason. What all connections share (options, counts, the in-flight
 * limit) it reads from its host, the server.
 */
import { isUtf8 } from 'node:buffer';
import type * as net from 'node:net';
import type { DeviceIdentity } from '../devices/directory';
import { decodeDevicePayload, deviceMessage } from '../devices/ingest';
import { SessionLimitError, type Session } from '../devices/sessions';
import type { IssuedToken } from '../devices/udp-tokens';
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
import type { DeviceMessageEvent, ResolvedTcpOptions, TcpEventCode, TcpEventContext } from './tcp-server';

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly opts: ResolvedTcpOptions;
  readonly counters: { accepted: number; records: number; refused: number; authFailures: number; dropped: number };
  /** Data frames waiting for onReadings, all connections. */
  inFlight: number;
  /** Connections in the AUTH state. */
  authenticating: number;
  /** The connection waits for in-flight room; pump() is called when there is. */
  wait(conn: TcpConnection): void;
  /** A data frame left the in-flight count. */
  released(): void;
  report(code: TcpEventCode, message: string, context: TcpEventContext): void;
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

export class TcpConnection {
  state: 'auth' | 'ready' | 'closing' | 'closed' = 'auth';
  readonly closed: Promise<void>;
  private readonly decoder: FrameDecoder;
  /** The login; dropped once it succeeded (its keys and messages would stay for the session's life). */
  private scram: ScramServerSession | undefined;
  private readonly queue: Frame[] = [];
  private fatal: FrameError | undefined;
  private authBusy = false;
  /** A frame waits on the gateway's database (the tenant's rate, UDP tokens): the next ones wait for it. */
  private gateBusy = false;
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
  /** Why the connection is closing, for device.disconnected ('' or unset: the device closed it). */
  private closeReason = '';

  constructor(
    private readonly server: ConnectionHost,
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
      serial: this.device?.serial ?? this.scram?.serial,
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
      if (this.gateBusy) return;
      if (isDataFrame(frame.type) && (this.inFlight >= this.server.opts.maxInFlightPerSession || this.server.inFlight >= this.server.opts.maxInFlight)) {
        if (this.inFlight === 0) this.server.wait(this); // else this connection's own completion calls pump
        return;
      }
      this.queue.shift();
      this.readyFrame(frame, ++this.seq);
    }
    if (this.queue.length === 0 && (this.state === 'auth' || this.state === 'ready')) {
      if (this.fatal) return this.closeWith(this.fatal.message, { code: 'protocol' });
      if (this.peerEnded && this.inFlight === 0 && !this.authBusy && !this.gateBusy) return this.closeWith('', { silent: true });
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
    this.scram!.step(frame.payload.toString('utf8')).then(
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
    this.scram = undefined;
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

  /** Holds the frames after this one until `pending` settles, then runs the handler that fits (if still ready). */
  private afterGate<T>(pending: Promise<T>, done: (value: T) => void, failed: (err: Error) => void): void {
    this.gateBusy = true;
    const settle = (fn: () => void) =>
      this.guard(() => {
        this.gateBusy = false;
        if (this.state !== 'ready') return;
        fn();
        this.pump();
      });
    pending.then(
      (value) => settle(() => done(value)),
      (err: Error) => settle(() => failed(err)),
    );
  }

  private dataFrame(frame: Frame, id: number): void {
    const device = this.device!;
    const { rate } = this.server.opts;
    const receivedAt = Date.now();
    this.afterGate(
      rate.take(device.tenant),
      (ok) => {
        if (ok) return this.handOn(frame, id, receivedAt);
        const after = Math.max(1, rate.retryAfter(device.tenant));
        this.refuse(frame, id, 'rate-limited', `rate limit: tenant "${device.tenant}" sends more messages per second than allowed; send again in ${after} s`);
      },
      (err) => this.refuse(frame, id, 'not-accepted', `not accepted: ${err.message}`),
    );
  }

  private handOn(frame: Frame, id: number, receivedAt: number): void {
    const device = this.device!;
    const { opts } = this.server;
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
    this.afterGate(
      this.server.opts.tokens.issue(this.device!, count),
      (issued) => void this.write(FrameType.TOKEN, grantOf(id, issued)),
      (err) => this.refuse(frame, id, 'not-accepted', `no UDP tokens: ${err.message}`),
    );
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
    this.closeReason = reason;
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
    if (this.session) this.server.opts.sessions.remove(this.session, this.closeReason || 'the device closed the connection');
  }
}

function grantOf(id: number, issued: IssuedToken[]): Buffer {
  const now = Date.now();
  const expiresAt = issued.length ? Math.min(...issued.map((t) => t.expiresAt)) : now;
  return encodeTokenGrant({ id, ttlMs: expiresAt - now, tokens: issued.map((t) => t.token) });
}
