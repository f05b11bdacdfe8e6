/**
 * Client mode (docs/protocol-mqtt.md): Conflux subscribes to the devices' topics on an external
 * MQTT broker (MQTT 5 or 3.1.1, TLS, `$share/<group>/` subscriptions for several instances).
 * Framework-free.
 *
 * Nothing accepted is lost when Conflux's own connection drops (the core `mqtt in` node's
 * weakness: mqtt.js acknowledges on receipt and its default session is clean):
 *   - a fixed client id, clean: false and (MQTT 5) a Session Expiry Interval, so the broker keeps
 *     the subscriptions and queues QoS 1 messages while Conflux is disconnected or redeploying;
 *   - a QoS 1 (or 2) message is acknowledged only once onReadings resolved (mqtt.js calls
 *     handleMessage before it sends the PUBACK/PUBCOMP). A message whose onReadings had not
 *     resolved when the connection dropped is not acknowledged on the next connection either:
 *     the broker sends it again. So delivery is at least once: after a drop a message may come
 *     twice, never not at all.
 * Up to receiveMaximum messages are handed on at once (their PUBACKs held back, in order, until
 * each onReadings resolved); past that mqtt.js reads no further and the broker holds the rest
 * (MQTT 5: Receive Maximum bounds what it sends unacknowledged).
 *
 * Trust model. The external broker authenticated the device and enforced its ACL; Conflux
 * cannot see who published. So the device is the one the topic names: `<apikey>/<deviceId>`
 * = tenant and serial. The device must exist in the directory under that tenant (else the
 * message is dropped and reported); configure the broker so that each device may publish only
 * under its own topics (e.g. a mosquitto ACL `pattern write /+/%u/#`), or a device could speak
 * for another. The embedded broker (mqtt-broker.ts) does this check itself.
 */
import { deviceRefused } from '../metrics/metrics';
import type * as mqtt from 'mqtt';
import type { DeviceDirectory, DeviceIdentity } from '../devices/directory';
import { deviceMessage } from '../devices/ingest';
import type { TenantRate } from '../devices/tenant-rate';
import type { DeviceRef } from '../model/message';
import type { DeviceReading } from './mqtt-broker';
import {
  commandFormat,
  decodeDevicePublish,
  DEVICE_PUBLISH_FILTERS,
  deviceTopic,
  encodeCommand,
  parseDeviceTopic,
  sharedFilter,
  type Command,
  type TopicPrefix,
} from './mqtt-topics';

export const CLIENT_REJECT_REASONS = ['topic', 'unknown-device', 'payload', 'oversized'] as const;
export type ClientRejectReason = (typeof CLIENT_REJECT_REASONS)[number];

export interface ClientRejection {
  reason: ClientRejectReason;
  detail: string;
  topic: string;
  /** The device the topic names, when it names one. */
  device?: DeviceRef;
}

export type ClientState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed';

export interface MqttClientOptions {
  /** mqtt://host:1883 or mqtts://host:8883 (TLS). */
  url: string;
  /** 5 (default) or 4 (3.1.1). */
  protocolVersion?: 4 | 5;
  /** Fixed, so the broker keeps this instance's session across reconnections. Each instance its own. */
  clientId: string;
  username?: string;
  password?: string;
  /** TLS: CA to trust (PEM), client certificate and key, and whether to verify the server (default true). */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; rejectUnauthorized?: boolean; servername?: string };
  /** Topic filters; default DEVICE_PUBLISH_FILTERS (every device → Conflux topic of the binding). */
  topics?: readonly string[];
  /** Subscribe as `$share/<group>/<filter>`: the instances of one group share the messages. */
  shareGroup?: string;
  /** Subscription QoS, default 1. */
  qos?: 0 | 1 | 2;
  /** MQTT 5: how long the broker keeps the session after a disconnection, seconds. Default 86,400. */
  sessionExpirySeconds?: number;
  /** MQTT 5: most unacknowledged messages the broker may send at once. Default 100. */
  receiveMaximum?: number;
  /** Default 2,000 ms. */
  reconnectPeriodMs?: number;
  /** Default 60 s. */
  keepaliveSeconds?: number;
  directory: () => Promise<DeviceDirectory> | DeviceDirectory;
  rate: TenantRate;
  /** Larger payloads are dropped and reported (MQTT 5: also announced as Maximum Packet Size). */
  maxFrameBytes: number;
  /** How long a directory answer is reused, ms. Default 30,000. */
  lookupCacheMs?: number;
  onReadings(msg: DeviceReading): Promise<void> | void;
  onRejected?(rejection: ClientRejection): void;
  onState?(state: ClientState, detail?: string): void;
  now?: () => number;
}

