/**
 * UltraLight 2.0 as FIWARE's IoT Agent speaks it (telefonicaid/iotagent-ul, docs/usermanual.md
 * and lib/ulParser.js):
 *   measures        t|15|k|abc             key|value pairs
 *   groups          gps|1.2/3.4#t|10        separated by '#'
 *   timestamp       2016-06-13T00:35:30Z|lle|100   an odd number of fields: the first is a timestamp
 *   command         dev@ping|param1=1|param2=2   or the plain form dev@turn|left
 *   command result  dev@ping|Ping ok
 * Parsing follows lib/ulParser.js: one leading '|' of a group is dropped, no field may be empty,
 * a repeated key keeps its first place and its last value, and a measure group holding an '@'
 * after its first character is a command (result) group, as FIWARE reads it. Stricter than FIWARE
 * where it would silently drop input: a second '@', extra fields after a command result.
 *
 * Escaping (ours; FIWARE has none): a backslash makes the next character literal. Only
 * `\|` `\#` `\@` `\=` `\\` exist; a backslash before anything else, or at the end, is an error.
 * The encoder escapes only what would otherwise split the text (| # @ \ in measures, and = too in
 * commands), so a value without those characters is written exactly as FIWARE writes it, and a
 * FIWARE payload without backslashes parses exactly as FIWARE parses it.
 *
 * Names: record n = `<deviceId>/<full attribute name>` (the map may give names with '/', e.g.
 * `room1/temperature`). No escaping: a device id or attribute name outside SenML's name rule is
 * refused with a CodecError naming it; map short keys to valid full names instead.
 *
 * Values: untyped text that looks like a number becomes v, other text vs. A map type of Number
 * (or Integer, Float, Double) demands a number; Boolean demands true/false and gives vb; any other
 * type gives vs. So recordsToUl round-trips exactly when the map types every attribute whose
 * values could be misread (a vs that looks numeric, a vb).
 */
import { CodecError } from '../errors';
import { parseIsoTime } from './time';
import { isValidName, validateResolved, type ResolvedRecord } from '../model/senml';

const FORMAT = 'ultralight';

export interface UlMeasure {
  key: string;
  value: string;
}

export interface UlMeasureGroup {
  kind: 'measures';
  /** the leading timestamp as sent (ISO 8601 expected; checked when converted to records) */
  timestamp?: string;
  measures: UlMeasure[];
}

export interface UlCommand {
  deviceId: string;
  command: string;
  /** the plain form `dev@cmd|value` */
  value?: string;
  /** the parameter form `dev@cmd|k=v|k2=v2` */
  params?: Record<string, string>;
}

export interface UlCommandResult {
  deviceId: string;
  command: string;
  result: string;
}

/** A group of a measure payload: measures, or (as FIWARE reads it) a command result in polling form. */
export type UlGroup = UlMeasureGroup | { kind: 'command'; command: UlCommand };

export type UlAttribute = string | { name: string; type?: string };
/** Short attribute keys to full names, optionally typed: `{ t: 'temperature', s: { name: 'on', type: 'Boolean' } }` */
export type UlMap = Record<string, UlAttribute>;

export interface UlToRecordsOptions {
  /**
   * The device the measures come from. Optional for a payload of command results only: each names
   * its device (a listener scopes one naming another device under the sender, devices/ingest.ts).
   */
  deviceId?: string;
  map?: UlMap;
  /** seconds since the epoch for groups without a timestamp; defaults to the clock */
  now?: number;
}

export interface RecordsToUlOptions {
  deviceId: string;
  map?: UlMap;
}

function fail(reason: string, index?: number, field?: string): never {
  throw new CodecError(FORMAT, reason, index, field);
}

// ---- tokens -----------------------------------------------------------------------------------

const SPECIAL = '|#@=\\';

/**
 * Splits on an unescaped separator, keeping escapes in the parts (they are resolved once, by
 * unescape, when a part is final). Empty parts are kept, as String.prototype.split keeps them.
 */
function split(text: string, sep: string): string[] {
  if (text.indexOf('\\') < 0) return text.split(sep); // the FIWARE fast path
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') {
      if (i + 1 >= text.length || SPECIAL.indexOf(text[i + 1]) < 0) {
        fail(`a backslash must precede one of | # @ = \\ (position ${i})`);
      }
      i++;
    } else if (c === sep) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/** Index of the first unescaped c, or -1. */
function find(text: string, c: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === c) return i;
  }
  return -1;
}

function unescape(part: string): string {
  if (part.indexOf('\\') < 0) return part;
  let out = '';
  for (let i = 0; i < part.length; i++) {
    if (part[i] === '\\') {
      if (i + 1 >= part.length || SPECIAL.indexOf(part[i + 1]) < 0) fail(`a backslash must precede one of | # @ = \\`);
      i++;
    }
    out += part[i];
  }
  return out;
}

