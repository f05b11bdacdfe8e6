/**
 * The reference device client, TCP part: what a device's firmware does to talk to
 * conflux-tcp-in (docs/protocol-tcp.md). Logs in with SCRAM-SHA-256, sends readings and waits
 * for their ACK, asks for UDP tokens, answers PINGs and commands, sends requests to the central
 * system. Used by the tests, the benchmarks and the command-line client.
 *
 *   const device = await connect({ host: '127.0.0.1', port: 7100, serial: 'SN-1', key: 'secret' });
 *   await device.sendReadings('json', { temperature: 21.5 });
 *   await device.close();
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { clientProof, saslprep, SCRAM_MAX_ITERATIONS, SCRAM_MIN_ITERATIONS, scramClientKey } from '../../nodes/core/auth/scram';
import {
  decodeAck,
  decodeError,
  decodeTokenGrant,
  encodeError,
  encodeFrame,
  encodeTokenRequest,
  FrameDecoder,
  FrameType,
  type Frame,
} from '../../nodes/core/protocol/frames';

/** Data frame kinds: SenML CBOR, UltraLight in ASCII or UTF-8, JSON (SenML array or attributes object). */
export type DataFrameKind = 'binary' | 'ascii' | 'utf8' | 'json';
/** The same, named by format as the UDP and HTTP clients name them. */
export type ReadingFormat = 'senml-cbor' | 'ultralight-ascii' | 'ultralight' | 'senml-json' | 'attributes';

const FORMAT_KINDS: Record<ReadingFormat, DataFrameKind> = {
  'senml-cbor': 'binary',
  'ultralight-ascii': 'ascii',
  ultralight: 'utf8',
  'senml-json': 'json',
  attributes: 'json',
};

const DATA_TYPES: Record<DataFrameKind, number> = {
  binary: FrameType.BINARY,
  ascii: FrameType.ASCII,
  utf8: FrameType.UTF8,
  json: FrameType.JSON,
};

export interface TcpClientOptions {
  /** Default 127.0.0.1. */
  host?: string;
  port: number;
  /** The device's serial number: who it logs in as. */
  serial: string;
  /** The device's key (either of its two during a rotation). */
  key: string;
  /** true: TLS with the system's CAs; an object: tls.connect options (ca, cert, key, servername, rejectUnauthorized…). */
  tls?: boolean | tls.ConnectionOptions;
  /** For the connection and login, and for each answer awaited; default 10 s. */
  timeoutMs?: number;
  /** Answer the server's PINGs (default true); false plays a device that stopped responding. */
  answerPings?: boolean;
  /** Largest frame accepted from the server; default 16 MiB. */
  maxFrameBytes?: number;
  /** Handles commands from the moment of login (commands queued while offline come at once); see onCommand(). */
  onCommand?: CommandHandler;
}

/** A refusal from the server: an ERROR frame answering one of our frames, or a failed login. */
export class DeviceRefusedError extends Error {
  override readonly name = 'DeviceRefusedError';

  constructor(
    message: string,
    /** The number of our frame the server refused; 0 for the login or the connection. */
    readonly frameId: number,
    /** For a failed login: the SCRAM error (invalid-proof…). */
    readonly scramError?: string,
  ) {
    super(message);
  }
}

export interface UdpTokenGrant {
  tokens: Buffer[];
  /** ms since the epoch, by this machine's clock. */
  expiresAt: number;
}

export type CommandHandler = (command: Record<string, unknown> & { id: string }) => unknown;

interface Pending {
  kind: 'data' | 'token';
  type: number;
  payload: Buffer;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

// SaltedPassword is what costs (PBKDF2): a device may keep it per salt, as RFC 5802 allows.
const SALTED = new Map<string, Buffer>();
const SALTED_MAX = 10_000;

function saltedPasswordAsync(key: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const id = createHash('sha256').update(key).update('\u0000').update(salt).update(`\u0000${iterations}`).digest('base64');
  const hit = SALTED.get(id);
  if (hit) return Promise.resolve(hit);
  return new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(saslprep(key), 'utf8'), salt, iterations, 32, 'sha256', (err, out) => {
      if (err) return reject(err);
      if (SALTED.size >= SALTED_MAX) SALTED.delete(SALTED.keys().next().value as string);
      SALTED.set(id, out);
      resolve(out);
    });
  });
}

/** saslname: "," and "=" escaped (RFC 5802). */
const saslName = (serial: string) => serial.replace(/=/g, '=3D').replace(/,/g, '=2C');

