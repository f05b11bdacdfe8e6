/**
 * The reference device client, MQTT part (docs/protocol-mqtt.md): connects as a device (its
 * serial and its own key), publishes readings in UltraLight, JSON or SenML on the right topic,
 * and subscribes to its command topic, answering commands on cmdexe. MQTT 5 or 3.1.1, plain or
 * TLS, to Conflux's embedded broker (or any broker with the same topics).
 *
 * From the command line, after `npm run build`:
 *
 *   node dist/tools/device-client/mqtt.js --url mqtt://127.0.0.1:1883 --serial SN-1 --key <key> \
 *     [--tenant default] [--format ultralight|json|senml+json|senml+cbor] [--mqtt 5|4] [--qos 1] \
 *     [--listen] 't|21.5|h|40'
 *
 * publishes the reading (text as it is; for senml+cbor, SenML JSON text that is re-encoded) and
 * with --listen stays connected, printing commands and answering each with "OK".
 */
import { Encoder } from 'cbor-x';
import * as mqtt from 'mqtt';

export type MqttPayloadFormat = 'ultralight' | 'json' | 'senml+json' | 'senml+cbor' | 'senml+xml';

/** The topic prefix of each payload format (docs/protocol-mqtt.md). */
const PREFIX: Record<MqttPayloadFormat, 'ul' | 'json' | 'senml'> = {
  ultralight: 'ul',
  json: 'json',
  'senml+json': 'senml',
  'senml+cbor': 'senml',
  'senml+xml': 'senml',
};

export interface MqttDeviceOptions {
  /** mqtt://host:1883 or mqtts://host:8883. */
  url: string;
  /** The device's serial number: its MQTT username. */
  serial: string;
  /** The device's own key: its MQTT password. */
  key: string;
  /** Its tenant: the apikey level of its topics. Default 'default'. */
  tenant?: string;
  /** 5 (default) or 4 (3.1.1). */
  protocolVersion?: 4 | 5;
  /** Topics with the leading slash, as FIWARE writes them (default true). */
  leadingSlash?: boolean;
  /** TLS: the CA that signed the server's certificate (PEM), and a client certificate if the broker asks for one. */
  ca?: string | Buffer;
  cert?: string | Buffer;
  keyPem?: string | Buffer;
  /** Default 1000 ms; 0: no automatic reconnection. */
  reconnectPeriod?: number;
  /** Default true. */
  clean?: boolean;
  connectTimeout?: number;
}

/** A command as the device receives it. */
export interface ReceivedCommand {
  name: string;
  /** UltraLight `dev@cmd|value`: the value; JSON: the parameters as sent. */
  value?: unknown;
  /** UltraLight `dev@cmd|k=v|k2=v2`. */
  params?: Record<string, string>;
  topic: string;
  raw: Buffer;
}

/** One SenML record as a device may write it (base fields allowed). */
export type SenmlRecord = Record<string, unknown>;

const SENML_LABELS: Record<string, number> = { bs: -6, bv: -5, bu: -4, bt: -3, bn: -2, bver: -1, n: 0, u: 1, v: 2, vs: 3, vb: 4, s: 5, t: 6, ut: 7, vd: 8 };
const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, variableMapSize: true, tagUint8Array: false } as ConstructorParameters<typeof Encoder>[0]);

/** SenML CBOR (RFC 8428 section 6): integer labels, vd as a byte string. */
export function senmlCbor(records: SenmlRecord[]): Buffer {
  const maps = records.map((r) => {
    const m = new Map<number | string, unknown>();
    for (const [k, v] of Object.entries(r)) {
      const label = SENML_LABELS[k];
      m.set(label ?? k, k === 'vd' && typeof v === 'string' ? Buffer.from(v, 'base64url') : v);
    }
    return m;
  });
  return Buffer.from(cbor.encode(maps));
}