const MEASURE_SPECIAL = /[\\|#@]/g;
const COMMAND_SPECIAL = /[\\|#@=]/g;

function escapeMeasure(text: string): string {
  return text.replace(MEASURE_SPECIAL, '\\$&');
}

function escapeCommand(text: string): string {
  return text.replace(COMMAND_SPECIAL, '\\$&');
}

// ---- measures ---------------------------------------------------------------------------------

function parseMeasureGroup(group: string, g: number): UlMeasureGroup {
  let fields = split(group, '|');
  const out: UlMeasureGroup = { kind: 'measures', measures: [] };
  if (fields.length % 2 === 1 && fields.length > 1) {
    // FIWARE: an even number of bars means the first field is the group's timestamp.
    if (fields[0] !== '') out.timestamp = unescape(fields[0]);
    fields = fields.slice(1);
  }
  if (fields.length % 2 !== 0) fail('a group must hold key|value pairs', g);
  const seen = new Map<string, number>();
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === '' || fields[i + 1] === '') fail(`empty ${fields[i] === '' ? 'key' : 'value'} (dangling or doubled '|')`, g);
    const key = unescape(fields[i]);
    const value = unescape(fields[i + 1]);
    const at = seen.get(key);
    if (at === undefined) {
      seen.set(key, out.measures.length);
      out.measures.push({ key, value });
    } else {
      out.measures[at].value = value; // FIWARE collects a group into an object: the last value wins
    }
  }
  return out;
}

/** Parses a measure payload into its groups. */
export function parseUltralight(text: string | Uint8Array): UlGroup[] {
  const payload = textOf(text);
  if (payload === '') fail('empty payload');
  const groups = split(payload, '#');
  const out: UlGroup[] = [];
  for (let g = 0; g < groups.length; g++) {
    let group = groups[g];
    if (group[0] === '|') group = group.slice(1);
    if (group === '') fail("empty group (dangling or doubled '#')", g);
    const at = find(group, '@');
    if (at > 0) out.push({ kind: 'command', command: parseCommandText(group, g) });
    else out.push(parseMeasureGroup(group, g));
  }
  return out;
}

/** Writes measure groups; keys and values are escaped only where they hold | # @ or \. */
export function formatUltralight(groups: UlGroup[]): string {
  if (!Array.isArray(groups) || groups.length === 0) fail('no groups to write');
  const parts: string[] = [];
  for (let g = 0; g < groups.length; g++) {
    const group = groups[g];
    if (group.kind === 'command') {
      parts.push(formatUlCommand(group.command));
      continue;
    }
    if (!Array.isArray(group.measures) || group.measures.length === 0) fail('a group needs at least one measure', g);
    let text = '';
    if (group.timestamp !== undefined) {
      if (group.timestamp === '') fail('empty timestamp', g, 'timestamp');
      text = escapeMeasure(group.timestamp);
    }
    const seen = new Set<string>();
    for (const { key, value } of group.measures) {
      if (typeof key !== 'string' || key === '') fail('empty key', g, 'key');
      if (typeof value !== 'string' || value === '') fail(`empty value for "${key}" (UltraLight cannot carry one)`, g, key);
      if (seen.has(key)) fail(`key "${key}" appears twice in one group`, g, key);
      seen.add(key);
      text += `${text === '' ? '' : '|'}${escapeMeasure(key)}|${escapeMeasure(value)}`;
    }
    parts.push(text);
  }
  return parts.join('#');
}

// ---- commands ---------------------------------------------------------------------------------

function target(head: string, g?: number): { deviceId: string; command: string } {
  const parts = split(head, '@');
  if (parts.length !== 2) fail(parts.length < 2 ? 'expected <device>@<command>' : "more than one '@' before the first '|'", g);
  const deviceId = unescape(parts[0]);
  const command = unescape(parts[1]);
  if (deviceId === '') fail('empty device name', g, 'deviceId');
  if (command === '') fail('empty command name', g, 'command');
  return { deviceId, command };
}

function parseCommandText(text: string, g?: number): UlCommand {
  const fields = split(text, '|');
  const cmd: UlCommand = target(fields[0], g);
  const data = fields.slice(1);
  if (data.length === 1 && find(data[0], '=') < 0) {
    cmd.value = unescape(data[0]);
    return cmd;
  }
  const params: Record<string, string> = {};
  for (const field of data) {
    const kv = split(field, '=');
    if (kv.length !== 2) fail(`parameter "${field}" is not name=value (escape a literal '=' as \\=)`, g, 'params');
    const name = unescape(kv[0]);
    if (name === '') fail('empty parameter name', g, 'params');
    if (name === '__proto__') fail('parameter name __proto__ is refused', g, 'params');
    params[name] = unescape(kv[1]);
  }
  cmd.params = params;
  return cmd;
}