export class TcpDeviceClient extends EventEmitter {
  readonly serial: string;
  /** Resolves when the connection is gone. */
  readonly closed: Promise<void>;
  /** Why the server closed the connection, when it said (an ERROR frame numbered 0). */
  closeReason: string | undefined;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly requests = new Map<string, { resolve(body: Record<string, unknown>): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  private readonly pings: Array<() => void> = [];
  /** Frame number of each REQUEST still unanswered → its id: an ERROR naming the frame refuses the request. */
  private readonly requestFrames = new Map<number, string>();
  private commandHandler: CommandHandler | undefined;
  private ended = false;

  /** Use connect(). */
  constructor(
    private readonly socket: net.Socket,
    private readonly options: TcpClientOptions,
  ) {
    super();
    this.serial = options.serial;
    this.commandHandler = options.onCommand;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => this.onClose());
  }

  /** Data frames sent and not yet answered: what to send again on a new connection if this one drops. */
  get unacknowledged(): Array<{ kind: DataFrameKind; payload: Buffer }> {
    const kinds = Object.entries(DATA_TYPES) as Array<[DataFrameKind, number]>;
    return [...this.pending.values()].filter((p) => p.kind === 'data').map((p) => ({ kind: kinds.find(([, t]) => t === p.type)![0], payload: p.payload }));
  }

  get open(): boolean {
    return !this.ended;
  }

  /**
   * Sends one data frame; resolves with its number once the server ACKed it, rejects with
   * DeviceRefusedError (the server's reason) when refused, or when the connection drops first.
   * `json` takes an object or array (serialised here) or its text; the others text or bytes.
   * `format` is a frame kind (binary, ascii, utf8, json) or a format name (senml-cbor,
   * ultralight-ascii, ultralight, senml-json, attributes).
   */
  sendReadings(format: DataFrameKind | ReadingFormat, payload: unknown): Promise<number> {
    const kind = FORMAT_KINDS[format as ReadingFormat] ?? (format as DataFrameKind);
    const type = DATA_TYPES[kind];
    if (type === undefined)
      return Promise.reject(new TypeError(`format must be one of ${[...Object.keys(DATA_TYPES), ...Object.keys(FORMAT_KINDS)].join(', ')}`));
    let bytes: Buffer;
    if (payload instanceof Uint8Array) bytes = Buffer.from(payload);
    else if (typeof payload === 'string') bytes = Buffer.from(payload, kind === 'ascii' ? 'latin1' : 'utf8');
    else if (kind === 'json') bytes = Buffer.from(JSON.stringify(payload), 'utf8');
    else return Promise.reject(new TypeError(`a ${kind} payload is text or bytes`));
    return this.expect('data', type, bytes) as Promise<number>;
  }

  /** Asks for n (1..100) single-use UDP tokens. */
  async requestUdpTokens(n = 1): Promise<UdpTokenGrant> {
    return this.expect('token', FrameType.TOKEN, encodeTokenRequest(n)) as Promise<UdpTokenGrant>;
  }

  /**
   * Handles the server's commands: the handler gets the COMMAND object ({id, …}); what it returns
   * (or resolves to) goes back as COMMAND_RESULT {id, result}; what it throws as {id, error}.
   */
  onCommand(handler: CommandHandler): void {
    this.commandHandler = handler;
  }

