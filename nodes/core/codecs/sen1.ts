/**
 * Sen1Message: the XML format the federation proxies exchange over XMPP (seed 003), namespace
 * http://xmpp.rocks. One message carries one datum (name, optional metaname) of one dt_* type and
 * 1..n timestamped values.
 *
 * Mapping to the canonical records: n = name, or name/metaname when a metaname is present;
 * dt_integer and dt_numeric give v, dt_boolean gives vb, every other type gives vs holding the text
 * as sent; u = unite; t from the timestamp (`yyyy-mm-dd hh:mm:ss`, UTC; up to 3 fractional digits
 * are accepted and written only when the time is not whole seconds). What records cannot carry
 * (username, metavalue, type, applicationSrc/Dst, metaname) is returned as `meta`.
 *
 * Names: no escaping. A name (or metaname) whose characters fall outside SenML's name rule
 * (A-Z a-z 0-9 first, then - : . / _) is refused with a CodecError naming the field: a rename
 * belongs in the flow (or a JSON map), not hidden in an escape only Conflux would understand.
 *
 * Whitespace around element text is not kept (the XML entry point trims values).
 * Speed: one parseXml call, then plain loops; values are validated and converted in one pass.
 */
import { CodecError } from '../errors';
import { utcMs } from './time';
import { isValidName, validateResolved, type ResolvedRecord } from '../model/senml';
import { escapeXml, parseXml, type XmlNode } from './xml';

export const SEN1_NAMESPACE = 'http://xmpp.rocks';
const FORMAT = 'sen1';

export const SEN1_TYPES = ['dt_string', 'dt_integer', 'dt_numeric', 'dt_date', 'dt_datetime', 'dt_duration', 'dt_time', 'dt_boolean'] as const;
export type Sen1Type = (typeof SEN1_TYPES)[number];

export interface Sen1Data {
  /** the value as text, valid for the message's type */
  value: string;
  /** `yyyy-mm-dd hh:mm:ss`, UTC */
  timestamp: string;
}

export interface Sen1Message {
  username: string;
  name: string;
  metaname?: string;
  metavalue?: string;
  unite?: string;
  type: Sen1Type;
  applicationSrc?: string;
  applicationDst?: string;
  datas: Sen1Data[];
}

/** Everything of a message but its values: what records cannot carry. */
export type Sen1Meta = Omit<Sen1Message, 'datas'>;

/** What encoding needs besides records; name, unite and type come from the records unless given. */
export interface Sen1EncodeMeta {
  username: string;
  applicationSrc?: string;
  applicationDst?: string;
  /** when a record name ends in `/<metaname>`, that last part becomes the metaname */
  metaname?: string;
  metavalue?: string;
  /** for v records: dt_integer or dt_numeric (default); for vs records: a text type (default dt_string) */
  type?: Sen1Type;
}

const TYPE_SET: ReadonlySet<string> = new Set(SEN1_TYPES);
const INTEGER_RE = /^[+-]?\d+$/;
const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_RE = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$/;
const TIME_RE = /^(\d{2}):(\d{2}):(\d{2})$/;
// ISO 8601 duration: at least one component, T only before a time component.
const DURATION_RE =
  /^P(?!$)(?:\d+(?:[.,]\d+)?Y)?(?:\d+(?:[.,]\d+)?M)?(?:\d+(?:[.,]\d+)?W)?(?:\d+(?:[.,]\d+)?D)?(?:T(?=\d)(?:\d+(?:[.,]\d+)?H)?(?:\d+(?:[.,]\d+)?M)?(?:\d+(?:[.,]\d+)?S)?)?$/;
// Characters XML 1.0 cannot carry at all, not even escaped.
const NON_XML_RE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function fail(reason: string, index?: number, field?: string): never {
  throw new CodecError(FORMAT, reason, index, field);
}

// ---- time -------------------------------------------------------------------------------------

/** Seconds since the epoch of a Sen1 timestamp, or NaN when it is not one. */
export function parseSen1Time(text: string): number {
  const m = DATETIME_RE.exec(text);
  if (m === null) return NaN;
  const ms = m[7] === undefined ? 0 : Number(m[7].padEnd(3, '0'));
  return utcMs(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], ms) / 1000;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** A Sen1 timestamp for seconds since the epoch, rounded to the millisecond. */