function textOf(input: string | Uint8Array): string {
  if (typeof input === 'string') return input;
  if (input instanceof Uint8Array) return Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');
  fail('expected text');
}

/** Parses a command `dev@cmd|k=v|k2=v2` or `dev@cmd|value` (a '#' inside is literal, as in FIWARE). */
export function parseUlCommand(text: string | Uint8Array): UlCommand {
  const s = textOf(text);
  if (s === '') fail('empty command');
  return parseCommandText(s);
}

/** Writes a command: params as `|k=v` in their order, or the plain `|value` form. */
export function formatUlCommand(cmd: UlCommand): string {
  if (cmd === null || typeof cmd !== 'object') fail('expected a command object');
  if (typeof cmd.deviceId !== 'string' || cmd.deviceId === '') fail('empty device name', undefined, 'deviceId');
  if (typeof cmd.command !== 'string' || cmd.command === '') fail('empty command name', undefined, 'command');
  const head = `${escapeCommand(cmd.deviceId)}@${escapeCommand(cmd.command)}`;
  if (cmd.value !== undefined) {
    if (cmd.params !== undefined) fail('a command has a value or params, not both');
    if (typeof cmd.value !== 'string') fail('expected text', undefined, 'value');
    return `${head}|${escapeCommand(cmd.value)}`;
  }
  let out = head;
  for (const [k, v] of Object.entries(cmd.params ?? {})) {
    if (k === '') fail('empty parameter name', undefined, 'params');
    if (typeof v !== 'string') fail(`parameter "${k}" must be text`, undefined, 'params');
    out += `|${escapeCommand(k)}=${escapeCommand(v)}`;
  }
  return out;
}

/** Parses a command result `dev@cmd|result`. */
export function parseUlCommandResult(text: string | Uint8Array): UlCommandResult {
  const s = textOf(text);
  if (s === '') fail('empty command result');
  const fields = split(s, '|');
  if (fields.length < 2) fail('expected <device>@<command>|<result>', undefined, 'result');
  if (fields.length > 2) fail("more than one '|': escape it as \\| inside a result", undefined, 'result');
  return { ...target(fields[0]), result: unescape(fields[1]) };
}

export function formatUlCommandResult(res: UlCommandResult): string {
  if (res === null || typeof res !== 'object') fail('expected a command result object');
  if (typeof res.result !== 'string') fail('expected text', undefined, 'result');
  if (typeof res.deviceId !== 'string' || res.deviceId === '') fail('empty device name', undefined, 'deviceId');
  if (typeof res.command !== 'string' || res.command === '') fail('empty command name', undefined, 'command');
  return `${escapeCommand(res.deviceId)}@${escapeCommand(res.command)}|${escapeCommand(res.result)}`;
}

// ---- records ----------------------------------------------------------------------------------

const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const NUMBER_TYPES = new Set(['number', 'integer', 'float', 'double']);

/** ISO 8601 in UTC, without a fraction for whole seconds (as in FIWARE's examples). */
export function formatIsoTime(t: number): string {
  if (!(Math.abs(t) < 8.64e12)) fail('time outside the representable range', undefined, 't');
  const iso = new Date(Math.round(t * 1000)).toISOString();
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}

function attribute(map: UlMap | undefined, key: string): { name: string; type?: string } {
  const a = map !== undefined && Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
  if (a === undefined) return { name: key };
  if (typeof a === 'string') return { name: a };
  return a;
}

function formatNumber(v: number): string {
  return Object.is(v, -0) ? '-0' : String(v);
}

function nameFor(deviceId: string, attr: string, g: number, key: string): string {
  const n = `${deviceId}/${attr}`;
  if (!isValidName(n) || attr === '') fail(`"${n}" is not a valid SenML name (A-Z a-z 0-9 then - : . / _); map "${key}" to a valid name`, g, key);
  return n;
}

/** FIWARE's name for an entity's time: an attribute (mapped) to it sets the time of its group's readings. */
const TIME_INSTANT = 'TimeInstant';

function checkDeviceId(deviceId: unknown): void {
  if (typeof deviceId !== 'string' || deviceId.includes('/') || !isValidName(deviceId)) {
    fail(`device id "${String(deviceId)}" is not a valid SenML name part`, undefined, 'deviceId');
  }
}

/** The group's time: its leading timestamp, or the value of its TimeInstant attribute, or `now`. */
function groupTime(group: UlMeasureGroup, map: UlMap | undefined, now: number, g: number): number {
  let text = group.timestamp;
  let field = 'timestamp';
  for (const { key, value } of group.measures) {
    if (attribute(map, key).name !== TIME_INSTANT) continue;
    if (text !== undefined) fail(`the group has a timestamp and a ${TIME_INSTANT} attribute "${key}": send one of them`, g, key);
    text = value;
    field = key;
  }
  if (text === undefined) return now;
  const t = parseIsoTime(text);
  if (Number.isNaN(t)) fail(`"${text}" is not an ISO 8601 timestamp`, g, field);
  return t;
}

