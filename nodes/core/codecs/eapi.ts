/**
 * The cloud logger's AMQP messages (seed 004, section 4): `{ type, data }` JSON, with type one of
 * eapi_measurement_new, eapi_geodata_new, eapi_occurrence_new, eapi_deviation_enter,
 * eapi_deviation_leave (eapi_Ereignis_neu, the seed's translated table entry, is read as
 * eapi_occurrence_new). Property names are case-insensitive on input (section 2.4); output uses
 * the seed's spelling. sensorId (Int64) may come as a number or a string: it is kept as a number
 * when exactly representable, else as its decimal string (also when it arrives as a long JSON number).
 * Times: ISO 8601 with an offset (none means UTC, as the seed says every time is UTC), kept to the
 * millisecond; written as `2022-10-11T16:21:27+00:00`.
 *
 * Records, named `<deviceId>/<sensorId>/<quantity>`:
 *   measurement  <dev>/<sensor>/<unitType>                v, u: °C→Cel, K→K, %→%RH when unitType is a
 *                relative humidity (relative_humidity, relative_Luftfeuchtigkeit, humidity) else %,
 *                °F→degF (SenML registers no Fahrenheit unit, neither in RFC 8428 nor among RFC 8798's
 *                secondary units; degF is ours, and the value is kept, not converted)
 *   geodata      <dev>/<sensor>/latitude (u lat), /longitude (u lon), /accuracy (u m, when sent)
 *   occurrence   <dev>/<sensor>/<typeName> vs newState; <dev>/<sensor>/<typeName>/previous vs previousState
 *   deviation    <dev>/<sensor>/deviation/<deviationType> vb (true: enter, false: leave);
 *                .../reason vs; .../limitzone vs (when sent)
 * Names: no escaping. deviceId, unitType and typeName must be made of SenML name characters
 * (A-Z a-z 0-9 - : . _; deviceId starting with a letter or digit) and hold no '/', else the message
 * is refused with a CodecError naming the field.
 */
import { CodecError } from '../errors';
import { parseIsoTime } from './time';
import { validateResolved, type ResolvedRecord } from '../model/senml';

const FORMAT = 'eapi';

export type EapiUnit = 'K' | '°C' | '°F' | '%';
export type DeviationType = 'battery' | 'failure' | 'missing' | 'radio' | 'limit';

interface EapiCommon {
  deviceId: string;
  /** a number when exactly representable, else the Int64 as a decimal string */
  sensorId: number | string;
  /** seconds since the epoch */
  timeStamp: number;
}

export interface EapiMeasurement extends EapiCommon {
  value: number;
  unit: EapiUnit;
  /** e.g. temperature, relative_humidity */
  unitType: string;
}

export interface EapiGeodata extends EapiCommon {
  latitude: number;
  longitude: number;
  /** metres */
  accuracy?: number;
}

export interface EapiOccurrence extends EapiCommon {
  /** e.g. LoggerStatusChange */
  typeName: string;
  previousState?: string;
  newState: string;
}

export interface EapiDeviation extends EapiCommon {
  historyType: 'enter' | 'leave';
  deviationType: DeviationType;
  reason: string;
  /** L1, L2, H1, ... for limit deviations */
  limitzone?: string;
}

export type EapiMessage =
  | { type: 'eapi_measurement_new'; data: EapiMeasurement }
  | { type: 'eapi_geodata_new'; data: EapiGeodata }
  | { type: 'eapi_occurrence_new'; data: EapiOccurrence }
  | { type: 'eapi_deviation_enter'; data: EapiDeviation }
  | { type: 'eapi_deviation_leave'; data: EapiDeviation };

export type EapiType = EapiMessage['type'];