  /**
   * A request for the central system (REQUEST frame); resolves with the RESPONSE carrying the
   * same id ({id, result} or {id, error}), rejects with DeviceRefusedError when Conflux refuses it.
   */
  request(body: Record<string, unknown>, timeoutMs = this.options.timeoutMs ?? 10_000): Promise<Record<string, unknown>> {
    const id = typeof body.id === 'string' && body.id !== '' ? body.id : randomBytes(8).toString('hex');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(id);
        for (const [frame, r] of this.requestFrames) if (r === id) this.requestFrames.delete(frame);
        reject(new Error(`no response to request ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.requests.set(id, { resolve, reject, timer });
      const sent = this.sendFrame(FrameType.REQUEST, JSON.stringify({ ...body, id }));
      if (sent === 0) {
        clearTimeout(timer);
        this.requests.delete(id);
        reject(new Error(this.closeReason ?? 'the connection is closed'));
      } else this.requestFrames.set(sent, id);
    });
  }

  /** A PING; resolves when its PONG arrives. */
  ping(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.sendFrame(FrameType.PING, '') === 0) return reject(new Error(this.closeReason ?? 'the connection is closed'));
      this.pings.push(resolve);
    });
  }

  /** Any frame, as is; returns its number on this connection (0 if the connection is closed). For tests. */
  sendFrame(type: number, payload: Uint8Array | string = Buffer.alloc(0)): number {
    if (this.ended || !this.socket.writable) return 0;
    this.socket.write(encodeFrame(type, payload));
    return ++this.seq;
  }

  /** Raw bytes, not counted as a frame. For tests (a torn or oversized frame). */
  writeRaw(bytes: Uint8Array): void {
    if (!this.ended) this.socket.write(bytes);
  }

  /** Counts `frames` frames written by writeRaw, so numbering stays in step. For tests. */
  countRawFrames(frames: number): void {
    this.seq += frames;
  }

  /** Closes the connection (FIN) and waits until it is gone. */
  async close(): Promise<void> {
    if (!this.ended) this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), 2_000);
    await this.closed;
    clearTimeout(timer);
  }

  /** Drops the connection at once (RST), as a crashing device would. */
  destroy(): void {
    this.socket.destroy();
  }

  private expect(kind: Pending['kind'], type: number, payload: Buffer): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.sendFrame(type, payload);
      if (id === 0) return reject(new Error(this.closeReason ?? 'the connection is closed'));
      const timeoutMs = this.options.timeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer to frame ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { kind, type, payload, resolve, reject, timer });
    });
  }

  private settle(id: number, outcome: { value: unknown } | { error: Error }): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('error' in outcome) p.reject(outcome.error);
    else p.resolve(outcome.value);
  }

  /** After login: every frame from the server. */
  frame(frame: Frame): void {
    this.emit('frame', frame);
    switch (frame.type) {
      case FrameType.ACK:
        try {
          const id = decodeAck(frame.payload);
          this.settle(id, { value: id });
        } catch (err) {
          this.emit('protocol-error', err);
        }
        return;
      case FrameType.ERROR: {
        const { id, reason } = decodeError(frame.payload);
        if (id === 0) {
          this.closeReason = reason;
          this.emit('server-error', reason);
        } else if (this.requestFrames.has(id)) {
          const requestId = this.requestFrames.get(id)!;
          this.requestFrames.delete(id);
          const waiting = this.requests.get(requestId);
          if (waiting) {
            this.requests.delete(requestId);
            clearTimeout(waiting.timer);
            waiting.reject(new DeviceRefusedError(reason, id));
          }
        } else this.settle(id, { error: new DeviceRefusedError(reason, id) });
        return;
      }
      case FrameType.TOKEN:
        try {
          const grant = decodeTokenGrant(frame.payload);
          this.settle(grant.id, { value: { tokens: grant.tokens, expiresAt: Date.now() + grant.ttlMs } });
        } catch (err) {
          this.emit('protocol-error', err);
        }
        return;
      case FrameType.PING:
        if (this.options.answerPings !== false) this.sendFrame(FrameType.PONG, frame.payload);
        return;
      case FrameType.PONG:
        this.pings.shift()?.();
        return;
      case FrameType.COMMAND:
        this.command(frame.payload);
        return;
      case FrameType.RESPONSE: {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(frame.payload.toString('utf8'));
        } catch (err) {
          this.emit('protocol-error', err);
          return;
        }
        const waiting = this.requests.get(String(body?.id));
        if (waiting) {
          this.requests.delete(String(body.id));
          for (const [n, r] of this.requestFrames) if (r === String(body.id)) this.requestFrames.delete(n);
          clearTimeout(waiting.timer);
          waiting.resolve(body);
        }
        return;
      }
      default:
        return;
    }
  }

  private command(payload: Buffer): void {
    let command: Record<string, unknown> & { id: string };
    try {
      command = JSON.parse(payload.toString('utf8'));
      if (command === null || typeof command !== 'object' || command.id === undefined) throw new Error('a command is a JSON object with an "id"');
    } catch (err) {
      this.sendFrame(FrameType.ERROR, encodeError(this.seq, `COMMAND frame: ${(err as Error).message}`));
      return;
    }
    const handler = this.commandHandler;
    const answer = (body: Record<string, unknown>) => this.sendFrame(FrameType.COMMAND_RESULT, JSON.stringify({ id: command.id, ...body }));
    if (!handler) {
      answer({ error: 'this device handles no commands' });
      return;
    }
    Promise.resolve()
      .then(() => handler(command))
      .then(
        (result) => answer({ result: result === undefined ? null : result }),
        (err: unknown) => answer({ error: err instanceof Error ? err.message : String(err) }),
      );
  }

  private onClose(): void {
    this.ended = true;
    const err = new Error(this.closeReason ? `connection closed by the server: ${this.closeReason}` : 'connection closed');
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    for (const [, r] of this.requests) {
      clearTimeout(r.timer);
      r.reject(err);
    }
    this.requests.clear();
    this.emit('close', this.closeReason);
  }
}

/** Opens the connection and logs in; resolves with the authenticated client, rejects with the reason. */
export async function connect(options: TcpClientOptions): Promise<TcpDeviceClient> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const host = options.host ?? '127.0.0.1';
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = options.tls
      ? tls.connect({ host, port: options.port, servername: net.isIP(host) ? undefined : host, ...(options.tls === true ? {} : options.tls) })
      : net.connect({ host, port: options.port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`cannot connect to ${host}:${options.port} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once(options.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      s.removeListener('error', failed);
      resolve(s);
    });
    const failed = (err: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    s.once('error', failed);
  });
  socket.setNoDelay(true);
  socket.on('error', () => undefined); // 'close' follows; pending work is rejected there

  const client = new TcpDeviceClient(socket, options);
  const decoder = new FrameDecoder(options.maxFrameBytes ?? 16 * 1024 * 1024);
  let loggedIn = false;
  const early: Frame[] = [];
  let onAuthFrame: ((frame: Frame) => void) | undefined;
  let onAuthEnd: ((reason: string) => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    const { frames, error } = decoder.push(chunk);
    for (const f of frames) {
      if (loggedIn) client.frame(f);
      else if (f.type === FrameType.ERROR) {
        const { reason } = decodeError(f.payload);
        client.closeReason = reason;
        onAuthEnd?.(reason);
      } else if (onAuthFrame) onAuthFrame(f);
      else early.push(f);
    }
    if (error) {
      client.emit('protocol-error', error);
      socket.destroy();
    }
  });
  socket.once('close', () => onAuthEnd?.(client.closeReason ?? 'the server closed the connection'));