/**
 * Records of a measure payload. A group's readings take its leading timestamp or, as FIWARE's agent
 * does, the value of an attribute the map names TimeInstant (which is no reading itself), else
 * `now`. A command result group (FIWARE's polling form) becomes `<device>/<command>_info` as vs,
 * as FIWARE's <command>_info; it names its device, so it needs no deviceId.
 */
export function ulToRecords(text: string | Uint8Array, options: UlToRecordsOptions): ResolvedRecord[] {
  const { deviceId, map } = options;
  if (deviceId !== undefined && deviceId !== '') checkDeviceId(deviceId);
  const now = options.now ?? Date.now() / 1000;
  const out: ResolvedRecord[] = [];
  const groups = parseUltralight(text);
  for (let g = 0; g < groups.length; g++) {
    const group = groups[g];
    if (group.kind === 'command') {
      const c = group.command;
      const vs =
        c.value ??
        Object.entries(c.params ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join('|');
      out.push({ n: nameFor(c.deviceId, `${c.command}_info`, g, c.command), t: now, vs });
      continue;
    }
    if (!deviceId) fail("no device id (msg.device.id or the node's Device ID): measures do not name their device, only a command result does", g, 'deviceId');
    const t = groupTime(group, map, now, g);
    const first = out.length;
    for (const { key, value } of group.measures) {
      const attr = attribute(map, key);
      if (attr.name === TIME_INSTANT) continue;
      const r: ResolvedRecord = { n: nameFor(deviceId, attr.name, g, key), t };
      const type = attr.type?.toLowerCase();
      if (type !== undefined && NUMBER_TYPES.has(type)) {
        const v = Number(value);
        if (!NUMBER_RE.test(value) || !Number.isFinite(v)) fail(`"${value}" is not a number (type ${attr.type})`, g, key);
        r.v = v;
      } else if (type === 'boolean') {
        if (value !== 'true' && value !== 'false') fail(`"${value}" is not true or false (type ${attr.type})`, g, key);
        r.vb = value === 'true';
      } else if (type === undefined && NUMBER_RE.test(value) && Number.isFinite(Number(value))) {
        r.v = Number(value);
      } else {
        r.vs = value;
      }
      out.push(r);
    }
    if (out.length === first) fail(`the group holds only its ${TIME_INSTANT}: no reading`, g);
  }
  // A name or text past the canonical limits (a 2,000-character key) is refused here, not by a tier later.
  return validateResolved(out, FORMAT);
}

/**
 * Records of one device as a measure payload: one group per distinct time (in order of first
 * appearance), each with its ISO 8601 timestamp; full names are mapped back to their short keys.
 */
export function recordsToUl(records: ResolvedRecord[], options: RecordsToUlOptions): string {
  validateResolved(records, FORMAT);
  if (records.length === 0) fail('no records to write');
  const prefix = `${options.deviceId}/`;
  const keys = new Map<string, { key: string; type?: string }>();
  for (const key of Object.keys(options.map ?? {})) {
    const a = attribute(options.map, key);
    keys.set(a.name, { key, type: a.type?.toLowerCase() });
  }
  const groups = new Map<number, UlMeasureGroup>();
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (!r.n.startsWith(prefix) || r.n.length === prefix.length) fail(`not a record of device "${options.deviceId}"`, i, 'n');
    const name = r.n.slice(prefix.length);
    const mapped = keys.get(name);
    const key = mapped?.key ?? name;
    let value: string;
    if (r.v !== undefined) value = formatNumber(r.v);
    else if (r.vb !== undefined) value = r.vb ? 'true' : 'false';
    else if (r.vs !== undefined) value = r.vs;
    else fail(r.vd !== undefined ? 'UltraLight has no binary values' : 'UltraLight has no sums', i, r.vd !== undefined ? 'vd' : 's');
    if (value === '') fail('UltraLight cannot carry an empty value', i, 'vs');
    if (mapped?.type !== undefined && NUMBER_TYPES.has(mapped.type) && r.v === undefined) fail(`"${key}" is typed ${mapped.type}: expected v`, i);
    if (mapped?.type === 'boolean' && r.vb === undefined) fail(`"${key}" is typed Boolean: expected vb`, i);
    let group = groups.get(r.t);
    if (group === undefined) {
      group = { kind: 'measures', timestamp: formatIsoTime(r.t), measures: [] };
      groups.set(r.t, group);
    }
    if (group.measures.some((m) => m.key === key)) fail(`"${key}" appears twice at the same time`, i, 'n');
    group.measures.push({ key, value });
  }
  return formatUltralight([...groups.values()]);
}