const TYPES: Record<string, EapiType> = {
  eapi_measurement_new: 'eapi_measurement_new',
  eapi_geodata_new: 'eapi_geodata_new',
  eapi_occurrence_new: 'eapi_occurrence_new',
  eapi_ereignis_neu: 'eapi_occurrence_new',
  eapi_deviation_enter: 'eapi_deviation_enter',
  eapi_deviation_leave: 'eapi_deviation_leave',
};
const UNITS: ReadonlySet<string> = new Set(['K', '°C', '°F', '%']);
const DEVIATIONS: ReadonlySet<string> = new Set(['battery', 'failure', 'missing', 'radio', 'limit']);
const HUMIDITY: ReadonlySet<string> = new Set(['relative_humidity', 'relative_luftfeuchtigkeit', 'humidity', 'relativehumidity']);
const DEVICE_RE = /^[A-Za-z0-9][-:.A-Za-z0-9_]*$/;
const PART_RE = /^[-:.A-Za-z0-9_]+$/;
const DECIMAL_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const INT_RE = /^[+-]?\d+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function fail(reason: string, field?: string): never {
  throw new CodecError(FORMAT, reason, undefined, field);
}

// ---- reading ----------------------------------------------------------------------------------

/** An object's properties by lower-cased name; two spellings of one name are refused. */
function props(obj: unknown, what: string): Map<string, unknown> {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) fail(`${what} must be a JSON object`, what === 'message' ? undefined : what);
  const map = new Map<string, unknown>();
  for (const key of Object.keys(obj)) {
    const k = key.toLowerCase();
    if (map.has(k)) fail(`"${key}" appears twice (names are case-insensitive)`, key);
    map.set(k, (obj as Record<string, unknown>)[key]);
  }
  return map;
}

function str(p: Map<string, unknown>, field: string, required: true): string;
function str(p: Map<string, unknown>, field: string, required: false): string | undefined;
function str(p: Map<string, unknown>, field: string, required: boolean): string | undefined {
  const x = p.get(field.toLowerCase());
  if (x === undefined || x === null) {
    if (required) fail('missing', field);
    return undefined;
  }
  if (typeof x !== 'string') fail('expected a string', field);
  if (x === '') fail('must not be empty', field);
  return x;
}

function num(p: Map<string, unknown>, field: string, required: boolean): number | undefined {
  const x = p.get(field.toLowerCase());
  if (x === undefined || x === null) {
    if (required) fail('missing', field);
    return undefined;
  }
  // Decimal: a JSON number, or the same digits as a string.
  const v = typeof x === 'number' ? x : typeof x === 'string' && DECIMAL_RE.test(x) ? Number(x) : NaN;
  if (!Number.isFinite(v)) fail(`expected a number, got ${JSON.stringify(x)}`, field);
  return v;
}

function namePart(value: string, field: string, re = PART_RE): string {
  if (!re.test(value)) fail(`"${value}" cannot be part of a SenML name (A-Z a-z 0-9 - : . _, no '/')`, field);
  return value;
}

/** The Int64 sensor id: a number when exactly representable, else its decimal string. */
export function normalizeSensorId(x: unknown): number | string {
  let big: bigint;
  if (typeof x === 'number') {
    if (!Number.isInteger(x)) fail(`expected an integer, got ${x}`, 'sensorId');
    if (Number.isSafeInteger(x)) return x;
    big = BigInt(x);
  } else if (typeof x === 'bigint') {
    big = x;
  } else if (typeof x === 'string' && INT_RE.test(x)) {
    big = BigInt(x);
  } else {
    fail(x === undefined || x === null ? 'missing' : `expected an Int64, got ${JSON.stringify(x)}`, 'sensorId');
  }
  if (big < INT64_MIN || big > INT64_MAX) fail(`${big} is outside Int64`, 'sensorId');
  const n = Number(big);
  return Number.isSafeInteger(n) ? n : big.toString();
}

/** Seconds since the epoch of an ISO 8601 date-time with offset (none means UTC), or NaN. */
export function parseEapiTime(text: string): number {
  return parseIsoTime(text, true);
}

/** The seed's form, `2022-10-11T16:21:27+00:00`, with milliseconds only when there are some. */
export function formatEapiTime(t: number): string {
  return formatEapiMillis(Math.round(t * 1000));
}

/** formatEapiTime of whole milliseconds since the epoch. */
export function formatEapiMillis(ms: number): string {
  if (!(Math.abs(ms) < 8.64e15)) fail('time outside the representable range', 'timeStamp');
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:mm:ss.sssZ for the years 0000-9999
  if (iso.length !== 24) fail('time outside years 0000-9999', 'timeStamp');
  return `${iso.slice(0, ms % 1000 === 0 ? 19 : 23)}+00:00`;
}

