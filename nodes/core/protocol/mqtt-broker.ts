/**
 * The embedded MQTT broker for devices (docs/protocol-mqtt.md): aedes on a TCP port (optionally
 * TLS), where each device logs in with its own credentials and may publish only under its own
 * topics. Framework-free.
 *
 *   CONNECT    username = the device's serial, password = its key, checked against the gateway's
 *              directory (authenticateDeviceKey: either of its valid keys). Wrong: CONNACK 4
 *              (MQTT 5: 0x86); session limit reached or directory down: CONNACK 3 (0x88). The
 *              client id is replaced by the serial, so one device has one session and a device
 *              cannot push another off the broker by taking its client id.
 *   PUBLISH    only on its own attrs, attrs/<attr> and cmdexe topics (mqtt-topics.ts), the apikey
 *              level being its tenant. Decoded (UltraLight, JSON attributes or SenML, by topic) and
 *              handed to onReadings BEFORE the broker acknowledges: a QoS 1 message is PUBACKed
 *              only once onReadings resolved (Conflux holds it). Not forwarded to anyone (only to
 *              an observer account, when one is configured). Retain flags are cleared.
 *   SUBSCRIBE  only its own cmd topic (any of its forms); anything else: SUBACK 0x80 (MQTT 5:
 *              0x87 Not authorized), the session goes on.
 *
 * Refusals. MQTT 5 has reason codes, so a refused PUBLISH gets a PUBACK with its reason and the
 * session goes on: 0x87 not its topic, 0x97 rate or capacity exceeded, 0x99 payload not
 * decodable. MQTT 3.1.1 has none: a payload that cannot be decoded is acknowledged and dropped
 * (sending it again would not help; a device would otherwise resend it forever), while a foreign
 * topic (MQTT-3.3.5-2), the rate limit and a full pipeline close the connection without an
 * acknowledgement, so the device keeps a QoS 1 message and sends it again after reconnecting.
 * Every refusal goes to onRejected with its reason.
 *
 * MQTT 5. aedes speaks MQTT 3.1 and 3.1.1 only; an MQTT 5 device's connection is translated
 * packet by packet (MqttBridge below): properties are dropped on the way in (topic aliases and
 * enhanced authentication refused), reason codes and the CONNACK's properties added on the way
 * out. A v5 Clean Start with Session Expiry Interval 0 maps to a clean 3.1.1 session, anything
 * else to a persistent one. Every connection also passes the frame limit: a packet announcing
 * more than limits.maxFrameBytes closes it (MQTT 5: DISCONNECT 0x95) before it is buffered.
 *
 * Live devices are sessions in the gateway's SessionRegistry: send('command', {name, params})
 * (or send(kind, payload), a command named kind) publishes a command on the cmd topics the
 * device subscribed to, in FIWARE's syntax (mqtt-topics.ts, encodeCommand).
 *
 * UDP tokens: a device publishes a count (1 to 100) on `/<tenant>/<serial>/tokens`; the grant
 * comes on its cmd topic as the command `udptokens` — UltraLight
 * `<serial>@udptokens|expiresAt=<ISO time>|expiresIn=<s>|tokens=<hex>,<hex>…`, JSON
 * `{"udptokens": {"tokens": [<base64>…], "expiresAt": "<ISO time>", "expiresIn": <s>}}`.
 */
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import type { DeviceDirectory, DeviceIdentity } from '../devices/directory';
import { authenticateDeviceKey } from '../devices/directory';
import { deviceMessage } from '../devices/ingest';
import type { RateLimiter } from '../devices/rate-limit';
import type { UdpTokens } from '../devices/udp-tokens';
import { SessionLimitError, type Session, type SessionRegistry } from '../devices/sessions';
import type { CanonicalMessage, DeviceRef, SourceInfo } from '../model/message';
import {
  commandFormat,
  decodeDevicePublish,
  encodeCommand,
  parseDeviceTopic,
  tokenCount,
  type Command,
  type CommandResult,
  type DeviceTopic,
} from './mqtt-topics';

// aedes's own mqtt-packet (both aedes and mqtt depend on it; resolved from aedes so it is always found).
const mqttPacket = createRequire(require.resolve('aedes'))('mqtt-packet') as typeof import('mqtt-packet');