export function formatSen1Time(t: number): string {
  const ms = Math.round(t * 1000);
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  if (!Number.isFinite(ms) || y < 0 || y > 9999) fail('time outside years 0000-9999', undefined, 't');
  const frac = ms % 1000 === 0 ? '' : `.${pad(((ms % 1000) + 1000) % 1000, 3)}`;
  return `${pad(y, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${frac}`;
}

// ---- values -----------------------------------------------------------------------------------

/** Why a value is not valid for a type, or undefined when it is. */
function invalidValue(type: Sen1Type, value: string): string | undefined {
  switch (type) {
    case 'dt_string':
      return undefined;
    case 'dt_integer':
      if (!INTEGER_RE.test(value)) return `"${value}" is not an integer`;
      return Number.isSafeInteger(Number(value)) ? undefined : `${value} is outside the exactly representable integers`;
    case 'dt_numeric':
      if (!NUMBER_RE.test(value)) return `"${value}" is not a number`;
      return Number.isFinite(Number(value)) ? undefined : `${value} is out of range`;
    case 'dt_boolean':
      return value === 'true' || value === 'false' ? undefined : `"${value}" is not true or false`;
    case 'dt_date': {
      const m = DATE_RE.exec(value);
      return m !== null && !Number.isNaN(utcMs(+m[1], +m[2], +m[3], 0, 0, 0, 0)) ? undefined : `"${value}" is not a date yyyy-mm-dd`;
    }
    case 'dt_datetime':
      return Number.isNaN(parseSen1Time(value)) ? `"${value}" is not a datetime yyyy-mm-dd hh:mm:ss` : undefined;
    case 'dt_time': {
      const m = TIME_RE.exec(value);
      return m !== null && +m[1] < 24 && +m[2] < 60 && +m[3] < 60 ? undefined : `"${value}" is not a time hh:mm:ss`;
    }
    case 'dt_duration':
      return DURATION_RE.test(value) ? undefined : `"${value}" is not an ISO 8601 duration (e.g. P1DT2H)`;
  }
}

function checkType(type: unknown): Sen1Type {
  if (typeof type !== 'string' || !TYPE_SET.has(type)) fail(`unknown type "${String(type)}" (expected one of ${SEN1_TYPES.join(', ')})`, undefined, 'type');
  return type as Sen1Type;
}

function recordName(msg: Sen1Meta): string {
  if (!isValidName(msg.name)) fail(`"${msg.name}" is not a valid SenML name (A-Z a-z 0-9 then - : . / _)`, undefined, 'name');
  if (msg.metaname === undefined) return msg.name;
  if (!/^[-:./A-Za-z0-9_]+$/.test(msg.metaname)) fail(`"${msg.metaname}" is not valid in a SenML name (- : . / _ A-Z a-z 0-9)`, undefined, 'metaname');
  return `${msg.name}/${msg.metaname}`;
}

/**
 * Validates every datum of msg against its type and timestamp rule; when `out` is given, also
 * appends the records. One pass, so decoding validates and converts each value once.
 */
function convertDatas(msg: Sen1Message, out?: ResolvedRecord[]): void {
  const { type, datas } = msg;
  if (!Array.isArray(datas) || datas.length === 0) fail('a message needs at least one Sen1Data', undefined, 'Sen1Datas');
  const n = out === undefined ? '' : recordName(msg);
  const u = msg.unite;
  for (let i = 0; i < datas.length; i++) {
    const d = datas[i];
    if (d === null || typeof d !== 'object') fail('expected an object with value and timestamp', i);
    if (typeof d.value !== 'string') fail('expected text', i, 'value');
    if (typeof d.timestamp !== 'string') fail('expected text', i, 'timestamp');
    const why = invalidValue(type, d.value);
    if (why !== undefined) fail(`${why} (type ${type})`, i, 'value');
    const t = parseSen1Time(d.timestamp);
    if (Number.isNaN(t)) fail(`"${d.timestamp}" is not a timestamp yyyy-mm-dd hh:mm:ss`, i, 'timestamp');
    if (out === undefined) continue;
    const r: ResolvedRecord = { n, t };
    if (u !== undefined) r.u = u;
    if (type === 'dt_integer' || type === 'dt_numeric') r.v = Number(d.value);
    else if (type === 'dt_boolean') r.vb = d.value === 'true';
    else r.vs = d.value;
    out.push(r);
  }
}

// ---- XML --------------------------------------------------------------------------------------