// A long integer sensorId in JSON text would lose digits in JSON.parse: quote it first. Inside a
// JSON string the quotes around sensorId would be escaped, so this only matches real properties.
const LONG_SENSOR_ID = /("sensorid"\s*:\s*)(-?\d{16,})(?=\s*[,}])/gi;

function toObject(input: unknown): unknown {
  let text: string;
  if (typeof input === 'string') text = input;
  else if (input instanceof Uint8Array) text = Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');
  else return input;
  try {
    return JSON.parse(text.replace(LONG_SENSOR_ID, '$1"$2"'));
  } catch (err) {
    fail(`malformed JSON: ${(err as Error).message}`);
  }
}

/** Parses a message (JSON text, UTF-8 bytes or an object) into its typed form. */
export function parseEapi(input: unknown): EapiMessage {
  const top = props(toObject(input), 'message');
  const rawType = top.get('type');
  if (typeof rawType !== 'string') fail(rawType === undefined ? 'missing' : 'expected a string', 'type');
  const type = TYPES[rawType.toLowerCase()];
  if (type === undefined)
    fail(
      `unknown message type "${rawType}" (expected one of ${Object.values(TYPES)
        .filter((t, i, a) => a.indexOf(t) === i)
        .join(', ')})`,
      'type',
    );
  if (top.get('data') === undefined) fail('missing', 'data');
  const p = props(top.get('data'), 'data');

  const deviceId = namePart(str(p, 'deviceId', true), 'deviceId', DEVICE_RE);
  const sensorId = normalizeSensorId(p.get('sensorid'));
  const ts = str(p, 'timeStamp', true);
  const timeStamp = parseEapiTime(ts);
  if (Number.isNaN(timeStamp)) fail(`"${ts}" is not an ISO 8601 date-time`, 'timeStamp');
  const common = { deviceId, sensorId, timeStamp };

  switch (type) {
    case 'eapi_measurement_new': {
      const value = num(p, 'value', true)!;
      const unit = str(p, 'unit', true);
      if (!UNITS.has(unit)) fail(`unknown unit "${unit}" (expected K, °C, °F or %)`, 'unit');
      const unitType = namePart(str(p, 'unitType', true), 'unitType');
      return { type, data: { ...common, value, unit: unit as EapiUnit, unitType } };
    }
    case 'eapi_geodata_new': {
      const latitude = num(p, 'latitude', true)!;
      const longitude = num(p, 'longitude', true)!;
      if (latitude < -90 || latitude > 90) fail(`${latitude} is outside -90..90`, 'latitude');
      if (longitude < -180 || longitude > 180) fail(`${longitude} is outside -180..180`, 'longitude');
      const data: EapiGeodata = { ...common, latitude, longitude };
      const accuracy = num(p, 'accuracy', false);
      if (accuracy !== undefined) {
        if (accuracy < 0) fail('must not be negative', 'accuracy');
        data.accuracy = accuracy;
      }
      return { type, data };
    }
    case 'eapi_occurrence_new': {
      const data: EapiOccurrence = { ...common, typeName: namePart(str(p, 'typeName', true), 'typeName'), newState: str(p, 'newState', true) };
      const previousState = str(p, 'previousState', false);
      if (previousState !== undefined) data.previousState = previousState;
      return { type, data };
    }
    case 'eapi_deviation_enter':
    case 'eapi_deviation_leave': {
      const expected = type === 'eapi_deviation_enter' ? 'enter' : 'leave';
      const historyType = str(p, 'historyType', false) ?? expected;
      if (historyType.toLowerCase() !== expected) fail(`"${historyType}" contradicts the message type ${type}`, 'historyType');
      const deviationType = str(p, 'deviationType', true);
      if (!DEVIATIONS.has(deviationType))
        fail(`unknown deviation type "${deviationType}" (expected battery, failure, missing, radio or limit)`, 'deviationType');
      const data: EapiDeviation = { ...common, historyType: expected, deviationType: deviationType as DeviationType, reason: str(p, 'reason', true) };
      const limitzone = str(p, 'limitzone', false);
      if (limitzone !== undefined) data.limitzone = limitzone;
      return { type, data } as EapiMessage;
    }
  }
}