/** A reading from a device, as a listener sends it: the canonical message, plus the topic and any command results. */
export interface DeviceReading extends CanonicalMessage {
  device: DeviceRef;
  source: SourceInfo;
  /** The MQTT topic it came on. */
  topic: string;
  /** cmdexe: the command results it carried (also as `<serial>/<command>_info` records). */
  commandResults?: CommandResult[];
}

export const MQTT_REJECT_REASONS = ['auth', 'sessions', 'topic', 'subscribe', 'payload', 'rate-limited', 'busy', 'not-stored', 'oversized', 'protocol'] as const;
export type MqttRejectReason = (typeof MQTT_REJECT_REASONS)[number];

export interface MqttRejection {
  reason: MqttRejectReason;
  detail: string;
  /** The device, when it had authenticated. */
  device?: DeviceRef;
  /** The serial a connection claimed, when it did not authenticate. */
  serial?: string;
  topic?: string;
  /** address:port of the connection. */
  remote?: string;
}

export interface MqttBrokerStats {
  accepted: number;
  rejected: Record<MqttRejectReason, number>;
  /** Authenticated devices connected now. */
  sessions: number;
  /** Readings handed to onReadings whose promise has not settled. */
  pending: number;
}

export interface MqttBrokerOptions {
  /** 0: any free port (see address()). */
  port: number;
  /** Default: every interface. */
  host?: string;
  /** TLS (MQTT over TLS, port 8883 by convention): cert and key, optionally ca and requestCert for client certificates. */
  tls?: tls.TlsOptions;
  directory: () => Promise<DeviceDirectory> | DeviceDirectory;
  sessions: SessionRegistry;
  rate: Pick<RateLimiter, 'take'>;
  /** Issues single-use UDP tokens to devices that ask on their tokens topic; without it they are refused. */
  tokens?: Pick<UdpTokens, 'issue'>;
  limits: { maxFrameBytes: number; idleTimeoutMs: number; maxSessions: number };
  /** Readings handed on and not yet settled, over all devices, at most; beyond: refused as 'busy'. Default 10,000. */
  maxPending?: number;
  /** The same for one device. Default 1,000. */
  maxPendingPerSession?: number;
  /**
   * An account (not a device) that may subscribe to anything under the device topics and
   * receives the devices' telemetry and commands, read-only: for monitoring. Without it the
   * broker forwards device telemetry to no one.
   */
  observer?: { username: string; password: string };
  /** The accepted reading; the broker acknowledges it once the returned promise resolves. */
  onReadings(msg: DeviceReading): Promise<void> | void;
  onRejected?(rejection: MqttRejection): void;
  /** The number of connected devices changed. */
  onSessions?(count: number): void;
  /** A device's session subscribed to its cmd topic: commands can reach it now (queued ones go out). */
  onCommandTopic?(session: Session): void;
  now?: () => number;
}

/** MQTT 5 reason codes used here. */
const RC = {
  unspecified: 0x80,
  protocolError: 0x82,
  implementationSpecific: 0x83,
  badCredentials: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverShuttingDown: 0x8b,
  sessionTakenOver: 0x8e,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  quotaExceeded: 0x97,
  payloadFormatInvalid: 0x99,
} as const;

/** 3.1.1 CONNACK return code → MQTT 5 reason code. */
const CONNACK_V5: Record<number, number> = { 0: 0, 1: 0x84, 2: 0x85, 3: RC.serverUnavailable, 4: RC.badCredentials, 5: RC.notAuthorized };

/** Where a refused publish is sent so that aedes delivers it to no one. */
const REFUSED_TOPIC = '$conflux/refused';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyPacket = Record<string, any> & { cmd: string };

/** Total length of the MQTT packet starting at pos; undefined: header incomplete; -1: malformed length. */
function frameLength(buf: Buffer, pos: number): number | undefined {
  let len = 0;
  let mult = 1;
  for (let i = pos + 1; i < pos + 5; i++) {
    if (i >= buf.length) return undefined;
    const b = buf[i];
    len += (b & 0x7f) * mult;
    mult *= 128;
    if ((b & 0x80) === 0) return i - pos + 1 + len;
  }
  return -1;
}

export interface MqttBridgeOptions {
  maxFrameBytes: number;
  /** A connection closed by the bridge: too large a packet, or a protocol error in an MQTT 5 stream. */
  onViolation?(reason: 'oversized' | 'protocol', detail: string): void;
}