function text(node: XmlNode, field: string, required: boolean): string | undefined {
  const x = node[field];
  if (x === undefined) {
    if (required) fail('missing', undefined, field);
    return undefined;
  }
  if (typeof x !== 'string') fail(Array.isArray(x) ? 'appears more than once' : 'expected text, not elements or attributes', undefined, field);
  if (x === '') {
    if (required) fail('must not be empty', undefined, field);
    return undefined; // an empty optional element, as in the seed's template, means absent
  }
  return x;
}

function readMessage(doc: XmlNode): Sen1Message {
  let root: unknown;
  for (const key in doc) {
    if (key === '?xml') continue;
    if (key !== 'Sen1Message') fail(`the root element must be Sen1Message in ${SEN1_NAMESPACE}, not ${key}`);
    root = doc[key];
  }
  if (root === undefined) fail('no Sen1Message element');
  if (root === null || typeof root !== 'object' || Array.isArray(root)) fail('Sen1Message holds no fields');
  const node = root as XmlNode;
  if (node.xmlns !== SEN1_NAMESPACE) fail(`wrong namespace "${String(node.xmlns ?? '')}" (expected ${SEN1_NAMESPACE})`, undefined, 'xmlns');

  const msg: Sen1Message = {
    username: text(node, 'username', true)!,
    name: text(node, 'name', true)!,
    type: checkType(text(node, 'type', true)),
    datas: [],
  };
  const optional = ['metaname', 'metavalue', 'unite', 'applicationSrc', 'applicationDst'] as const;
  for (const f of optional) {
    const v = text(node, f, false);
    if (v !== undefined) msg[f] = v;
  }

  const box = node.Sen1Datas;
  if (box === undefined) fail('missing', undefined, 'Sen1Datas');
  if (box === null || typeof box !== 'object' || Array.isArray(box))
    fail(Array.isArray(box) ? 'appears more than once' : 'needs at least one Sen1Data', undefined, 'Sen1Datas');
  const items = (box as XmlNode).Sen1Data;
  if (!Array.isArray(items) || items.length === 0) fail('needs at least one Sen1Data', undefined, 'Sen1Datas');
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as unknown;
    if (item === null || typeof item !== 'object') fail('expected value and timestamp elements', i, 'Sen1Data');
    const { value, timestamp } = item as XmlNode;
    if (value === undefined) fail('missing', i, 'value');
    if (typeof value !== 'string') fail(Array.isArray(value) ? 'appears more than once' : 'expected text', i, 'value');
    if (timestamp === undefined) fail('missing', i, 'timestamp');
    if (typeof timestamp !== 'string') fail(Array.isArray(timestamp) ? 'appears more than once' : 'expected text', i, 'timestamp');
    msg.datas.push({ value, timestamp });
  }
  return msg;
}

const ARRAYS = { arrays: ['Sen1Data'] } as const;

function parseDoc(xml: unknown): XmlNode {
  if (typeof xml !== 'string' && !(xml instanceof Uint8Array)) fail('expected XML text or bytes');
  return parseXml(xml, FORMAT, ARRAYS);
}

/** Parses and validates one Sen1Message document. */
export function parseSen1(xml: string | Uint8Array): Sen1Message {
  const msg = readMessage(parseDoc(xml));
  convertDatas(msg);
  return msg;
}

function element(name: string, value: string | undefined): string {
  if (value === undefined) return '';
  if (NON_XML_RE.test(value)) fail('holds a character XML cannot carry', undefined, name);
  return `<${name}>${escapeXml(value)}</${name}>`;
}

/** Writes one Sen1Message document (no XML declaration: it travels as an XMPP stanza's body). */
export function formatSen1(msg: Sen1Message): string {
  if (typeof msg.username !== 'string' || msg.username === '') fail('must not be empty', undefined, 'username');
  if (typeof msg.name !== 'string' || msg.name === '') fail('must not be empty', undefined, 'name');
  checkType(msg.type);
  convertDatas(msg);
  let xml =
    `<Sen1Message xmlns="${SEN1_NAMESPACE}">` +
    element('username', msg.username) +
    element('name', msg.name) +
    element('metaname', msg.metaname) +
    element('metavalue', msg.metavalue) +
    element('unite', msg.unite) +
    element('type', msg.type) +
    element('applicationSrc', msg.applicationSrc) +
    element('applicationDst', msg.applicationDst) +
    '<Sen1Datas>';
  for (const d of msg.datas) xml += `<Sen1Data>${element('value', d.value)}<timestamp>${d.timestamp}</timestamp></Sen1Data>`;
  return `${xml}</Sen1Datas></Sen1Message>`;
}

