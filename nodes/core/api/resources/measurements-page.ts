/**
 * A measurements page written as JSON bytes from the database's compact records
 * (measurements-sql.ts). The database sends each row as text, with no JSON in it:
 *
 *   <µs since the epoch>,<value>,<unit: '-' for none, or <bytes>:<text>>,<bytes>:<name>
 *
 * one after the other with no separator (the lengths delimit the texts, whatever they hold). Node
 * writes the items in one pass over the bytes: building each item's JSON in SQL cost the database
 * twice as much per request, and a regular expression's replace over a JSON text, then the string
 * of 2,000 pieces it left to flatten and encode, cost Node more than the rest of the request
 * (measured in the api bench, bench/RESULTS.md "api"). What repeats from row to row (the unit, the
 * name and what derives from it) is escaped once and copied as bytes.
 */
import { formatEapiMillis } from '../../codecs/eapi';
import { EAPI_UNITS, sensorIdOf } from './readings-model';

const DAY_MS = 86_400_000;
const COMMA = 0x2c;
const COLON = 0x3a;

const bytes = (text: string) => Buffer.from(text);
const SENSOR_ID = bytes('{"sensorId":');
const DEVICE_ID = bytes(',"deviceId":');
const TIME = bytes(',"timeStamp":"');
const VALUE = bytes('+00:00","value":');
const UNIT = bytes(',"unit":');
const UNIT_TYPE = bytes(',"unitType":');
const NAME = bytes(',"name":');
const SENML_UNIT = bytes(',"senmlUnit":');
/** Room for an item's fixed parts and its time, besides its variable parts. */
const ITEM_ROOM = 160;

/** What a row's name gives its item: the sensor id, unit type and (v2) name as JSON bytes. */
interface NameParts {
  sensorId: Buffer;
  unitType: Buffer;
  name: Buffer;
}
/** What a row's unit gives: the unit token and the SenML unit (v2) as JSON bytes. */
interface UnitParts {
  unit: Buffer;
  senml: Buffer | undefined;
}
const NO_UNIT: UnitParts = { unit: bytes('""'), senml: undefined };

/** The last record's key, for the cursor. */
export interface RecordKey {
  us: number;
  name: string;
  unit: string;
}

export interface WrittenPage {
  /** The items' JSON, comma-separated, without brackets. */
  items: Buffer;
  /** How many records the text held (one more than the page when more follow). */
  records: number;
  /** The key of the page's last item (record number `limit`), when there is one. */
  last?: RecordKey;
}

/** A span of the source bytes. */
interface Span {
  start: number;
  end: number;
}

/**
 * The items of the first `limit` records of text. deviceJson is the device's serial as JSON;
 * sensorJson the sensor id as JSON when every row is of one sensor (else each row's is worked out
 * from its name, as readings-model.ts does).
 */
export function writeItems(text: string, limit: number, deviceJson: string, sensorJson: string | undefined, v2: boolean): WrittenPage {
  const src = Buffer.from(text);
  const device = bytes(deviceJson);
  const fixedSensor = sensorJson === undefined ? undefined : bytes(sensorJson);
  const out = new Output(src.length * 2 + 1024);
  const names = new Map<string, NameParts>();
  const units = new Map<string, UnitParts>();
  let name: NameParts | undefined;
  let nameSpan: Span = { start: 0, end: 0 };
  let unit: UnitParts = NO_UNIT;
  let unitSpan: Span | undefined;
  let day = NaN;
  const dayText = Buffer.alloc(11);
  let records = 0;
  let last: RecordKey | undefined;
  let i = 0;
  while (i < src.length) {
    records++;
    // µs, then the value, each up to its comma.
    const usStart = i;
    while (src[i] !== COMMA) i++;
    const ms = roundedMillis(src, usStart, i);
    const valueStart = ++i;
    while (src[i] !== COMMA) i++;
    const valueEnd = i++;
    let thisUnit: Span | undefined;
    if (src[i] === 0x2d) i += 2;
    else {
      thisUnit = lengthPrefixed(src, i);
      i = thisUnit.end + 1;
    }
    const thisName = lengthPrefixed(src, i);
    i = thisName.end;
    if (records > limit) continue;
    if (records === limit) {
      last = {
        us: Number(src.toString('latin1', usStart, valueStart - 1)),
        name: src.toString('utf8', thisName.start, thisName.end),
        unit: thisUnit ? src.toString('utf8', thisUnit.start, thisUnit.end) : '',
      };
    }

    if (!name || !sameBytes(src, nameSpan, thisName)) {
      nameSpan = thisName;
      const text = src.toString('utf8', thisName.start, thisName.end);
      name = names.get(text) ?? cache(names, text, nameParts(text, fixedSensor));
    }
    if (!thisUnit) unit = NO_UNIT;
    else if (!unitSpan || !sameBytes(src, unitSpan, thisUnit)) {
      const text = src.toString('utf8', thisUnit.start, thisUnit.end);
      unit = units.get(text) ?? cache(units, text, { unit: bytes(JSON.stringify(EAPI_UNITS[text] ?? text)), senml: bytes(JSON.stringify(text)) });
    }
    unitSpan = thisUnit;

    const start = Math.floor(ms / DAY_MS) * DAY_MS;
    if (start !== day) {
      day = start;
      dayText.write(formatEapiMillis(start).slice(0, 11), 0, 'latin1');
    }
    out.room(
      ITEM_ROOM +
        name.sensorId.length +
        device.length +
        name.unitType.length +
        unit.unit.length +
        (valueEnd - valueStart) +
        (v2 ? name.name.length + (unit.senml?.length ?? 0) : 0),
    );
    if (records > 1) out.byte(COMMA);
    out.put(SENSOR_ID);
    out.put(name.sensorId);
    out.put(DEVICE_ID);
    out.put(device);
    out.put(TIME);
    out.put(dayText);
    out.time(ms - start);
    out.put(VALUE);
    out.copy(src, valueStart, valueEnd);
    out.put(UNIT);
    out.put(unit.unit);
    out.put(UNIT_TYPE);
    out.put(name.unitType);
    if (v2) {
      out.put(NAME);
      out.put(name.name);
      if (unit.senml) {
        out.put(SENML_UNIT);
        out.put(unit.senml);
      }
    }
    out.byte(0x7d);
  }
  return { items: out.done(), records, last };
}