/**
 * The stream aedes reads and writes for one connection. It splits the socket's bytes into
 * packets (refusing one that announces more than maxFrameBytes before buffering it) and, for a
 * client that connected with MQTT 5, translates between MQTT 5 on the wire and MQTT 3.1.1 for
 * aedes. Exported so a test can stand up an MQTT 5 broker from aedes too.
 */
export class MqttBridge extends Duplex {
  /** The client connected with MQTT 5. */
  v5 = false;
  /** The CONNECT's keep-alive, seconds (0: none). */
  keepalive = 0;
  /** Set by aedes on the stream it handles. */
  declare client: Client | undefined;
  private buffered: Buffer = Buffer.alloc(0);
  private first = true;
  private inParser?: ReturnType<typeof mqttPacket.parser>;
  private outParser?: ReturnType<typeof mqttPacket.parser>;
  private inParsed: AnyPacket[] = [];
  private outParsed: AnyPacket[] = [];
  /** messageId → MQTT 5 reason code for its PUBACK/PUBREC. */
  private readonly refusals = new Map<number, number>();
  /** messageId → number of topic filters in an UNSUBSCRIBE, for the MQTT 5 UNSUBACK. */
  private readonly unsubscribes = new Map<number, number>();
  private writeCallback: (() => void) | undefined;

  constructor(
    readonly socket: net.Socket,
    private readonly options: MqttBridgeOptions,
  ) {
    super({ allowHalfOpen: false });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    socket.on('drain', () => {
      const cb = this.writeCallback;
      this.writeCallback = undefined;
      cb?.();
    });
  }