export interface MqttClientStats {
  accepted: number;
  rejected: Record<ClientRejectReason, number>;
  connected: boolean;
}

class Closing extends Error {
  override readonly name = 'Closing';
}

/** How a device was last heard from: for the form of its command topic and the syntax of its commands. */
interface Seen {
  leadingSlash: boolean;
  format?: string;
}

const CACHE_MAX = 10_000;

export class MqttBrokerClient {
  private client: mqtt.MqttClient | undefined;
  private generation = 0;
  private closing = false;
  private closedSignal!: Promise<void>;
  private signalClosed!: () => void;
  private accepted = 0;
  private readonly rejected = Object.fromEntries(CLIENT_REJECT_REASONS.map((r) => [r, 0])) as Record<ClientRejectReason, number>;
  private readonly cache = new Map<string, { device: DeviceIdentity | undefined; at: number }>();
  private readonly seen = new Map<string, Seen>();
  private readonly now: () => number;

  constructor(private readonly options: MqttClientOptions) {
    this.now = options.now ?? Date.now;
    this.closedSignal = new Promise<void>((resolve) => (this.signalClosed = resolve));
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  stats(): MqttClientStats {
    return { accepted: this.accepted, rejected: { ...this.rejected }, connected: this.connected };
  }

  /** The filters subscribed to, with the `$share/<group>/` prefix when a group is set. */
  filters(): string[] {
    const topics = this.options.topics && this.options.topics.length > 0 ? this.options.topics : DEVICE_PUBLISH_FILTERS;
    return topics.map((t) => (this.options.shareGroup ? sharedFilter(this.options.shareGroup, t) : t));
  }

  /** Connects (and keeps reconnecting until close). */
  start(): void {
    if (this.client) return;
    const o = this.options;
    const v5 = (o.protocolVersion ?? 5) === 5;
    const qos = o.qos ?? 1;
    const filters = this.filters();
    // mqtt.js is loaded on first use: the embedded broker (the default) never needs it.
    const client = (require('mqtt') as typeof mqtt).connect(o.url, {
      protocolVersion: v5 ? 5 : 4,
      clientId: o.clientId,
      clean: false,
      keepalive: o.keepaliveSeconds ?? 60,
      reconnectPeriod: o.reconnectPeriodMs ?? 2_000,
      connectTimeout: 10_000,
      resubscribe: true,
      ...(o.username ? { username: o.username } : {}),
      ...(o.password ? { password: o.password } : {}),
      ...(o.tls ?? {}),
      ...(v5
        ? {
            properties: {
              sessionExpiryInterval: o.sessionExpirySeconds ?? 86_400,
              receiveMaximum: o.receiveMaximum ?? 100,
              maximumPacketSize: o.maxFrameBytes + 65_536 + 1024, // payload limit + the topic and properties
            },
          }
        : {}),
    });
    this.client = client;
    this.options.onState?.('connecting');
    // Acknowledge only once the reading is handed on (see the header). mqtt.js reads the next
    // packet only once handleMessage calls back, and writes the PUBACK right then: waiting there
    // let one message at a time into the flow (one commit each). So for QoS 0 and 1 it calls back
    // at once, and the PUBACK mqtt.js then writes is held until that message is handed on, in the
    // order of arrival (MQTT 4.6); one that fails or outlives its connection is never sent (the
    // broker sends the message again). At most receiveMaximum are handled at once; past that
    // mqtt.js reads no further. QoS 2 keeps the serial path: mqtt.js releases its state in that callback.
    const held = new Map<number, Promise<boolean>>();
    let acks: Promise<unknown> = Promise.resolve();
    let inHand = 0;
    let resume: (() => void) | undefined;
    const limit = o.receiveMaximum ?? 100;
    const internals = client as unknown as { _sendPacket(packet: mqtt.Packet, cb?: (err?: Error) => void): void };
    const sendPacket = internals._sendPacket.bind(client);
    internals._sendPacket = (packet, cb) => {
      const handedOn = packet.cmd === 'puback' && packet.messageId !== undefined ? held.get(packet.messageId) : undefined;
      if (!handedOn) return sendPacket(packet, cb);
      held.delete(packet.messageId!);
      acks = acks.then(() => handedOn).then((ok) => ok && sendPacket(packet));
      cb?.();
    };
    client.handleMessage = (packet, callback) => {
      // A packet read before the connection dropped cannot be acknowledged any more: the broker
      // sends it again, so it is not handed on now (fewer duplicates).
      if (!client.connected || this.closing) return callback(new Error('connection lost; the broker sends it again'));
      const generation = this.generation;
      const current = () => generation === this.generation && !this.closing;
      if (packet.qos === 2) {
        this.handle(packet).then(
          () => (current() ? callback() : callback(new Error('connection lost before the message was handed on; the broker sends it again'))),
          (err: Error) => callback(err),
        );
        return;
      }
      inHand++;
      const handedOn = this.handle(packet).then(current, () => false);
      if (packet.qos === 1 && packet.messageId !== undefined) held.set(packet.messageId, handedOn);
      void handedOn.then(() => {
        inHand--;
        const next = resume;
        resume = undefined;
        next?.();
      });
      if (inHand < limit) callback();
      else resume = callback;
    };
    client.on('connect', (connack) => {
      this.options.onState?.('connected');
      if (!connack.sessionPresent) {
        client.subscribe(filters, { qos }, (err, granted) => {
          if (err) this.options.onState?.('connected', `subscription failed: ${err.message}`);
          else {
            const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
            if (refused.length > 0) this.options.onState?.('connected', `the broker refused ${refused.join(', ')}`);
          }
        });
      }
    });
    client.on('close', () => {
      this.generation++;
      if (!this.closing) this.options.onState?.('disconnected');
    });
    client.on('reconnect', () => this.options.onState?.('reconnecting'));
    client.on('error', (err) => this.options.onState?.(client.connected ? 'connected' : 'disconnected', err.message));
  }

  /**
   * Publishes a command to a device on the external broker, QoS 1, where FIWARE's agents publish
   * them: `/<tenant>/<serial>/cmd` (without the leading slash if the device's topics have none;
   * form.prefix for a prefixed cmd topic), in the syntax of its last measures (UltraLight, or JSON).
   */
  async publishCommand(device: DeviceRef, command: Command, form?: { prefix?: TopicPrefix; leadingSlash?: boolean }): Promise<void> {
    const client = this.client;
    if (!client || this.closing) throw new Error('the MQTT client is not started');
    const seen = this.seen.get(`${device.tenant}\u0000${device.id}`);
    const prefix = form?.prefix ?? '';
    const topic = deviceTopic({
      tenant: device.tenant,
      deviceId: device.id,
      kind: 'cmd',
      prefix,
      leadingSlash: form?.leadingSlash ?? seen?.leadingSlash ?? true,
    });
    await client.publishAsync(topic, encodeCommand(commandFormat({ prefix }, seen?.format), device.id, command), { qos: 1 });
  }

  /** Disconnects (the broker keeps the session for the next start with the same client id). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.signalClosed();
    const client = this.client;
    if (client) await client.endAsync(true).catch(() => undefined);
    this.options.onState?.('closed');
  }

  private report(rejection: ClientRejection): void {
    this.rejected[rejection.reason]++;
    deviceRefused('mqtt', rejection.reason);
    try {
      this.options.onRejected?.(rejection);
    } catch {
      // a reporting callback must not stop the client
    }
  }

  /** Waits ms, or throws Closing when the client closes first. */
  private async pause(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), this.closedSignal]);
    clearTimeout(timer);
    if (this.closing) throw new Closing('closing');
  }

  /** Waits until the tenant's rate lets one more message in; retried while the gateway's database is unreachable. */
  private async underRate(tenant: string): Promise<void> {
    const { rate } = this.options;
    for (let delay = 100; ;) {
      try {
        if (await rate.take(tenant)) return;
        await this.pause(Math.max(50, rate.retryAfter(tenant) * 1000));
      } catch (err) {
        if (err instanceof Closing) throw err;
        this.options.onState?.(this.connected ? 'connected' : 'disconnected', (err as Error).message);
        await this.pause(delay); // the message stays unacknowledged meanwhile
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  /** The device of that serial, from the directory (cached); retried while the directory is unreachable. */
  private async lookup(serial: string): Promise<DeviceIdentity | undefined> {
    const ttl = this.options.lookupCacheMs ?? 30_000;
    const hit = this.cache.get(serial);
    if (hit && this.now() - hit.at < ttl) return hit.device;
    for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
      if (this.closing) throw new Closing('closing');
      try {
        const directory = await this.options.directory();
        const found = await directory.credentials(serial);
        if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value as string);
        this.cache.set(serial, { device: found?.device, at: this.now() });
        return found?.device;
      } catch (err) {
        this.options.onState?.(this.connected ? 'connected' : 'disconnected', `device directory unavailable: ${(err as Error).message}`);
        await this.pause(delay); // the message stays unacknowledged meanwhile
      }
    }
  }

  private async handle(packet: mqtt.IPublishPacket): Promise<void> {
    const receivedAt = this.now();
    const topicText = packet.topic.toString();
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const topic = parseDeviceTopic(topicText);
    if (!topic || topic.kind === 'cmd') {
      if (topic?.kind !== 'cmd') this.report({ reason: 'topic', detail: 'not a device topic of the binding', topic: topicText });
      return; // acknowledged: sending it again would not make it one
    }
    const named: DeviceRef = { tenant: topic.tenant, id: topic.deviceId };
    if (payload.length > this.options.maxFrameBytes) {
      return this.report({
        reason: 'oversized',
        detail: `payload of ${payload.length} bytes, over the limit of ${this.options.maxFrameBytes}`,
        topic: topicText,
        device: named,
      });
    }
    const device = await this.lookup(topic.deviceId);
    if (!device || device.tenant !== topic.tenant) {
      return this.report({
        reason: 'unknown-device',
        detail: `no enabled device "${topic.deviceId}" in tenant "${topic.tenant}"`,
        topic: topicText,
        device: named,
      });
    }
    await this.underRate(device.tenant);
    let msg: DeviceReading;
    try {
      const decoded = decodeDevicePublish(topic, payload, device.serial, receivedAt / 1000);
      const key = `${device.tenant}\u0000${device.serial}`;
      if (this.seen.size >= CACHE_MAX && !this.seen.has(key)) this.seen.delete(this.seen.keys().next().value as string);
      this.seen.set(key, { leadingSlash: topic.leadingSlash, format: topic.kind === 'cmdexe' ? this.seen.get(key)?.format : decoded.format });
      msg = { ...deviceMessage(device, decoded, 'mqtt', receivedAt), topic: topicText } as DeviceReading;
      if (decoded.commands) msg.commandResults = decoded.commands;
    } catch (err) {
      return this.report({ reason: 'payload', detail: (err as Error).message, topic: topicText, device: named });
    }
    await this.options.onReadings(msg);
    this.accepted++;
  }
}