/** A message's JSON object as the seed spells it: the time as text (formatEapiTime). */
export type FormattedEapi = { type: EapiType; data: Record<string, unknown> & { timeStamp: string } };

/** The JSON object of a message, in the seed's spelling; the message is validated on the way. */
export function formatEapi(msg: EapiMessage): FormattedEapi {
  if (msg === null || typeof msg !== 'object' || msg.data === null || typeof msg.data !== 'object') fail('expected { type, data }');
  if (typeof msg.data.timeStamp !== 'number') fail('expected seconds since the epoch', 'timeStamp');
  const { timeStamp, ...rest } = msg.data;
  const data = { ...rest, timeStamp: formatEapiTime(timeStamp) };
  const out = { type: msg.type, data };
  parseEapi(out); // one set of rules for what a valid message is
  return out;
}

// ---- records ----------------------------------------------------------------------------------

function senmlUnit(unit: EapiUnit, unitType: string): string {
  switch (unit) {
    case '°C':
      return 'Cel';
    case 'K':
      return 'K';
    case '°F':
      return 'degF';
    case '%':
      return HUMIDITY.has(unitType.toLowerCase()) ? '%RH' : '%';
  }
}

const EAPI_UNITS: Record<string, EapiUnit> = { Cel: '°C', K: 'K', degF: '°F', '%RH': '%', '%': '%' };

/** The records of one message (see the top of this file for names and units). */
export function eapiToRecords(msg: EapiMessage): ResolvedRecord[] {
  const d = msg.data;
  const base = `${d.deviceId}/${d.sensorId}`;
  const t = d.timeStamp;
  switch (msg.type) {
    case 'eapi_measurement_new': {
      const m = msg.data;
      return [{ n: `${base}/${m.unitType}`, t, u: senmlUnit(m.unit, m.unitType), v: m.value }];
    }
    case 'eapi_geodata_new': {
      const g = msg.data;
      const out: ResolvedRecord[] = [
        { n: `${base}/latitude`, t, u: 'lat', v: g.latitude },
        { n: `${base}/longitude`, t, u: 'lon', v: g.longitude },
      ];
      if (g.accuracy !== undefined) out.push({ n: `${base}/accuracy`, t, u: 'm', v: g.accuracy });
      return out;
    }
    case 'eapi_occurrence_new': {
      const o = msg.data;
      const out: ResolvedRecord[] = [{ n: `${base}/${o.typeName}`, t, vs: o.newState }];
      if (o.previousState !== undefined) out.push({ n: `${base}/${o.typeName}/previous`, t, vs: o.previousState });
      return out;
    }
    case 'eapi_deviation_enter':
    case 'eapi_deviation_leave': {
      const v = msg.data;
      const n = `${base}/deviation/${v.deviationType}`;
      const out: ResolvedRecord[] = [
        { n, t, vb: msg.type === 'eapi_deviation_enter' },
        { n: `${n}/reason`, t, vs: v.reason },
      ];
      if (v.limitzone !== undefined) out.push({ n: `${n}/limitzone`, t, vs: v.limitzone });
      return out;
    }
  }
}

/** Parses and converts in one call: the strict decoder. */
export function decodeEapi(input: unknown): ResolvedRecord[] {
  // A name past the canonical limits (a 1,000-character typeName) is refused here, not by a tier later.
  return validateResolved(eapiToRecords(parseEapi(input)), FORMAT);
}

function newDeviation(common: EapiCommon, deviationType: string): { type: 'eapi_deviation_enter' | 'eapi_deviation_leave'; data: EapiDeviation } {
  // type, historyType and reason are filled in by the records that follow.
  return { type: 'eapi_deviation_enter', data: { ...common, historyType: 'enter', deviationType: deviationType as DeviationType, reason: '' } };
}

/**
 * The inverse of eapiToRecords: records are gathered into messages by device, sensor, time and
 * kind, in order of first appearance. Records of other shapes are refused with their index.
 */
export function recordsToEapi(records: ResolvedRecord[]): EapiMessage[] {
  const out = gather(records);
  // Every message must be complete and valid: the same rules as parsing.
  for (const m of out) formatEapi(m);
  return out;
}

/** Records to the JSON objects of the cloud logger's messages (one object per message), each formatted and validated once. */
export function encodeEapi(records: ResolvedRecord[]): FormattedEapi[] {
  return gather(records).map(formatEapi);
}