/** A topic level: `/ + # %` and a leading `$` percent-encoded (docs/protocol-mqtt.md). */
function level(value: string): string {
  return value.replace(/[%/+#]|^\$/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function escapeUl(text: string): string {
  return text.replace(/[\\|#@=]/g, (c) => `\\${c}`);
}

/** An UltraLight measure payload from attribute values: `k|v|k2|v2`. */
export function ultralight(values: Record<string, string | number | boolean>): string {
  return Object.entries(values)
    .map(([k, v]) => `${escapeUl(k)}|${escapeUl(String(v))}`)
    .join('|');
}

/** The payload bytes of a reading: text and bytes as they are, values encoded for the format. */
export function encodeReading(format: MqttPayloadFormat, body: string | Uint8Array | SenmlRecord[] | Record<string, unknown>): Buffer {
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return Buffer.from(body);
  switch (format) {
    case 'ultralight':
      return Buffer.from(ultralight(body as Record<string, string | number | boolean>));
    case 'senml+cbor':
      return senmlCbor(body as SenmlRecord[]);
    case 'senml+xml':
      throw new Error('give SenML XML as text');
    default:
      return Buffer.from(JSON.stringify(body));
  }
}

function unescapeUl(text: string): string {
  return text.replace(/\\(.)/g, '$1');
}

/** Splits on unescaped '|'. */
function ulFields(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      cur += c + text[++i];
    } else if (c === '|') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Reads a command as Conflux sends it: UltraLight `<serial>@<cmd>|…` or JSON `{"<cmd>": params}`. */
export function parseCommand(topic: string, raw: Buffer): ReceivedCommand {
  const text = raw.toString('utf8');
  if (text.trimStart().startsWith('{')) {
    const obj = JSON.parse(text) as Record<string, unknown>;
    const [name, value] = Object.entries(obj)[0] ?? ['', undefined];
    return { name, value, topic, raw };
  }
  const [head, ...rest] = ulFields(text);
  const at = head.indexOf('@');
  const name = unescapeUl(head.slice(at + 1));
  if (rest.length === 1 && !/(^|[^\\])=/.test(rest[0])) return { name, value: unescapeUl(rest[0]), topic, raw };
  const params: Record<string, string> = {};
  for (const field of rest) {
    const eq = field.search(/(^|[^\\])=/);
    const split = eq < 0 ? -1 : field[eq] === '=' ? eq : eq + 1;
    if (split < 0) params[unescapeUl(field)] = '';
    else params[unescapeUl(field.slice(0, split))] = unescapeUl(field.slice(split + 1));
  }
  return { name, params, topic, raw };
}

export class MqttDevice {
  private constructor(
    readonly client: mqtt.MqttClient,
    private readonly options: MqttDeviceOptions,
  ) {}

  /** Connects as the device; rejects with the broker's reason (e.g. bad username or password). */
  static async connect(options: MqttDeviceOptions): Promise<MqttDevice> {
    const client = await mqtt.connectAsync(options.url, {
      protocolVersion: options.protocolVersion ?? 5,
      username: options.serial,
      password: options.key,
      clientId: `${options.serial}-${Math.random().toString(16).slice(2, 10)}`,
      clean: options.clean ?? true,
      reconnectPeriod: options.reconnectPeriod ?? 1_000,
      connectTimeout: options.connectTimeout ?? 10_000,
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.cert ? { cert: options.cert } : {}),
      ...(options.keyPem ? { key: options.keyPem } : {}),
    });
    return new MqttDevice(client, options);
  }

  get tenant(): string {
    return this.options.tenant ?? 'default';
  }

  /** The device's topic of that kind, for a payload format's prefix ('' for FIWARE's unprefixed form). */
  topic(kind: 'attrs' | 'cmd' | 'cmdexe', prefix: 'ul' | 'json' | 'senml' | '' = 'ul'): string {
    const levels = [...(prefix ? [prefix] : []), level(this.tenant), level(this.options.serial), kind];
    return `${this.options.leadingSlash === false ? '' : '/'}${levels.join('/')}`;
  }

  /** Publishes a reading on the attrs topic of its format; resolves when the broker acknowledged it (QoS 1, the default). */
  async publish(
    format: MqttPayloadFormat,
    body: string | Uint8Array | SenmlRecord[] | Record<string, unknown>,
    options: { qos?: 0 | 1 | 2; topic?: string } = {},
  ): Promise<void> {
    await this.client.publishAsync(options.topic ?? this.topic('attrs', PREFIX[format]), encodeReading(format, body), { qos: options.qos ?? 1 });
  }

  /** Publishes one attribute's value on attrs/<name>. */
  async publishAttribute(name: string, value: string | number | boolean, options: { qos?: 0 | 1 | 2; prefix?: 'ul' | 'json' | '' } = {}): Promise<void> {
    const text = options.prefix === 'json' ? JSON.stringify(value) : String(value);
    await this.client.publishAsync(`${this.topic('attrs', options.prefix ?? 'ul')}/${name}`, text, { qos: options.qos ?? 1 });
  }

  /**
   * Subscribes to its command topic (UltraLight by default, JSON with prefix 'json') and calls
   * the handler for each command; a returned result is published on cmdexe in the same syntax.
   */
  async onCommand(handler: (cmd: ReceivedCommand) => unknown, prefix: 'ul' | 'json' | '' = 'ul'): Promise<void> {
    const topic = this.topic('cmd', prefix);
    this.client.on('message', (t, raw) => {
      if (t !== topic) return;
      let cmd: ReceivedCommand;
      try {
        cmd = parseCommand(t, raw);
      } catch {
        return;
      }
      Promise.resolve(handler(cmd)).then(
        (result) => (result === undefined ? undefined : this.commandResult(cmd.name, result, prefix === 'json' ? 'json' : 'ul')),
        () => undefined,
      );
    });
    const granted = await this.client.subscribeAsync(topic, { qos: 1 });
    if (granted.some((g) => g.qos === 128)) throw new Error(`the broker refused the subscription to ${topic}`);
  }

  /**
   * Asks for single-use UDP tokens (docs/protocol-udp.md): publishes the count on its tokens
   * topic and waits for the `udptokens` command on its cmd topic (subscribing to it if needed).
   */
  async requestUdpTokens(count = 1, timeoutMs = 5_000): Promise<{ tokens: Buffer[]; expiresAt: Date }> {
    const topic = this.topic('cmd', 'ul');
    const granted = new Promise<{ tokens: Buffer[]; expiresAt: Date }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.client.off('message', onMessage);
        reject(new Error(`no udptokens command within ${timeoutMs} ms`));
      }, timeoutMs);
      const onMessage = (t: string, raw: Buffer) => {
        if (t !== topic) return;
        const cmd = parseCommand(t, raw);
        if (cmd.name !== 'udptokens' || !cmd.params) return;
        clearTimeout(timer);
        this.client.off('message', onMessage);
        resolve({
          tokens: (cmd.params.tokens ?? '')
            .split(',')
            .filter(Boolean)
            .map((h) => Buffer.from(h, 'hex')),
          expiresAt: new Date(cmd.params.expiresAt),
        });
      };
      this.client.on('message', onMessage);
    });
    const sub = await this.client.subscribeAsync(topic, { qos: 1 });
    if (sub.some((g) => g.qos === 128)) throw new Error(`the broker refused the subscription to ${topic}`);
    await this.client.publishAsync(
      `${this.options.leadingSlash === false ? '' : '/'}${level(this.tenant)}/${level(this.options.serial)}/tokens`,
      String(count),
      { qos: 1 },
    );
    return granted;
  }

  /** Reports a command's result on cmdexe: UltraLight `<serial>@<cmd>|<result>` or JSON `{"<cmd>": result}`. */
  async commandResult(name: string, result: unknown, syntax: 'ul' | 'json' = 'ul'): Promise<void> {
    const body = syntax === 'json' ? JSON.stringify({ [name]: result }) : `${escapeUl(this.options.serial)}@${escapeUl(name)}|${escapeUl(String(result))}`;
    await this.client.publishAsync(this.topic('cmdexe', syntax), body, { qos: 1 });
  }

  async end(): Promise<void> {
    await this.client.endAsync();
  }
}

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(args: string[]): Promise<void> {
  const url = argValue(args, 'url') ?? 'mqtt://127.0.0.1:1883';
  const serial = argValue(args, 'serial');
  const key = argValue(args, 'key');
  if (!serial || !key)
    throw new Error(
      'usage: mqtt.js --url mqtt://host:1883 --serial <serial> --key <key> [--tenant t] [--format f] [--mqtt 5|4] [--qos 1] [--listen] [payload]',
    );
  const format = (argValue(args, 'format') ?? 'ultralight') as MqttPayloadFormat;
  const flags = new Set(['url', 'serial', 'key', 'tenant', 'format', 'mqtt', 'qos']);
  const positional = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--') && flags.has(args[i - 1].slice(2))));
  const device = await MqttDevice.connect({
    url,
    serial,
    key,
    tenant: argValue(args, 'tenant') ?? 'default',
    protocolVersion: argValue(args, 'mqtt') === '4' ? 4 : 5,
    reconnectPeriod: 0,
  });
  const payload = positional[0];
  if (payload !== undefined) {
    const body = format === 'senml+cbor' ? (JSON.parse(payload) as SenmlRecord[]) : payload;
    await device.publish(format, body, { qos: Number(argValue(args, 'qos') ?? 1) as 0 | 1 | 2 });
    console.log(`published on ${device.topic('attrs', PREFIX[format])}`);
  }
  if (args.includes('--listen')) {
    await device.onCommand(
      (cmd) => {
        console.log(`command ${cmd.name}: ${cmd.raw.toString()}`);
        return 'OK';
      },
      format === 'json' ? 'json' : 'ul',
    );
    console.log(`listening on ${device.topic('cmd', format === 'json' ? 'json' : 'ul')} (Ctrl-C to stop)`);
    return;
  }
  await device.end();
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: Error) => {
    console.error(err.message);
    process.exit(1);
  });
}