  get remote(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  /** MQTT 5: the PUBACK (or PUBREC) of this message carries this reason code. */
  refuse(messageId: number | undefined, reasonCode: number): void {
    if (this.v5 && messageId !== undefined) this.refusals.set(messageId, reasonCode);
  }

  /** MQTT 5: sends DISCONNECT with the reason code (3.1.1 has no server DISCONNECT). */
  disconnect(reasonCode: number): void {
    if (this.v5 && this.socket.writable) this.socket.write(mqttPacket.generate({ cmd: 'disconnect', reasonCode } as never, { protocolVersion: 5 }));
  }

  /** Closes the socket after this much silence (no packet either way). */
  setIdle(ms: number): void {
    this.socket.setTimeout(ms, () => this.socket.destroy());
  }

  private violation(reason: 'oversized' | 'protocol', detail: string, reasonCode: number): void {
    this.options.onViolation?.(reason, detail);
    this.disconnect(reasonCode);
    this.socket.destroy();
    this.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.destroyed) return;
    let buf = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < buf.length) {
      const total = frameLength(buf, pos);
      if (total === undefined) break;
      if (total < 0) return this.violation('protocol', 'malformed remaining length', RC.protocolError);
      if (total > this.options.maxFrameBytes) {
        return this.violation('oversized', `packet of ${total} bytes, over the limit of ${this.options.maxFrameBytes}`, RC.packetTooLarge);
      }
      if (pos + total > buf.length) break;
      const frame = buf.subarray(pos, pos + total);
      pos += total;
      if (this.first) {
        this.first = false;
        this.inspectConnect(frame);
      }
      if (!this.v5) out.push(frame);
      else {
        const translated = this.inbound(frame);
        if (translated === undefined) return; // closed
        if (translated !== null) out.push(translated);
      }
    }
    buf = buf.subarray(pos);
    this.buffered = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf); // copy: do not pin the chunk
    if (out.length > 0 && !this.push(out.length === 1 ? out[0] : Buffer.concat(out))) this.socket.pause();
  }

  /** Reads the protocol level (and keep-alive) of the first packet when it is a CONNECT. */
  private inspectConnect(frame: Buffer): void {
    if (frame[0] >> 4 !== 1) return;
    let i = 1;
    while (i < 5 && frame[i] & 0x80) i++;
    i++;
    if (i + 2 > frame.length) return;
    const nameLength = frame.readUInt16BE(i);
    const level = frame[i + 2 + nameLength];
    const keepaliveAt = i + 2 + nameLength + 2;
    if (keepaliveAt + 2 <= frame.length) this.keepalive = frame.readUInt16BE(keepaliveAt);
    if (level === 5) {
      this.v5 = true;
      this.inParser = mqttPacket.parser();
      this.inParser.on('packet', (p: AnyPacket) => this.inParsed.push(p));
      this.inParser.on('error', () => undefined); // reported by parse() leaving nothing parsed
      this.outParser = mqttPacket.parser({ protocolVersion: 4 });
      this.outParser.on('packet', (p: AnyPacket) => this.outParsed.push(p));
      this.outParser.on('error', (err: Error) => this.destroy(err));
    }
  }

  /** MQTT 5 → 3.1.1 for one whole packet; null: swallowed; undefined: the connection was closed. */
  private inbound(frame: Buffer): Buffer | null | undefined {
    this.inParsed = [];
    this.inParser!.parse(frame);
    const p = this.inParsed[0];
    this.inParsed = [];
    if (!p) {
      this.violation('protocol', 'malformed MQTT 5 packet', RC.protocolError);
      return undefined;
    }
    let v4: AnyPacket;
    switch (p.cmd) {
      case 'connect': {
        const expiry = Number(p.properties?.sessionExpiryInterval ?? 0);
        v4 = {
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: p.clientId,
          clean: Boolean(p.clean) || !(expiry > 0),
          keepalive: p.keepalive,
          ...(p.username === undefined ? {} : { username: p.username }),
          ...(p.password === undefined ? {} : { password: p.password }),
          ...(p.will ? { will: { topic: p.will.topic, payload: p.will.payload, qos: p.will.qos, retain: p.will.retain } } : {}),
        };
        break;
      }
      case 'publish':
        if (p.properties?.topicAlias !== undefined) {
          this.violation('protocol', 'topic aliases are not supported (the broker advertises none)', RC.topicAliasInvalid);
          return undefined;
        }
        v4 = { cmd: 'publish', topic: p.topic, payload: p.payload, qos: p.qos, retain: p.retain, dup: p.dup, ...(p.qos > 0 ? { messageId: p.messageId } : {}) };
        break;
      case 'puback':
      case 'pubrec':
      case 'pubrel':
      case 'pubcomp':
        v4 = { cmd: p.cmd, messageId: p.messageId };
        break;
      case 'subscribe':
        v4 = { cmd: 'subscribe', messageId: p.messageId, subscriptions: p.subscriptions.map((s: AnyPacket) => ({ topic: s.topic, qos: s.qos })) };
        break;
      case 'unsubscribe':
        this.unsubscribes.set(p.messageId, p.unsubscriptions.length);
        v4 = { cmd: 'unsubscribe', messageId: p.messageId, unsubscriptions: p.unsubscriptions };
        break;
      case 'pingreq':
        v4 = { cmd: 'pingreq' };
        break;
      case 'disconnect':
        if (p.reasonCode === 0x04) {
          // "Disconnect with Will Message": close without DISCONNECT so the will is published
          this.socket.destroy();
          this.destroy();
          return undefined;
        }
        v4 = { cmd: 'disconnect' };
        break;
      default:
        this.violation('protocol', `${p.cmd} is not supported (no enhanced authentication)`, RC.protocolError);
        return undefined;
    }
    return mqttPacket.generate(v4 as never, { protocolVersion: 4 });
  }

  /** 3.1.1 (from aedes) → MQTT 5, for one packet. */
  private outbound(p: AnyPacket): Buffer {
    let v5: AnyPacket;
    switch (p.cmd) {
      case 'connack':
        v5 = {
          cmd: 'connack',
          sessionPresent: p.sessionPresent,
          reasonCode: CONNACK_V5[p.returnCode] ?? RC.unspecified,
          ...(p.returnCode === 0
            ? {
                properties: {
                  maximumPacketSize: this.options.maxFrameBytes,
                  wildcardSubscriptionAvailable: false,
                  sharedSubscriptionAvailable: false,
                  subscriptionIdentifiersAvailable: false,
                },
              }
            : {}),
        };
        break;
      case 'puback':
      case 'pubrec': {
        const code = this.refusals.get(p.messageId);
        this.refusals.delete(p.messageId);
        v5 = { cmd: p.cmd, messageId: p.messageId, ...(code === undefined ? {} : { reasonCode: code }) };
        break;
      }
      case 'suback':
        v5 = { cmd: 'suback', messageId: p.messageId, granted: p.granted.map((g: number) => (g === 0x80 ? RC.notAuthorized : g)) };
        break;
      case 'unsuback': {
        const count = this.unsubscribes.get(p.messageId) ?? 1;
        this.unsubscribes.delete(p.messageId);
        v5 = { cmd: 'unsuback', messageId: p.messageId, granted: new Array<number>(count).fill(0) };
        break;
      }
      default:
        v5 = p;
    }
    return mqttPacket.generate(v5 as never, { protocolVersion: 5 });
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    let ok: boolean;
    if (!this.v5) ok = this.socket.write(chunk);
    else {
      this.outParsed = [];
      this.outParser!.parse(chunk);
      const packets = this.outParsed;
      this.outParsed = [];
      ok = true;
      for (const p of packets) ok = this.socket.write(this.outbound(p)) && ok;
    }
    if (ok) callback();
    else this.writeCallback = callback;
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const cb = this.writeCallback;
    this.writeCallback = undefined;
    cb?.();
    // End rather than destroy: what was written (acknowledgements) still reaches the client.
    if (!this.socket.destroyed) {
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 2_000).unref();
    }
    callback(err);
  }
}

