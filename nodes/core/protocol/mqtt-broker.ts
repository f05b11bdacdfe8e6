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
 * packet by packet by MqttBridge (mqtt-bridge.ts, which also says why aedes 2 does not replace
 * it yet). Every connection also passes the bridge's frame limit: a packet announcing more than
 * limits.maxFrameBytes closes it (MQTT 5: DISCONNECT 0x95) before it is buffered.
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
import { deviceRefused } from '../metrics/metrics';
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import type { DeviceDirectory, DeviceIdentity } from '../devices/directory';
import { authenticateDeviceKey } from '../devices/directory';
import { deviceMessage } from '../devices/ingest';
import type { TenantRate } from '../devices/tenant-rate';
import type { IssuedToken, UdpTokens } from '../devices/udp-tokens';
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
import { MqttBridge, RC } from './mqtt-bridge';

/** A reading from a device, as a listener sends it: the canonical message, plus the topic and any command results. */
export interface DeviceReading extends CanonicalMessage {
  device: DeviceRef;
  source: SourceInfo;
  /** The MQTT topic it came on. */
  topic: string;
  /** cmdexe: the command results it carried (also as `<serial>/<command>_info` records). */
  commandResults?: CommandResult[];
}

export const MQTT_REJECT_REASONS = [
  'auth',
  'sessions',
  'topic',
  'subscribe',
  'payload',
  'rate-limited',
  'busy',
  'not-stored',
  'oversized',
  'protocol',
] as const;
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
  rate: Pick<TenantRate, 'take'>;
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

/** Where a refused publish is sent so that aedes delivers it to no one. */
const REFUSED_TOPIC = '$conflux/refused';

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
        if (state.session) this.options.sessions.remove(state.session, 'the broker is stopping');
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
    deviceRefused('mqtt', rejection.reason);
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
      packet.username === undefined
        ? `anonymous:${randomUUID()}`
        : observer && packet.username === observer.username
          ? `observer:${randomUUID()}`
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
      return refuse(
        'topic',
        RC.notAuthorized,
        `a device publishes only on its attrs and cmdexe topics, e.g. /ul/${device.tenant}/${device.serial}/attrs`,
        true,
      );
    }
    if (topic.deviceId !== device.serial || topic.tenant !== device.tenant) {
      return refuse('topic', RC.notAuthorized, `topic ${topicText} is not under this device's /${device.tenant}/${device.serial}/`, true);
    }
    if (this.closing) return refuse('busy', RC.quotaExceeded, 'the broker is closing', true);
    if (topic.kind === 'tokens') return this.grantTokens(state, packet, refuse, cb);
    if (this.pending >= this.maxPending || state.pending >= this.maxPendingPerSession) {
      return refuse('busy', RC.quotaExceeded, `too many readings waiting to be handed on (${this.pending})`, true);
    }
    // Counted pending from here: the packets of one read are handled at once, the rate is checked in the database.
    const receivedAt = this.now();
    this.pending++;
    state.pending++;
    const settle = () => {
      this.pending--;
      state.pending--;
    };
    this.options.rate.take(device.tenant).then(
      (ok) => {
        if (!ok) {
          settle();
          return refuse('rate-limited', RC.quotaExceeded, `tenant ${device.tenant} is over its rate`, true);
        }
        this.handOn(state, topic, packet, receivedAt, settle, refuse, cb);
      },
      (err: Error) => {
        settle();
        this.report({ reason: 'not-stored', detail: `not stored: ${err.message}`, device: ref(device), topic: topicText, remote: conn.remote });
        cb(new Error('not stored')); // as when the flow failed it: no acknowledgement, the device sends it again
      },
    );
  }

  private handOn(
    state: DeviceState,
    topic: DeviceTopic,
    packet: PublishPacket,
    receivedAt: number,
    settle: () => void,
    refuse: (reason: MqttRejectReason, code: number, detail: string, closeOn311: boolean) => void,
    cb: (err?: Error | null) => void,
  ): void {
    const { device, conn } = state;
    const topicText = packet.topic;
    let msg: DeviceReading;
    try {
      const decoded = decodeDevicePublish(topic, packet.payload as Buffer, device.serial, receivedAt / 1000);
      if (topic.kind !== 'cmdexe') state.lastFormat = decoded.format;
      msg = { ...deviceMessage(device, decoded, 'mqtt', receivedAt), topic: topicText } as DeviceReading;
      if (decoded.commands) msg.commandResults = decoded.commands;
    } catch (err) {
      settle();
      return refuse('payload', RC.payloadFormatInvalid, (err as Error).message, false);
    }
    let handed: Promise<void> | void;
    try {
      handed = this.options.onReadings(msg);
    } catch (err) {
      handed = Promise.reject(err);
    }
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
    const { device, cmdTopics } = state;
    const tokens = this.options.tokens;
    if (!tokens) return refuse('topic', RC.notAuthorized, 'this broker issues no UDP tokens', false);
    const count = tokenCount(packet.payload as Buffer);
    if (count === undefined) return refuse('payload', RC.payloadFormatInvalid, 'a tokens request is a count from 1 to 100 (empty: 1)', false);
    if (cmdTopics.size === 0) {
      return refuse('protocol', RC.implementationSpecific, `subscribe to /${device.tenant}/${device.serial}/cmd first: the tokens come there`, false);
    }
    const over = () => refuse('rate-limited', RC.quotaExceeded, `tenant ${device.tenant} is over its rate`, true);
    const unavailable = (err: Error) => refuse('busy', RC.implementationSpecific, `no UDP tokens: ${err.message}`, true);
    this.options.rate
      .take(device.tenant)
      .then((ok) => (ok ? tokens.issue(device, count).then((issued) => this.sendGrant(state, issued, packet, cb), unavailable) : over()), unavailable);
  }

  private sendGrant(state: DeviceState, issued: IssuedToken[], packet: PublishPacket, cb: (err?: Error | null) => void): void {
    const { device, client, cmdTopics } = state;
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
      detail: state
        ? `a device subscribes only to its own command topic /${state.device.tenant}/${state.device.serial}/cmd (asked for ${sub.topic})`
        : 'not authenticated',
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
