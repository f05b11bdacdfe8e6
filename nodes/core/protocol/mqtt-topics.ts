/**
 * The MQTT binding for devices (docs/protocol-mqtt.md): the topics FIWARE's IoT Agents use
 * (telefonicaid/iotagent-ul and iotagent-json, "MQTT binding"), one more for SenML, and the
 * command payloads that travel on them. Framework-free.
 *
 *   [/]ul/<apikey>/<deviceId>/attrs           UltraLight 2.0 measures            device → Conflux
 *   [/]json/<apikey>/<deviceId>/attrs         JSON object of attribute values    device → Conflux
 *   [/]senml/<apikey>/<deviceId>/attrs        SenML JSON, CBOR or XML (detected) device → Conflux
 *   [/]<apikey>/<deviceId>/attrs              FIWARE's unprefixed form: a JSON object (first
 *                                             non-blank byte '{') or else UltraLight, as both of
 *                                             FIWARE's agents publish on it
 *   [/][ul|json/]<apikey>/<deviceId>/attrs/<attr>   one attribute's plain value  device → Conflux
 *   [/][ul|json|senml/]<apikey>/<deviceId>/cmd      commands                     Conflux → device
 *   [/][ul|json|senml/]<apikey>/<deviceId>/cmdexe   command results              device → Conflux
 *   [/]<apikey>/<deviceId>/tokens             a request for n UDP tokens (ours), device → Conflux;
 *                                             granted as the command `udptokens` on cmd
 *
 * Every topic exists with and without the leading slash (MQTT treats `/a/b` and `a/b` as two
 * topics; FIWARE documents the leading slash). The apikey, FIWARE's key of a device group,
 * names the tenant here: apikey = the tenant id (`default` for the default tenant). It is not a
 * secret — every device authenticates with its own key — only the tenant the device belongs to,
 * checked against the directory. A level holding `/`, `+`, `#`, `%` or NUL, or starting with `$`
 * (topics starting with `$` are the broker's), is percent-encoded (`%2F`, `%2B`, `%23`, `%25`,
 * `%00`, `%24`); other characters are as they are. A tenant named `ul`,
 * `json` or `senml` must use the prefixed topics: a four-level topic starting with one of those
 * words is read as prefixed.
 *
 * Commands (FIWARE's syntax): UltraLight `<deviceId>@<command>|<value>` or
 * `<deviceId>@<command>|k=v|k2=v2`, answered on cmdexe by `<deviceId>@<command>|<result>`;
 * JSON `{"<command>": <params>}`, answered by `{"<command>": <result>}`. A result becomes the
 * record `<deviceId>/<command>_info` (vs), as FIWARE's `<command>_info` attribute.
 */
import { formatUlCommand, parseUlCommandResult } from '../codecs/ultralight';
import { utf8Text } from '../codecs/senml-common';
import { decodeDevicePayload, type Decoded, type DeviceFormat } from '../devices/ingest';
import { CodecError } from '../errors';
import { isValidName, type ResolvedRecord } from '../model/senml';

export type TopicPrefix = '' | 'ul' | 'json' | 'senml';
/**
 * attrs: a measure payload; attr: one attribute's value; cmd: commands to the device; cmdexe:
 * their results; tokens: a request for single-use UDP tokens (ours, embedded broker only).
 */
export type TopicKind = 'attrs' | 'attr' | 'cmd' | 'cmdexe' | 'tokens';

export const TOPIC_PREFIXES: readonly TopicPrefix[] = ['', 'ul', 'json', 'senml'];

export interface DeviceTopic {
  /** '' for FIWARE's unprefixed form. */
  prefix: TopicPrefix;
  leadingSlash: boolean;
  /** The apikey level, decoded: the tenant id. */
  tenant: string;
  /** The device id level, decoded: the device's serial number. */
  deviceId: string;
  kind: TopicKind;
  /** kind 'attr': the attribute's name. */
  attribute?: string;
}

const PREFIXED = new Set<string>(['ul', 'json', 'senml']);
const KINDS = new Set<string>(['attrs', 'cmd', 'cmdexe', 'tokens']);