interface DeviceState {
  device: DeviceIdentity;
  client: Client;
  conn: MqttBridge;
  /** The cmd topics it subscribed to, by topic. */
  cmdTopics: Map<string, DeviceTopic>;
  /** The format of its last measures, for commands on an unprefixed cmd topic. */
  lastFormat?: string;
  pending: number;
  session?: MqttSession;
}

class MqttSession implements Session {
  readonly transport = 'mqtt' as const;

  constructor(private readonly state: DeviceState) {}

  get device(): DeviceIdentity {
    return this.state.device;
  }

  send(kind: string, payload: unknown): Promise<void> {
    const { client, cmdTopics, device } = this.state;
    let command: Command;
    try {
      command = kind === 'command' ? asCommand(payload) : { name: kind, params: payload };
    } catch (err) {
      return Promise.reject(err);
    }
    if (client.closed) return Promise.reject(new Error(`the MQTT session of device ${device.serial} is closed`));
    if (cmdTopics.size === 0) return Promise.reject(new Error(`device ${device.serial} has not subscribed to its command topic`));
    const sends = [...cmdTopics].map(([topic, parsed]) => {
      const body = encodeCommand(commandFormat(parsed, this.state.lastFormat), device.serial, command);
      return new Promise<void>((resolve, reject) => {
        client.publish({ cmd: 'publish', topic, payload: body, qos: 1, retain: false, dup: false } as PublishPacket, (err) => (err ? reject(err) : resolve()));
      });
    });
    return Promise.all(sends).then(() => undefined);
  }

  close(reason: string): void {
    void reason;
    this.state.conn.disconnect(RC.sessionTakenOver);
    this.state.client.close();
  }
}

