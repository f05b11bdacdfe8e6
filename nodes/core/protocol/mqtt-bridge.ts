/**
 * MQTT 5 for the embedded broker (mqtt-broker.ts), and the frame limit for every connection.
 *
 * aedes 1.x (our dependency) speaks MQTT 3.1 and 3.1.1 only. MqttBridge is the stream aedes
 * reads and writes for one connection: it splits the socket's bytes into packets, refusing one
 * that announces more than maxFrameBytes before buffering it (MQTT 5: DISCONNECT 0x95), and for a
 * client that connected with MQTT 5 translates packet by packet. In: properties dropped, topic
 * aliases and enhanced authentication refused (0x94, 0x82), a Clean Start with Session Expiry
 * Interval 0 mapped to a clean 3.1.1 session and anything else to a persistent one, DISCONNECT
 * 0x04 (with will) turned into a dropped connection so that aedes publishes the will. Out: the
 * CONNACK's reason code and properties (maximum packet size; no wildcard, shared or
 * subscription-id subscriptions), per-message reason codes on PUBACK/PUBREC (set by refuse()),
 * SUBACK 0x87 for a refused filter, an UNSUBACK with one code per filter.
 *
 * Would aedes 2 make this unneeded? Not yet (checked December 2026): aedes 2 is 2.0.0-beta.1 on
 * npm, from the `mqttv5` branch (moscajs/aedes PR #1088, tracking issue #821). It accepts MQTT 5
 * clients, with CONNACK reason codes, maximumPacketSize, inbound topic aliases and server
 * DISCONNECT codes, but a refused PUBLISH is only ever acknowledged with 0x87 (Not authorized):
 * no 0x97 (Quota exceeded) or 0x99 (Payload format invalid), which Conflux answers so that a
 * device keeps its session and knows whether to send again. Once a stable aedes 2 lets
 * authorizePublish choose the reason code, the translation can go and only the frame limit
 * remains (docs/protocol-mqtt.md, "MQTT 5").
 */
import type * as net from 'node:net';
import { Duplex } from 'node:stream';
import type { Client } from 'aedes';
import * as mqttPacket from 'mqtt-packet';

/** MQTT 5 reason codes used here and by the broker. */
export const RC = {
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