  const nextAuth = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`login: no answer within ${timeoutMs} ms`)), timeoutMs);
      onAuthFrame = (f) => {
        clearTimeout(timer);
        onAuthFrame = undefined;
        if (f.type !== FrameType.AUTH) reject(new Error(`login: expected an AUTH frame, got type 0x${f.type.toString(16)}`));
        else resolve(f.payload.toString('utf8'));
      };
      onAuthEnd = (reason) => {
        clearTimeout(timer);
        reject(new DeviceRefusedError(`login refused: ${reason}`, 0));
      };
      const f = early.shift();
      if (f) onAuthFrame(f);
    });

  try {
    const cnonce = randomBytes(18).toString('base64');
    const bare = `n=${saslName(options.serial)},r=${cnonce}`;
    const gs2 = 'n,,';
    socket.write(encodeFrame(FrameType.AUTH, gs2 + bare));
    let answer = await nextAuth();
    for (let round = 0; ; round++) {
      if (answer.startsWith('e=')) throw new DeviceRefusedError(`login refused: ${answer.slice(2)}`, 0, answer.slice(2));
      const attrs = Object.fromEntries(answer.split(',').map((a) => [a.slice(0, 1), a.slice(2)]));
      if (!answer.startsWith('r=') || round > 1) throw new Error(`login: unexpected server message "${answer.slice(0, 100)}"`);
      const nonce = attrs.r;
      const iterations = Number(attrs.i);
      if (!nonce?.startsWith(cnonce) || nonce.length === cnonce.length) throw new Error('login: the server did not extend our nonce');
      if (!Number.isInteger(iterations) || iterations < SCRAM_MIN_ITERATIONS || iterations > SCRAM_MAX_ITERATIONS)
        throw new Error(`login: bad iteration count ${attrs.i}`);
      const salted = await saltedPasswordAsync(options.key, Buffer.from(attrs.s ?? '', 'base64'), iterations);
      const withoutProof = `c=${Buffer.from(gs2).toString('base64')},r=${nonce}`;
      const authMessage = `${bare},${answer},${withoutProof}`;
      const proof = clientProof(scramClientKey(salted), authMessage);
      socket.write(encodeFrame(FrameType.AUTH, `${withoutProof},p=${proof.toString('base64')}`));
      answer = await nextAuth();
      if (answer.startsWith('v=')) {
        const expected = createHmac('sha256', createHmac('sha256', salted).update('Server Key').digest()).update(authMessage).digest();
        const got = Buffer.from(answer.slice(2), 'base64');
        if (got.length !== expected.length || !timingSafeEqual(got, expected))
          throw new Error('login: the server’s signature is wrong: it does not hold this device’s key');
        break;
      }
      // e=…: refused; r=…: a second salt (the device holds two keys during a rotation), prove again.
    }
    loggedIn = true;
    onAuthEnd = undefined;
    for (const f of early.splice(0)) client.frame(f);
    return client;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}