function asCommand(payload: unknown): Command {
  const c = payload as Partial<Command> | null;
  if (c === null || typeof c !== 'object' || typeof c.name !== 'string' || c.name === '') throw new Error('a command is {name, params}: name missing');
  return { name: c.name, params: c.params };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export class MqttDeviceBroker {
  private readonly aedes: Aedes;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly states = new WeakMap<Client, DeviceState>();
  private readonly observers = new WeakSet<Client>();
  private readonly live = new Set<DeviceState>();
  private readonly maxPending: number;
  private readonly maxPendingPerSession: number;
  private readonly now: () => number;
  private pending = 0;
  private accepted = 0;
  private readonly rejected = Object.fromEntries(MQTT_REJECT_REASONS.map((r) => [r, 0])) as Record<MqttRejectReason, number>;
  private closing = false;
  private listening = false;
  private closed: Promise<void> | undefined;

  constructor(private readonly options: MqttBrokerOptions) {
    this.maxPending = options.maxPending ?? 10_000;
    this.maxPendingPerSession = options.maxPendingPerSession ?? 1_000;
    this.now = options.now ?? Date.now;
    this.aedes = new Aedes({
      id: `conflux-${randomUUID()}`,
      connectTimeout: Math.min(10_000, options.limits.idleTimeoutMs),
      heartbeatInterval: 3_600_000,
      maxClientsIdLength: 1024,
      maxTopicLevels: 16,
      drainTimeout: 30_000,
      preConnect: (client, packet, cb) => this.preConnect(client, packet, cb),
      authenticate: (client, username, password, cb) => this.authenticate(client, username, password, cb),
      authorizePublish: (client, packet, cb) => this.authorizePublish(client, packet, cb),
      authorizeSubscribe: (client, sub, cb) => this.authorizeSubscribe(client, sub, cb),
      authorizeForward: (client, packet) => this.authorizeForward(client, packet),
    });
    this.aedes.on('clientReady', (client) => this.clientReady(client));
    this.aedes.on('clientDisconnect', (client) => this.clientGone(client));
    this.aedes.on('subscribe', (subscriptions, client) => {
      const state = client ? this.states.get(client) : undefined;
      if (!state?.session || !subscriptions.some((s) => state.cmdTopics.has(s.topic))) return;
      try {
        this.options.onCommandTopic?.(state.session);
      } catch {
        // the listener's own failure
      }
    });
    this.aedes.on('unsubscribe', (topics, client) => {
      const state = this.states.get(client);
      if (state) for (const t of topics) state.cmdTopics.delete(t);
    });
    // Errors of single connections: aedes closes them; nothing to throw.
    this.aedes.on('clientError', () => undefined);
    this.aedes.on('connectionError', () => undefined);
    const onSocket = (socket: net.Socket) => this.accept(socket);
    this.server = options.tls ? tls.createServer(options.tls, onSocket) : net.createServer(onSocket);
    this.server.on('tlsClientError', () => undefined); // a failed handshake: that connection only
  }

  /** Starts listening; resolves with the address. */
  async listen(): Promise<net.AddressInfo> {
    await this.aedes.listen();
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => reject(err);
      this.server.once('error', fail);
      this.server.listen(this.options.port, this.options.host || undefined, () => {
        this.server.off('error', fail);
        resolve();
      });
    });
    this.listening = true;
    this.server.on('error', () => undefined);
    return this.address();
  }

  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  stats(): MqttBrokerStats {
    return { accepted: this.accepted, rejected: { ...this.rejected }, sessions: this.live.size, pending: this.pending };
  }

  /** Closes every connection (MQTT 5: DISCONNECT 0x8B), the broker and its server. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.closing = true;
      for (const state of [...this.live]) {
        if (state.session) this.options.sessions.remove(state.session);
        state.conn.disconnect(RC.serverShuttingDown);
      }
      this.live.clear();
      const serverClosed = this.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
      await serverClosed;
    })();
    return this.closed;
  }

  private report(rejection: MqttRejection): void {
    this.rejected[rejection.reason]++;
    try {
      this.options.onRejected?.(rejection);
    } catch {
      // a reporting callback must not break the broker
    }
  }

  private accept(socket: net.Socket): void {
    if (this.closing || this.sockets.size >= this.options.limits.maxSessions + 64) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const bridge = new MqttBridge(socket, {
      maxFrameBytes: this.options.limits.maxFrameBytes,
      onViolation: (reason, detail) => {
        const state = bridge.client ? this.states.get(bridge.client) : undefined;
        this.report({ reason, detail, remote: bridge.remote, ...(state ? { device: ref(state.device) } : {}) });
      },
    });
    bridge.on('error', () => undefined);
    this.aedes.handle(bridge);
  }

  private preConnect(client: Client, packet: { clientId: string; username?: string; keepalive?: number }, cb: (err: Error | null, ok: boolean) => void): void {
    // One session per device: the session is keyed by the serial, whatever client id it sent.
    const observer = this.options.observer;
    packet.clientId =
      packet.username === undefined ? `anonymous:${randomUUID()}`
      : observer && packet.username === observer.username ? `observer:${randomUUID()}`
      : `device:${packet.username}`;
    const conn = client.conn as MqttBridge;
    const keepaliveMs = (packet.keepalive ?? 0) * 1500;
    conn.setIdle(Math.max(this.options.limits.idleTimeoutMs, keepaliveMs));
    cb(null, !this.closing);
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    cb: (err: (Error & { returnCode: number }) | null, ok: boolean | null) => void,
  ): void {
    const conn = client.conn as MqttBridge;
    const fail = (returnCode: number, reason: MqttRejectReason, detail: string) => {
      this.report({ reason, detail, remote: conn.remote, ...(username ? { serial: username } : {}) });
      cb(Object.assign(new Error(detail), { returnCode }), false);
    };
    if (!username || !password) return fail(4, 'auth', 'a device logs in with its serial as username and its key as password');
    const observer = this.options.observer;
    if (observer && username === observer.username) {
      if (timingSafeEqual(digest(password.toString('utf8')), digest(observer.password))) {
        this.observers.add(client);
        return cb(null, true);
      }
      return fail(4, 'auth', 'wrong observer password');
    }
    Promise.resolve()
      .then(() => this.options.directory())
      .then((directory) => authenticateDeviceKey(directory, username, password.toString('utf8')))
      .then(
        (device) => {
          if (!device) return fail(4, 'auth', `wrong serial or key for "${username}"`);
          const { sessions, limits } = this.options;
          if (!sessions.get(device.tenant, device.serial) && sessions.size >= limits.maxSessions) {
            return fail(3, 'sessions', `session limit reached (${limits.maxSessions})`);
          }
          this.states.set(client, { device, client, conn, cmdTopics: new Map(), pending: 0 });
          cb(null, true);
        },
        (err: Error) => fail(3, 'auth', `device directory unavailable: ${err.message}`),
      );
  }

  private clientReady(client: Client): void {
    const state = this.states.get(client);
    if (!state) return;
    if (this.closing) return client.close();
    const session = new MqttSession(state);
    try {
      this.options.sessions.add(session);
    } catch (err) {
      if (err instanceof SessionLimitError) {
        this.report({ reason: 'sessions', detail: err.message, device: ref(state.device), remote: state.conn.remote });
        state.conn.disconnect(RC.quotaExceeded);
        return client.close();
      }
      throw err;
    }
    state.session = session;
    this.live.add(state);
    this.options.onSessions?.(this.live.size);
  }

  private clientGone(client: Client): void {
    const state = this.states.get(client);
    if (!state?.session) return;
    this.options.sessions.remove(state.session);
    if (this.live.delete(state)) this.options.onSessions?.(this.live.size);
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, cb: (err?: Error | null) => void): void {
    const state = client ? this.states.get(client) : undefined;
    if (!client || !state) return cb(new Error(client && this.observers.has(client) ? 'the observer account is read-only' : 'not authenticated'));
    packet.retain = false; // nothing is retained for later subscribers
    const { device, conn } = state;
    const topicText = packet.topic;
    const refuse = (reason: MqttRejectReason, code: number, detail: string, closeOn311: boolean) => {
      this.report({ reason, detail, device: ref(device), topic: topicText, remote: conn.remote });
      if (conn.v5 || !closeOn311 || (reason !== 'topic' && packet.qos === 0)) {
        if (packet.qos > 0) conn.refuse(packet.messageId, code);
        packet.topic = REFUSED_TOPIC; // acknowledged (with the reason on MQTT 5), delivered to no one
        return cb(null);
      }
      // MQTT 3.1.1: aedes closes the connection without acknowledging. A tick later, so that the
      // acknowledgements of the packets before it (read in the same chunk) are written first.
      setImmediate(() => cb(new Error(detail)));
    };
    const topic = parseDeviceTopic(topicText);
    if (!topic || topic.kind === 'cmd') {
      return refuse('topic', RC.notAuthorized, `a device publishes only on its attrs and cmdexe topics, e.g. /ul/${device.tenant}/${device.serial}/attrs`, true);
    }
    if (topic.deviceId !== device.serial || topic.tenant !== device.tenant) {
      return refuse('topic', RC.notAuthorized, `topic ${topicText} is not under this device's /${device.tenant}/${device.serial}/`, true);
    }
    if (this.closing) return refuse('busy', RC.quotaExceeded, 'the broker is closing', true);
    if (topic.kind === 'tokens') return this.grantTokens(state, packet, refuse, cb);
    if (this.pending >= this.maxPending || state.pending >= this.maxPendingPerSession) {
      return refuse('busy', RC.quotaExceeded, `too many readings waiting to be handed on (${this.pending})`, true);
    }
    if (!this.options.rate.take(device.tenant)) return refuse('rate-limited', RC.quotaExceeded, `tenant ${device.tenant} is over its rate`, true);
    const receivedAt = this.now();
    let msg: DeviceReading;
    try {
      const decoded = decodeDevicePublish(topic, packet.payload as Buffer, device.serial, receivedAt / 1000);
      if (topic.kind !== 'cmdexe') state.lastFormat = decoded.format;
      msg = { ...deviceMessage(device, decoded, 'mqtt', receivedAt), topic: topicText } as DeviceReading;
      if (decoded.commands) msg.commandResults = decoded.commands;
    } catch (err) {
      return refuse('payload', RC.payloadFormatInvalid, (err as Error).message, false);
    }
    this.pending++;
    state.pending++;
    let handed: Promise<void> | void;
    try {
      handed = this.options.onReadings(msg);
    } catch (err) {
      handed = Promise.reject(err);
    }
    const settle = () => {
      this.pending--;
      state.pending--;
    };
    if (handed === undefined || typeof (handed as Promise<void>).then !== 'function') {
      settle();
      this.accepted++;
      return cb(null);
    }
    (handed as Promise<void>).then(
      () => {
        settle();
        this.accepted++;
        cb(null);
      },
      (err: Error) => {
        settle();
        this.report({ reason: 'not-stored', detail: `not stored: ${err?.message ?? err}`, device: ref(device), topic: topicText, remote: conn.remote });
        cb(new Error('not stored')); // no acknowledgement, and the connection closes: the device sends it again
      },
    );
  }

  /** A request for UDP tokens: granted as the command `udptokens` on the device's cmd topics. */
  private grantTokens(
    state: DeviceState,
    packet: PublishPacket,
    refuse: (reason: MqttRejectReason, code: number, detail: string, closeOn311: boolean) => void,
    cb: (err?: Error | null) => void,
  ): void {
    const { device, client, cmdTopics } = state;
    const tokens = this.options.tokens;
    if (!tokens) return refuse('topic', RC.notAuthorized, 'this broker issues no UDP tokens', false);
    const count = tokenCount(packet.payload as Buffer);
    if (count === undefined) return refuse('payload', RC.payloadFormatInvalid, 'a tokens request is a count from 1 to 100 (empty: 1)', false);
    if (cmdTopics.size === 0) {
      return refuse('protocol', RC.implementationSpecific, `subscribe to /${device.tenant}/${device.serial}/cmd first: the tokens come there`, false);
    }
    if (!this.options.rate.take(device.tenant)) return refuse('rate-limited', RC.quotaExceeded, `tenant ${device.tenant} is over its rate`, true);
    const issued = tokens.issue(device, count);
    const expiresAt = issued[0].expiresAt;
    const expiresIn = Math.max(0, Math.round((expiresAt - this.now()) / 1000));
    for (const [topic, parsed] of cmdTopics) {
      const format = commandFormat(parsed, state.lastFormat);
      const params =
        format === 'json'
          ? { tokens: issued.map((t) => t.token.toString('base64')), expiresAt: new Date(expiresAt).toISOString(), expiresIn }
          : { expiresAt: new Date(expiresAt).toISOString(), expiresIn: String(expiresIn), tokens: issued.map((t) => t.token.toString('hex')).join(',') };
      const body = encodeCommand(format, device.serial, { name: 'udptokens', params });
      client.publish({ cmd: 'publish', topic, payload: body, qos: 1, retain: false, dup: false } as PublishPacket, () => undefined);
    }
    packet.topic = REFUSED_TOPIC; // the request itself goes to no one
    cb(null);
  }

  private authorizeSubscribe(client: Client, sub: Subscription, cb: (err: Error | null, sub?: Subscription | null) => void): void {
    if (this.observers.has(client)) return cb(null, sub.topic.startsWith('$') ? null : sub);
    const state = this.states.get(client);
    const topic = parseDeviceTopic(sub.topic);
    if (state && topic && topic.kind === 'cmd' && topic.deviceId === state.device.serial && topic.tenant === state.device.tenant) {
      state.cmdTopics.set(sub.topic, topic);
      return cb(null, sub);
    }
    this.report({
      reason: 'subscribe',
      detail: state ? `a device subscribes only to its own command topic /${state.device.tenant}/${state.device.serial}/cmd (asked for ${sub.topic})` : 'not authenticated',
      ...(state ? { device: ref(state.device), remote: state.conn.remote } : {}),
      topic: sub.topic,
    });
    cb(null, null); // SUBACK 0x80 (MQTT 5: 0x87); the session goes on
  }

  private authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    if (packet.topic === REFUSED_TOPIC) return null;
    const topic = parseDeviceTopic(packet.topic);
    if (!topic) return null;
    if (this.observers.has(client)) return packet; // telemetry and commands, read-only
    return topic.kind === 'cmd' ? packet : null; // a device gets its commands, never others' telemetry
  }
}

function ref(device: DeviceIdentity): DeviceRef {
  return { tenant: device.tenant, id: device.serial };
}