/** One topic level for a value: `/ + # % NUL` and a leading `$` percent-encoded, the rest as it is. */
export function encodeLevel(value: string): string {
  return value.replace(/[%/+#\u0000]|^\$/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** The value of a topic level; undefined for a '%' not followed by two hex digits, or a wildcard. */
export function decodeLevel(level: string): string | undefined {
  if (level.includes('+') || level.includes('#')) return undefined;
  if (!level.includes('%')) return level;
  let bad = false;
  const out = level.replace(/%([0-9A-Fa-f]{2})?/g, (_m, hex: string | undefined) => {
    if (hex === undefined) {
      bad = true;
      return '';
    }
    return String.fromCharCode(parseInt(hex, 16));
  });
  return bad ? undefined : out;
}

/** Reads a device topic; undefined when the topic is none of the binding's. */
export function parseDeviceTopic(topic: string): DeviceTopic | undefined {
  if (typeof topic !== 'string' || topic === '' || topic.length > 1024 || topic.startsWith('$')) return undefined; // $: the broker's own
  let levels = topic.split('/');
  const leadingSlash = levels[0] === '';
  if (leadingSlash) levels = levels.slice(1);
  let prefix: TopicPrefix = '';
  let rest = levels;
  // Prefixed: <p>/<k>/<d>/<kind> or <p>/<k>/<d>/attrs/<attr>; unprefixed: <k>/<d>/<kind> or <k>/<d>/attrs/<attr>.
  if (PREFIXED.has(levels[0]) && ((levels.length === 4 && KINDS.has(levels[3])) || (levels.length === 5 && levels[3] === 'attrs'))) {
    prefix = levels[0] as TopicPrefix;
    rest = levels.slice(1);
  }
  let kind: TopicKind;
  let attribute: string | undefined;
  if (rest.length === 3 && KINDS.has(rest[2])) kind = rest[2] as TopicKind;
  else if (rest.length === 4 && rest[2] === 'attrs') {
    kind = 'attr';
    attribute = decodeLevel(rest[3]);
    if (attribute === undefined || attribute === '') return undefined;
    if (prefix === 'senml') return undefined; // SenML names its values inside the payload
  } else return undefined;
  const tenant = decodeLevel(rest[0]);
  const deviceId = decodeLevel(rest[1]);
  if (tenant === undefined || tenant === '' || deviceId === undefined || deviceId === '') return undefined;
  return { prefix, leadingSlash, tenant, deviceId, kind, ...(attribute === undefined ? {} : { attribute }) };
}

export interface TopicParts {
  tenant: string;
  deviceId: string;
  kind: TopicKind;
  attribute?: string;
  /** Default '' (FIWARE's unprefixed form). */
  prefix?: TopicPrefix;
  /** Default true, as FIWARE writes them. */
  leadingSlash?: boolean;
}

/** Builds a device topic; the inverse of parseDeviceTopic. */
export function deviceTopic(parts: TopicParts): string {
  const prefix = parts.prefix ?? '';
  const levels = [...(prefix === '' ? [] : [prefix]), encodeLevel(parts.tenant), encodeLevel(parts.deviceId)];
  if (parts.kind === 'attr') {
    if (!parts.attribute) throw new Error('an attr topic needs the attribute name');
    levels.push('attrs', encodeLevel(parts.attribute));
  } else levels.push(parts.kind);
  return `${parts.leadingSlash === false ? '' : '/'}${levels.join('/')}`;
}

/**
 * Filters matching every device → Conflux topic of the binding (attrs, attrs/<attr>, cmdexe, with
 * and without prefix and leading slash): what client mode subscribes to by default.
 */
export const DEVICE_PUBLISH_FILTERS: readonly string[] = [
  '+/+/attrs',
  '+/+/attrs/+',
  '+/+/cmdexe',
  '+/+/+/attrs',
  '+/+/+/attrs/+',
  '+/+/+/cmdexe',
  '+/+/+/+/attrs',
  '+/+/+/+/attrs/+',
  '+/+/+/+/cmdexe',
];

/** `$share/<group>/<filter>` (MQTT 5 shared subscription; also understood by several 3.1.1 brokers). */
export function sharedFilter(group: string, filter: string): string {
  if (group === '' || /[/+#]/.test(group)) throw new Error(`shared subscription group "${group}" must be a non-empty name without / + #`);
  return `$share/${group}/${filter}`;
}

// ─── Payloads ─────────────────────────────────────────────────────────────────────────────

/** A command result a device reported on cmdexe. */
export interface CommandResult {
  name: string;
  result: string;
}

export interface DecodedPublish extends Decoded {
  /** cmdexe: the results, in payload order. */
  commands?: CommandResult[];
}

function isJsonObjectText(payload: Uint8Array): boolean {
  for (const b of payload) {
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0xef || b === 0xbb || b === 0xbf) continue; // blanks, a UTF-8 BOM
    return b === 0x7b; // '{'
  }
  return false;
}

/** The payload format of a measure topic (attrs): by prefix; unprefixed, by its first byte. */
export function attrsFormat(topic: DeviceTopic, payload: Uint8Array): DeviceFormat {
  switch (topic.prefix) {
    case 'ul':
      return 'ultralight';
    case 'json':
      return 'attributes';
    case 'senml':
      return 'senml';
    default:
      return isJsonObjectText(payload) ? 'attributes' : 'ultralight';
  }
}

const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** One attribute's value as sent on attrs/<attr>: json prefix, a JSON value (else text); otherwise UltraLight's untyped text. */
function singleValue(prefix: TopicPrefix, payload: Uint8Array): string | number | boolean {
  const text = utf8Text(payload).trim();
  if (text === '') throw new CodecError('attributes', 'empty value');
  if (prefix === 'json') {
    try {
      const v: unknown = JSON.parse(text);
      if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') return v;
      throw new CodecError('attributes', 'a single attribute value must be a number, a boolean or a string');
    } catch (err) {
      if (err instanceof CodecError) throw err;
      return text; // not JSON: the text itself
    }
  }
  return NUMBER_RE.test(text) && Number.isFinite(Number(text)) ? Number(text) : text;
}

function resultText(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Reads a command result payload: UltraLight `<deviceId>@<command>|<result>` or JSON `{"<command>": <result>}`. */
export function decodeCommandResults(prefix: TopicPrefix, payload: Uint8Array, serial: string): CommandResult[] {
  const json = prefix === 'json' || prefix === 'senml' || (prefix === '' && isJsonObjectText(payload));
  if (!json) {
    const r = parseUlCommandResult(payload);
    if (r.deviceId !== serial)
      throw new CodecError('ultralight', `the result names device "${r.deviceId}", not the device that sent it`, undefined, 'deviceId');
    return [{ name: r.command, result: r.result }];
  }
  let value: unknown;
  try {
    value = JSON.parse(utf8Text(payload));
  } catch (err) {
    throw new CodecError('json', `not JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CodecError('json', 'expected a JSON object {"<command>": <result>}');
  const out = Object.entries(value as Record<string, unknown>).map(([name, v]) => ({ name, result: resultText(v) }));
  if (out.length === 0) throw new CodecError('json', 'no command result');
  return out;
}

/**
 * Decodes what a device published on one of its topics (attrs, attr or cmdexe) into records
 * under its own serial; throws CodecError with the reason. `now` in seconds.
 */
export function decodeDevicePublish(topic: DeviceTopic, payload: Uint8Array, serial: string, now: number): DecodedPublish {
  let decoded: DecodedPublish;
  switch (topic.kind) {
    case 'attrs':
      decoded = decodeDevicePayload(attrsFormat(topic, payload), payload, serial, now);
      break;
    case 'attr':
      decoded = decodeDevicePayload('attributes', { [topic.attribute!]: singleValue(topic.prefix, payload) }, serial, now);
      break;
    case 'cmdexe': {
      const commands = decodeCommandResults(topic.prefix, payload, serial);
      const records: ResolvedRecord[] = commands.map((c) => {
        const n = `${serial}/${c.name}_info`;
        if (!isValidName(n)) throw new CodecError('command', `"${c.name}" is not a valid name part`, undefined, c.name);
        return { n, t: now, vs: c.result };
      });
      decoded = { records, format: topic.prefix === 'ul' || (topic.prefix === '' && !isJsonObjectText(payload)) ? 'ultralight' : 'json', commands };
      break;
    }
    default:
      throw new CodecError('mqtt', `a device does not publish readings on its ${topic.kind} topic`);
  }
  // Defence in depth: nothing may be named under another device (an UltraLight command-result
  // group names its own device id inside the payload).
  const mine = `${serial}/`;
  for (const r of decoded.records) {
    if (!r.n.startsWith(mine)) throw new CodecError(decoded.format, `record "${r.n}" is not under this device's name "${serial}/"`);
  }
  return decoded;
}

/** How a command is written on a cmd topic: UltraLight for ul (and by default), JSON for json and senml. */
export type CommandFormat = 'ultralight' | 'json';

export interface Command {
  name: string;
  /** UltraLight: a string (the plain form), an object of strings (k=v parameters), or nothing; JSON: any value. */
  params?: unknown;
}

/** The payload of a command to a device, in FIWARE's syntax. */
export function encodeCommand(format: CommandFormat, serial: string, command: Command): Buffer {
  if (typeof command?.name !== 'string' || command.name === '') throw new Error('a command needs a name');
  if (format === 'json') return Buffer.from(JSON.stringify({ [command.name]: command.params ?? '' }));
  const p = command.params;
  if (p === undefined || p === null) return Buffer.from(formatUlCommand({ deviceId: serial, command: command.name }));
  if (typeof p === 'string' || typeof p === 'number' || typeof p === 'boolean')
    return Buffer.from(formatUlCommand({ deviceId: serial, command: command.name, value: String(p) }));
  if (Buffer.isBuffer(p) || p instanceof Uint8Array)
    return Buffer.from(formatUlCommand({ deviceId: serial, command: command.name, value: Buffer.from(p).toString('base64') }));
  if (typeof p === 'object' && !Array.isArray(p)) {
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(p as Record<string, unknown>)) params[k] = typeof v === 'string' ? v : JSON.stringify(v);
    return Buffer.from(formatUlCommand({ deviceId: serial, command: command.name, params }));
  }
  throw new Error('UltraLight command parameters must be text, a number, a boolean or an object of values');
}

/** The count of a UDP tokens request: decimal text from 1 to 100, empty meaning 1; undefined otherwise. */
export function tokenCount(payload: Uint8Array): number | undefined {
  const text = utf8Text(payload).trim();
  if (text === '') return 1;
  if (!/^\d{1,3}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 100 ? n : undefined;
}

/** The command format of a cmd topic: by prefix; unprefixed, the format the device last sent measures in (UltraLight by default). */
export function commandFormat(topic: Pick<DeviceTopic, 'prefix'>, lastFormat?: string): CommandFormat {
  if (topic.prefix === 'ul') return 'ultralight';
  if (topic.prefix === 'json' || topic.prefix === 'senml') return 'json';
  return lastFormat === undefined || lastFormat === 'ultralight' ? 'ultralight' : 'json';
}
