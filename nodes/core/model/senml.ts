/**
 * The canonical model: resolved SenML records (RFC 8428 section 4.6), and the resolution and
 * validation every decoder ends with. Written as plain loops: it runs once per record on the
 * hot path of every listener.
 */
import { CodecError } from '../errors';

/** A record as it may appear in a SenML pack: base fields, relative times, extensions. */
export interface SenMLRecord {
  bn?: string;
  bt?: number;
  bu?: string;
  bv?: number;
  bs?: number;
  bver?: number;
  n?: string;
  u?: string;
  v?: number;
  vs?: string;
  vb?: boolean;
  /** base64url without padding (RFC 4648 section 5), as in SenML JSON */
  vd?: string;
  s?: number;
  t?: number;
  ut?: number;
  [extension: string]: unknown;
}

export type SenMLPack = SenMLRecord[];

/** A resolved record: full name, absolute time in seconds since the epoch, at most one value field. */
export interface ResolvedRecord {
  n: string;
  t: number;
  u?: string;
  v?: number;
  vs?: string;
  vb?: boolean;
  vd?: string;
  s?: number;
  ut?: number;
  /** present only when the pack's version is not the default 10 (RFC 8428 section 4.6) */
  bver?: number;
}

/** The version RFC 8428 defines; a pack with a higher bver must not be used. */
export const SENML_VERSION = 10;

/** Times below 2**28 are relative to "now" (RFC 8428 section 4.5.3). */
export const RELATIVE_TIME_LIMIT = 2 ** 28;

/**
 * What every tier can store, checked where records are made (decoders, so a listener refuses an
 * unstorable reading before acknowledging it) and again where they are stored (validateResolved).
 * Times: from 2^28 s (1978-07-04, below which SenML reads a time as relative) to the year 10000
 * (timestamptz text and Elasticsearch dates). Names: index entries stay small. Texts: PostgreSQL
 * text holds no U+0000.
 */
export const MAX_TIME = 253_402_300_800;
export const MAX_NAME_LENGTH = 1_024;
export const MAX_UNIT_LENGTH = 256;
export const MAX_STRING_LENGTH = 65_536;
export const MAX_DATA_LENGTH = 1_048_576;

/** Why a resolved record cannot be stored ([reason, field]), or undefined when it can. */
function beyondLimits(r: ResolvedRecord): [string, string] | undefined {
  if (!(r.t >= RELATIVE_TIME_LIMIT && r.t < MAX_TIME)) {
    return [`the time ${r.t} is outside what is stored: ${RELATIVE_TIME_LIMIT} (1978-07-04) to ${MAX_TIME} (the year 10000) seconds since the epoch`, 't'];
  }
  if (r.n.length > MAX_NAME_LENGTH) return [`a name has at most ${MAX_NAME_LENGTH} characters, this one ${r.n.length}`, 'n'];
  if (r.u !== undefined && (r.u.length > MAX_UNIT_LENGTH || r.u.includes('\u0000')))
    return [`a unit has at most ${MAX_UNIT_LENGTH} characters and no U+0000`, 'u'];
  if (r.vs !== undefined && (r.vs.length > MAX_STRING_LENGTH || r.vs.includes('\u0000')))
    return [`a string value has at most ${MAX_STRING_LENGTH} characters and no U+0000`, 'vs'];
  if (r.vd !== undefined && r.vd.length > MAX_DATA_LENGTH) return [`a data value has at most ${MAX_DATA_LENGTH} base64url characters`, 'vd'];
  return undefined;
}

const NAME_RE = /^[A-Za-z0-9][-:./A-Za-z0-9_]*$/;
const NAME_REST_RE = /^[-:./A-Za-z0-9_]*$/;
const BASE64URL_RE = /^[A-Za-z0-9_-]*$/;
const KNOWN = new Set(['bn', 'bt', 'bu', 'bv', 'bs', 'bver', 'n', 'u', 'v', 'vs', 'vb', 'vd', 's', 't', 'ut']);
const FORMAT = 'senml';

export function isValidName(name: string): boolean {
  return NAME_RE.test(name);
}

function fail(reason: string, index: number, field?: string): never {
  throw new CodecError(FORMAT, reason, index, field);
}

// Called with the value read as rec.field (a constant-key load V8 inlines), not rec[field].
function num(x: unknown, field: string, index: number): number | undefined {
  if (x === undefined) return undefined;
  if (typeof x !== 'number' || !Number.isFinite(x)) fail('expected a finite number', index, field);
  return x;
}

function str(x: unknown, field: string, index: number): string | undefined {
  if (x === undefined) return undefined;
  if (typeof x !== 'string') fail('expected a string', index, field);
  return x;
}

/** Fields we do not know are ignored, except those ending in '_' (RFC 8428 section 4.4). */
function checkExtensions(rec: SenMLRecord, index: number): void {
  for (const key in rec) {
    if (key.charCodeAt(key.length - 1) === 95 /* _ */ && !KNOWN.has(key)) {
      fail('unknown field that must be understood', index, key);
    }
  }
}