function cache<T>(map: Map<string, T>, key: string, value: T): T {
  map.set(key, value);
  return value;
}

function nameParts(name: string, fixedSensor: Buffer | undefined): NameParts {
  const [, sensor, unitType] = name.split('/');
  return {
    sensorId: fixedSensor ?? bytes(JSON.stringify(sensorIdOf(sensor))),
    unitType: bytes(JSON.stringify(unitType)),
    name: bytes(JSON.stringify(name)),
  };
}

/** `<bytes>:<text>` at i: the text's span. */
function lengthPrefixed(src: Buffer, i: number): Span {
  let n = 0;
  for (; src[i] !== COLON; i++) n = n * 10 + src[i] - 0x30;
  return { start: i + 1, end: i + 1 + n };
}

function sameBytes(src: Buffer, a: Span, b: Span): boolean {
  if (a.end - a.start !== b.end - b.start) return false;
  for (let k = 0; k < b.end - b.start; k++) if (src[a.start + k] !== src[b.start + k]) return false;
  return true;
}

/**
 * Microseconds (decimal digits, maybe signed) rounded to the millisecond, half up, as the
 * database's date_trunc('milliseconds', t + 500 µs) does: from the digits, so that times past 2^53 µs
 * (after 2255) stay exact.
 */
function roundedMillis(src: Buffer, start: number, end: number): number {
  const negative = src[start] === 0x2d;
  let whole = 0;
  for (let k = negative ? start + 1 : start; k < end - 3; k++) whole = whole * 10 + src[k] - 0x30;
  let micro = 0;
  for (let k = Math.max(end - 3, negative ? start + 1 : start); k < end; k++) micro = micro * 10 + src[k] - 0x30;
  if (!negative) return micro >= 500 ? whole + 1 : whole;
  return micro > 500 ? -whole - 1 : -whole;
}

/** A growing byte buffer. */
class Output {
  private buf: Buffer;
  private o = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Makes room for n more bytes. */
  room(n: number): void {
    if (this.o + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.o + n));
    this.buf.copy(bigger, 0, 0, this.o);
    this.buf = bigger;
  }

  byte(b: number): void {
    this.buf[this.o++] = b;
  }

  put(b: Uint8Array): void {
    for (let k = 0; k < b.length; k++) this.buf[this.o++] = b[k];
  }

  copy(src: Buffer, start: number, end: number): void {
    for (let k = start; k < end; k++) this.buf[this.o++] = src[k];
  }

  /** The time of day `HH:MM:SS`, and `.sss` unless whole seconds. */
  time(ms: number): void {
    const h = Math.floor(ms / 3_600_000);
    ms -= h * 3_600_000;
    const m = Math.floor(ms / 60_000);
    ms -= m * 60_000;
    const s = Math.floor(ms / 1000);
    ms -= s * 1000;
    this.two(h);
    this.byte(COLON);
    this.two(m);
    this.byte(COLON);
    this.two(s);
    if (ms === 0) return;
    this.byte(0x2e);
    this.byte(0x30 + Math.floor(ms / 100));
    this.two(ms % 100);
  }

  private two(n: number): void {
    this.buf[this.o++] = 0x30 + Math.floor(n / 10);
    this.buf[this.o++] = 0x30 + (n % 10);
  }

  done(): Buffer {
    return this.buf.subarray(0, this.o);
  }
}