// ---- records ----------------------------------------------------------------------------------

function metaOf(msg: Sen1Message): Sen1Meta {
  const { datas: _datas, ...meta } = msg;
  return meta;
}

/** The records of a message (validating every value); their order is the message's. */
export function sen1ToRecords(msg: Sen1Message): ResolvedRecord[] {
  checkType(msg.type);
  const out: ResolvedRecord[] = [];
  convertDatas(msg, out);
  // A name or unit past the canonical limits (a 300-character <unite>) is refused here, not by a tier later.
  return validateResolved(out, FORMAT);
}

/** Decodes one document: records, plus what records cannot carry. */
export function decodeSen1(xml: string | Uint8Array): { records: ResolvedRecord[]; meta: Sen1Meta } {
  const msg = readMessage(parseDoc(xml));
  const records: ResolvedRecord[] = [];
  convertDatas(msg, records);
  return { records: validateResolved(records, FORMAT), meta: metaOf(msg) };
}

const TEXT_TYPES: ReadonlySet<Sen1Type> = new Set(['dt_string', 'dt_date', 'dt_datetime', 'dt_duration', 'dt_time']);

function valueOf(r: ResolvedRecord, index: number, type: Sen1Type): string {
  if (r.v !== undefined) {
    if (type === 'dt_integer' && !Number.isSafeInteger(r.v)) fail(`${r.v} is not an integer (type dt_integer)`, index, 'v');
    return Object.is(r.v, -0) ? '-0' : String(r.v);
  }
  if (r.vb !== undefined) return r.vb ? 'true' : 'false';
  if (r.vs !== undefined) {
    const why = invalidValue(type, r.vs);
    if (why !== undefined) fail(`${why} (type ${type})`, index, 'vs');
    return r.vs;
  }
  fail(r.vd !== undefined ? 'Sen1 has no type for binary data' : 'Sen1 has no type for a sum without a value', index, r.vd !== undefined ? 'vd' : 's');
}

/**
 * One message per record name, value kind and unit, in order of first appearance: v records
 * become dt_numeric (dt_integer if meta.type says so), vb dt_boolean, vs dt_string (or meta.type
 * when it is a text type, each value then checked against it).
 */
export function recordsToSen1(records: ResolvedRecord[], meta: Sen1EncodeMeta): Sen1Message[] {
  validateResolved(records, FORMAT);
  if (meta === null || typeof meta !== 'object' || typeof meta.username !== 'string' || meta.username === '')
    fail('meta.username is required', undefined, 'username');
  if (meta.type !== undefined) checkType(meta.type);
  const groups = new Map<string, Sen1Message>();
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const kind = r.v !== undefined ? 'v' : r.vb !== undefined ? 'vb' : r.vs !== undefined ? 'vs' : 'x';
    const type: Sen1Type =
      kind === 'v'
        ? meta.type === 'dt_integer'
          ? 'dt_integer'
          : 'dt_numeric'
        : kind === 'vb'
          ? 'dt_boolean'
          : meta.type !== undefined && TEXT_TYPES.has(meta.type)
            ? meta.type
            : 'dt_string';
    const value = valueOf(r, i, type);
    const key = `${r.n}\u0000${kind}\u0000${r.u ?? ''}`;
    let msg = groups.get(key);
    if (msg === undefined) {
      msg = { username: meta.username, name: r.n, type, datas: [] };
      const suffix = meta.metaname === undefined ? '' : `/${meta.metaname}`;
      if (suffix !== '' && r.n.length > suffix.length && r.n.endsWith(suffix)) {
        msg.name = r.n.slice(0, -suffix.length);
        msg.metaname = meta.metaname;
      }
      if (meta.metavalue !== undefined) msg.metavalue = meta.metavalue;
      if (r.u !== undefined) msg.unite = r.u;
      if (meta.applicationSrc !== undefined) msg.applicationSrc = meta.applicationSrc;
      if (meta.applicationDst !== undefined) msg.applicationDst = meta.applicationDst;
      groups.set(key, msg);
    }
    msg.datas.push({ value, timestamp: formatSen1Time(r.t) });
  }
  return [...groups.values()];
}

/** Encodes records as Sen1 documents: one string per message (see recordsToSen1 for the grouping). */
export function encodeSen1(records: ResolvedRecord[], meta: Sen1EncodeMeta): string[] {
  const out: string[] = [];
  for (const msg of recordsToSen1(records, meta)) out.push(formatSen1(msg));
  return out;
}