export interface ResolveOptions {
  /** "now" in seconds since the epoch for relative times; defaults to the clock */
  now?: number;
}

/**
 * Resolves a SenML pack: applies base fields, turns relative times absolute, checks names,
 * values and versions, and orders records by time (stable). Throws CodecError naming the
 * record index and field of the first problem.
 */
export function resolve(pack: unknown, options: ResolveOptions = {}): ResolvedRecord[] {
  if (!Array.isArray(pack)) throw new CodecError(FORMAT, 'a SenML pack must be an array of records');
  if (pack.length === 0) throw new CodecError(FORMAT, 'a SenML pack must hold at least one record');
  const now = options.now ?? Date.now() / 1000;
  const out: ResolvedRecord[] = [];
  let bn = '';
  let bnState = 0; // 0: no base name, 1: a valid name prefix, 2: invalid (so is every name built on it)
  let bt = 0;
  let bu: string | undefined;
  let bv = 0;
  let bs: number | undefined;
  let bver: number | undefined;
  let sorted = true;
  let lastT = -Infinity;

  for (let i = 0; i < pack.length; i++) {
    const rec = pack[i] as SenMLRecord;
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) fail('a record must be an object', i);
    checkExtensions(rec, i);

    const version = num(rec.bver, 'bver', i);
    if (version !== undefined) {
      if (!Number.isInteger(version) || version < 0) fail('expected a non-negative integer', i, 'bver');
      if (version > SENML_VERSION) fail(`version ${version} is newer than ${SENML_VERSION}, which this system understands`, i, 'bver');
      // A record before the first bver is version 10 (the default), so a later bver must agree with
      // it: stamping the earlier records with the later version would misread them.
      const before = bver ?? SENML_VERSION;
      if (i > 0 && version !== before) {
        fail(
          `version ${version} disagrees with version ${before} of the records before it (a record without bver is version ${SENML_VERSION}); a pack has one version`,
          i,
          'bver',
        );
      }
      bver = version;
    }
    const baseName = str(rec.bn, 'bn', i);
    if (baseName !== undefined) {
      bn = baseName;
      bnState = bn === '' ? 0 : NAME_RE.test(bn) ? 1 : 2;
    }
    const baseTime = num(rec.bt, 'bt', i);
    if (baseTime !== undefined) bt = baseTime;
    const baseUnit = str(rec.bu, 'bu', i);
    if (baseUnit !== undefined) bu = baseUnit;
    const baseValue = num(rec.bv, 'bv', i);
    if (baseValue !== undefined) bv = baseValue;
    const baseSum = num(rec.bs, 'bs', i);
    if (baseSum !== undefined) bs = baseSum;

    // A record of base fields only (RFC 8428 section 5.1.7) sets context and yields no reading.
    if (isBaseOnly(rec)) continue;

    // Checked as base name (once) + name part, so bn + n is never flattened just for the regex.
    const part = str(rec.n, 'n', i) ?? '';
    const name = bnState === 0 ? part : bn + part;
    if (name === '') fail('a record needs a name or a base name', i, 'n');
    if (bnState === 0 ? !NAME_RE.test(part) : bnState === 2 || !NAME_REST_RE.test(part))
      fail(`"${name}" is not a valid SenML name (A-Z a-z 0-9 then - : . / _)`, i, 'n');

    let t = bt + (num(rec.t, 't', i) ?? 0);
    if (t < RELATIVE_TIME_LIMIT) t += now;
    if (!Number.isFinite(t)) fail('base time plus time is not a finite number', i, 't');
    const r: ResolvedRecord = { n: name, t };
    const unit = str(rec.u, 'u', i) ?? bu;
    if (unit !== undefined) r.u = unit;

    let values = 0;
    const v = num(rec.v, 'v', i);
    if (v !== undefined) {
      r.v = bv + v;
      if (!Number.isFinite(r.v)) fail('base value plus value is not a finite number', i, 'v');
      values++;
    }
    const vs = str(rec.vs, 'vs', i);
    if (vs !== undefined) {
      r.vs = vs;
      values++;
    }
    const vb = rec.vb;
    if (vb !== undefined) {
      if (typeof vb !== 'boolean') fail('expected a boolean', i, 'vb');
      r.vb = vb;
      values++;
    }
    const vd = str(rec.vd, 'vd', i);
    if (vd !== undefined) {
      r.vd = unpadded(vd, i);
      values++;
    }
    if (values > 1) fail('a record holds exactly one of v, vs, vb, vd', i);
    const s = num(rec.s, 's', i);
    if (s !== undefined || bs !== undefined) {
      r.s = (bs ?? 0) + (s ?? 0);
      if (!Number.isFinite(r.s)) fail('base sum plus sum is not a finite number', i, 's');
    }
    if (values === 0 && r.s === undefined) fail('a record needs one of v, vs, vb, vd or s', i);
    const ut = num(rec.ut, 'ut', i);
    if (ut !== undefined) r.ut = ut;
    const beyond = beyondLimits(r);
    if (beyond) fail(beyond[0], i, beyond[1]);
    if (t < lastT) sorted = false;
    lastT = t;
    out.push(r);
  }
  if (out.length === 0) throw new CodecError(FORMAT, 'the pack holds base fields but no reading');
  if (bver !== undefined && bver !== SENML_VERSION) for (const r of out) r.bver = bver;
  if (!sorted) out.sort((a, b) => a.t - b.t); // Array.prototype.sort is stable
  return out;
}

