/**
 * SenML CBOR (RFC 8428 section 6, application/senml+cbor): records are CBOR maps keyed by the
 * integer labels of Table 4 (extensions keep text labels), vd is a byte string.
 */
import { Decoder, Encoder, type Options } from 'cbor-x';
import { CodecError } from '../errors';
import { resolve, validateResolved, type ResolvedRecord, type ResolveOptions, type SenMLRecord } from '../model/senml';
import { base64urlToBytes, bytesToBase64url } from './senml-common';

const FORMAT = 'senml-cbor';

/** Table 4: the label of integer key k is LABELS[k + 6]. The table is closed; extensions use text keys. */
const LABELS = ['bs', 'bv', 'bu', 'bt', 'bn', 'bver', 'n', 'u', 'v', 'vs', 'vb', 's', 't', 'ut', 'vd'] as const;
const TEXT_LABELS = new Set<string>(LABELS);

// Maps decode as Map so integer keys stay integers (as object keys -2 and "-2" would collide);
// no record extension, and 64-bit integers as numbers like every other SenML number.
// (int64AsNumber and useTag259ForMaps are read by cbor-x 1.6 but missing from its typings.)
type CborOptions = Options & { int64AsNumber?: boolean; useTag259ForMaps?: boolean };
const decoderOptions: CborOptions = { mapsAsObjects: false, useRecords: false, int64AsNumber: true };
const decoder = new Decoder(decoderOptions);

// Plain CBOR: definite-length arrays and maps, Maps written as maps (not tag 259), bytes untagged.
const encoderOptions: CborOptions = { useRecords: false, mapsAsObjects: false, useTag259ForMaps: false, variableMapSize: true, tagUint8Array: false };
const encoder = new Encoder(encoderOptions);

function fail(reason: string, index?: number, field?: string): never {
  throw new CodecError(FORMAT, reason, index, field);
}

function toRecord(item: unknown, index: number): SenMLRecord {
  if (!(item instanceof Map)) fail(`a record must be a CBOR map, not ${describe(item)}`, index);
  const rec: SenMLRecord = {};
  for (const [key, value] of item as Map<unknown, unknown>) {
    if (typeof key === 'number') {
      const label = Number.isInteger(key) ? LABELS[key + 6] : undefined;
      if (label === undefined) fail(`label ${key} is not in RFC 8428 Table 4, which is closed (extensions use text labels)`, index);
      if (value === undefined) fail('undefined is not a SenML value', index, label);
      if (label === 'vd') {
        if (!(value instanceof Uint8Array)) fail(`expected a byte string, not ${describe(value)}`, index, 'vd');
        rec.vd = bytesToBase64url(value);
      } else {
        (rec as Record<string, unknown>)[label] = value; // resolve checks the type of every known field
      }
    } else if (typeof key === 'string') {
      if (TEXT_LABELS.has(key)) fail(`"${key}" must be written as its integer label ${LABELS.indexOf(key as (typeof LABELS)[number]) - 6}`, index);
      // Unknown labels are ignored (RFC 8428 section 4.4), except those that must be understood.
      if (key.endsWith('_')) throw new CodecError('senml', 'unknown field that must be understood', index, key);
    } else {
      fail(`a label must be an integer or a text string, not ${describe(key)}`, index);
    }
  }
  return rec;
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (x instanceof Uint8Array) return 'a byte string';
  if (x instanceof Map) return 'a map';
  if (Array.isArray(x)) return 'an array';
  if (x instanceof Date) return 'a date';
  if (typeof x === 'object' || typeof x === 'undefined') return `an ${typeof x}`;
  return typeof x === 'string' ? 'a text string' : `a ${typeof x}`;
}

/** Decodes SenML CBOR bytes into resolved records. */
export function decodeSenmlCbor(bytes: Uint8Array, options: ResolveOptions = {}): ResolvedRecord[] {
  if (!(bytes instanceof Uint8Array)) fail('expected SenML CBOR bytes');
  if (bytes.length === 0) fail('no CBOR data');
  let root: unknown;
  try {
    root = decoder.decode(bytes);
  } catch (err) {
    // includes RangeError from absurdly deep nesting
    fail(`malformed CBOR: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!Array.isArray(root)) fail(`the root must be an array of records, not ${describe(root)}`);
  const pack: SenMLRecord[] = new Array(root.length);
  for (let i = 0; i < root.length; i++) pack[i] = toRecord(root[i], i);
  return resolve(pack, options);
}

/** Encodes resolved records as SenML CBOR: a definite-length array of maps with integer keys. */
export function encodeSenmlCbor(records: ResolvedRecord[]): Uint8Array {
  const list = validateResolved(records, FORMAT);
  const maps = new Array<Map<number, unknown>>(list.length);
  for (let i = 0; i < list.length; i++) {
    const r = list[i];
    const m = new Map<number, unknown>([[0, r.n]]);
    if (r.u !== undefined) m.set(1, r.u);
    m.set(6, r.t);
    if (r.v !== undefined) m.set(2, r.v);
    else if (r.vs !== undefined) m.set(3, r.vs);
    else if (r.vb !== undefined) m.set(4, r.vb);
    else if (r.vd !== undefined) m.set(8, base64urlToBytes(r.vd));
    if (r.s !== undefined) m.set(5, r.s);
    if (r.ut !== undefined) m.set(7, r.ut);
    if (r.bver !== undefined) m.set(-1, r.bver);
    maps[i] = m;
  }
  try {
    return encoder.encode(maps);
  } catch (err) {
    return fail(`cannot encode: ${err instanceof Error ? err.message : String(err)}`);
  }
}