/** recordsToEapi without the final check of each message (its callers format, and so check, each). */
function gather(records: ResolvedRecord[]): EapiMessage[] {
  validateResolved(records, FORMAT);
  const out: EapiMessage[] = [];
  const open = new Map<string, EapiMessage>();
  type Geo = { type: 'eapi_geodata_new'; data: EapiGeodata };
  type Occ = { type: 'eapi_occurrence_new'; data: EapiOccurrence };
  type Dev = { type: 'eapi_deviation_enter' | 'eapi_deviation_leave'; data: EapiDeviation };
  const get = <M extends Geo | Occ | Dev>(key: string, make: () => M): M => {
    let m = open.get(key);
    if (m === undefined) {
      m = make() as EapiMessage;
      open.set(key, m);
      out.push(m);
    }
    return m as M;
  };
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const bad = (why: string, field = 'n'): never => {
      throw new CodecError(FORMAT, why, i, field);
    };
    const parts = r.n.split('/');
    if (parts.length < 3) bad('expected a name <deviceId>/<sensorId>/<quantity>');
    const [deviceId, sid, q] = parts;
    if (!INT_RE.test(sid)) bad(`sensor id "${sid}" is not an integer`);
    let sensorId: number | string;
    try {
      sensorId = normalizeSensorId(sid);
    } catch (err) {
      return bad((err as CodecError).reason);
    }
    const common = { deviceId, sensorId, timeStamp: r.t };
    const key = `${deviceId}/${sensorId}@${r.t}`;

    if (r.v !== undefined) {
      if (parts.length !== 3) bad('a numeric record is named <deviceId>/<sensorId>/<quantity>');
      if (r.u === 'lat' || r.u === 'lon' || (q === 'accuracy' && r.u === 'm')) {
        const m = get<Geo>(`${key}#geo`, () => ({ type: 'eapi_geodata_new', data: { ...common, latitude: NaN, longitude: NaN } }));
        if (r.u === 'lat') m.data.latitude = r.v;
        else if (r.u === 'lon') m.data.longitude = r.v;
        else m.data.accuracy = r.v;
        continue;
      }
      const unit: EapiUnit | undefined = r.u === undefined ? undefined : EAPI_UNITS[r.u];
      if (unit === undefined) return bad(`unit "${r.u ?? ''}" has no cloud logger equivalent (Cel, K, degF, %RH, %)`, 'u');
      out.push({ type: 'eapi_measurement_new', data: { ...common, value: r.v, unit, unitType: q } });
    } else if (r.vb !== undefined) {
      if (parts.length !== 4 || q !== 'deviation') bad('a boolean record is named <deviceId>/<sensorId>/deviation/<deviationType>');
      if (!DEVIATIONS.has(parts[3])) bad(`unknown deviation type "${parts[3]}"`);
      const m = get<Dev>(`${key}#dev/${parts[3]}`, () => newDeviation(common, parts[3]));
      m.type = r.vb ? 'eapi_deviation_enter' : 'eapi_deviation_leave';
      m.data.historyType = r.vb ? 'enter' : 'leave';
    } else if (r.vs !== undefined) {
      if (q === 'deviation' && parts.length === 5 && (parts[4] === 'reason' || parts[4] === 'limitzone')) {
        const m = get<Dev>(`${key}#dev/${parts[3]}`, () => newDeviation(common, parts[3]));
        if (parts[4] === 'reason') m.data.reason = r.vs;
        else m.data.limitzone = r.vs;
      } else if (parts.length === 3 || (parts.length === 4 && parts[3] === 'previous')) {
        const m = get<Occ>(`${key}#occ/${q}`, () => ({ type: 'eapi_occurrence_new', data: { ...common, typeName: q, newState: '' } }));
        if (parts.length === 3) m.data.newState = r.vs;
        else m.data.previousState = r.vs;
      } else {
        bad("a text record is an occurrence <deviceId>/<sensorId>/<typeName>[/previous] or a deviation's /reason or /limitzone");
      }
    } else {
      bad('the cloud logger has no binary data or sums', r.vd !== undefined ? 'vd' : 's');
    }
  }
  return out;
}