/**
 * base64url data without its padding: senders should omit it (RFC 8428 section 6) but some write
 * it, so up to two '=' are accepted when they make the length a multiple of 4, and dropped.
 */
function unpadded(vd: string, index: number): string {
  let end = vd.length;
  while (end > 0 && vd.charCodeAt(end - 1) === 61 /* = */) end--;
  const padding = vd.length - end;
  const data = padding === 0 ? vd : vd.slice(0, end);
  if (!BASE64URL_RE.test(data) || data.length % 4 === 1 || (padding > 0 && (padding > 2 || vd.length % 4 !== 0))) {
    fail('expected base64url data (RFC 4648 section 5; padding, if any, to a multiple of 4 characters)', index, 'vd');
  }
  return data;
}

function isBaseOnly(rec: SenMLRecord): boolean {
  return (
    rec.n === undefined &&
    rec.v === undefined &&
    rec.vs === undefined &&
    rec.vb === undefined &&
    rec.vd === undefined &&
    rec.s === undefined &&
    rec.t === undefined &&
    rec.u === undefined &&
    (rec.bn !== undefined || rec.bt !== undefined || rec.bu !== undefined || rec.bv !== undefined || rec.bs !== undefined || rec.bver !== undefined)
  );
}

/**
 * Checks that records are already resolved (the canonical message's payload), as encoders expect.
 * Cheaper than resolve: no base fields may appear at all.
 */
export function validateResolved(records: unknown, format = FORMAT): ResolvedRecord[] {
  if (!Array.isArray(records)) throw new CodecError(format, 'expected an array of resolved SenML records');
  const version = (records[0] as ResolvedRecord | undefined)?.bver;
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as ResolvedRecord;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new CodecError(format, 'a record must be an object', i);
    for (const base of ['bn', 'bt', 'bu', 'bv', 'bs'] as const) {
      if ((r as SenMLRecord)[base] !== undefined) throw new CodecError(format, 'resolved records carry no base fields', i, base);
    }
    if (typeof r.n !== 'string' || !NAME_RE.test(r.n)) throw new CodecError(format, 'expected a valid SenML name', i, 'n');
    if (typeof r.t !== 'number' || !Number.isFinite(r.t) || r.t < RELATIVE_TIME_LIMIT) {
      throw new CodecError(format, 'expected an absolute time in seconds since the epoch', i, 't');
    }
    const values = (r.v !== undefined ? 1 : 0) + (r.vs !== undefined ? 1 : 0) + (r.vb !== undefined ? 1 : 0) + (r.vd !== undefined ? 1 : 0);
    if (values > 1 || (values === 0 && r.s === undefined)) throw new CodecError(format, 'a record holds exactly one of v, vs, vb, vd (or only s)', i);
    if (r.v !== undefined && (typeof r.v !== 'number' || !Number.isFinite(r.v))) throw new CodecError(format, 'expected a finite number', i, 'v');
    if (r.vs !== undefined && typeof r.vs !== 'string') throw new CodecError(format, 'expected a string', i, 'vs');
    if (r.vb !== undefined && typeof r.vb !== 'boolean') throw new CodecError(format, 'expected a boolean', i, 'vb');
    if (r.vd !== undefined && (typeof r.vd !== 'string' || !BASE64URL_RE.test(r.vd))) throw new CodecError(format, 'expected base64url data', i, 'vd');
    if (r.u !== undefined && typeof r.u !== 'string') throw new CodecError(format, 'expected a string', i, 'u');
    if (r.s !== undefined && (typeof r.s !== 'number' || !Number.isFinite(r.s))) throw new CodecError(format, 'expected a finite number', i, 's');
    if (r.ut !== undefined && (typeof r.ut !== 'number' || !Number.isFinite(r.ut))) throw new CodecError(format, 'expected a finite number', i, 'ut');
    if (r.vd !== undefined && r.vd.length % 4 === 1) throw new CodecError(format, 'expected base64url data without padding', i, 'vd');
    const beyond = beyondLimits(r);
    if (beyond) throw new CodecError(format, beyond[0], i, beyond[1]);
    // RFC 8428 section 4.6: bver appears in every resolved record with one value, or in none, and never as 10.
    if (r.bver !== version) throw new CodecError(format, 'bver must be in every resolved record with the same value, or in none', i, 'bver');
    if (version !== undefined && (!Number.isInteger(version) || version < 0 || version >= SENML_VERSION)) {
      throw new CodecError(format, `expected an integer from 0 to ${SENML_VERSION - 1} (version ${SENML_VERSION} is never written)`, i, 'bver');
    }
  }
  return records as ResolvedRecord[];
}
