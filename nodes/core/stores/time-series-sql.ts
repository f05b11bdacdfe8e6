/**
 * The time-series tier on PostgreSQL or PGlite (DESIGN.md: "time series (bounded)"), over the
 * readings table (migrations 001 and 002).
 *
 *   append      one statement per batch: COPY … FROM STDIN (FORMAT binary) on PostgreSQL when
 *               given a copier (nodes/core/db/copy.ts) and the batch is big enough, else one
 *               INSERT … SELECT FROM unnest(…) of column arrays (PGlite, small batches). Binary
 *               COPY spares the server parsing numbers and timestamps. Readings the table
 *               cannot hold are refused up front with a reason, so one bad record never fails
 *               the batch (a COPY is all or nothing).
 *   query       a tenant's readings of one name or of a name prefix, in [from, to), in (t, n)
 *               order with the row id as tie-breaker: keyset pagination over (t, n, id) never
 *               skips or repeats a row, however many share (n, t). The cursor is opaque.
 *   dropBefore  retention, across tenants, one short DELETE of at most dropChunk rows at a time.
 *
 * Times are stored as timestamptz, which holds microseconds: t is rounded to the microsecond on
 * the way in and read back as the same number.
 */
import { BinaryCopyWriter, type CopyFrom } from '../db/copy';
import type { SqlClient } from '../db/sql';
import type { ResolvedRecord } from '../model/senml';
import type { AppendResult, Page, RangeQuery, Reading, TimeSeriesStore } from './types';

export const DEFAULT_LIMIT = 1_000;
export const MAX_LIMIT = 10_000;

/** 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z: times outside are refused (ISO 8601 text, used for parameters, writes only these years plainly). */
export const MIN_T = -62_135_596_800;
export const MAX_T = 253_402_300_800;

/**
 * Longest tenant and name (UTF-8 bytes): both are in the btree indexes, whose entries cannot
 * exceed about 2.7 kB. Refusing longer ones up front keeps one such reading from failing its
 * whole batch (and every retry of it).
 */
export const MAX_TENANT_BYTES = 256;
export const MAX_NAME_BYTES = 1_024;

export interface SqlTimeSeriesOptions {
  /** COPY on PostgreSQL: `openCopier(config).copyFrom` for the same database as db. Ignored on PGlite. */
  copyFrom?: CopyFrom;
  /** Batches with at least this many readings go through COPY (which costs one round trip more). Default 100. */
  copyMinRows?: number;
  /** Rows dropBefore deletes per statement. Default 10,000. */
  dropChunk?: number;
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with the long-term store.

/** Seconds to whole microseconds. */
export function toMicros(seconds: number): number {
  return Math.round(seconds * 1e6);
}

/** Whole microseconds since the epoch as ISO 8601 UTC text with six decimals (years 1..9999). */
export function isoMicros(us: number): string {
  let ms: number;
  let micro: number;
  if (Number.isSafeInteger(us)) {
    ms = Math.floor(us / 1000);
    micro = us - ms * 1000;
  } else {
    // Past 2^53 µs (the year 2255) float division is inexact: split the integer exactly.
    const b = BigInt(us);
    let q = b / 1000n;
    let m = b % 1000n;
    if (m < 0n) {
      m += 1000n;
      q -= 1n;
    }
    ms = Number(q);
    micro = Number(m);
  }
  return `${new Date(ms).toISOString().slice(0, 23)}${micro < 10 ? '00' : micro < 100 ? '0' : ''}${micro}Z`;
}

/** Whether whole microseconds us fall within the years 1..9999. */
export function inRangeMicros(us: number): boolean {
  return us >= MIN_T * 1e6 && us < MAX_T * 1e6;
}

/** The SQL that reads a timestamptz column back as whole microseconds since the epoch (int8). */
export const micros = (column: string) => `(extract(epoch FROM ${column}) * 1000000)::int8`;

/** int8 microseconds from a row (a bigint past 2^53) to seconds. */
export function secondsOf(us: unknown): number {
  return Number(us) / 1e6;
}

/** A LIKE pattern matching every text that starts with prefix: %, _ and \ in it are literal. */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
}

export function checkTenant(tenant: unknown): string {
  if (typeof tenant !== 'string' || tenant === '') throw new TypeError('tenant must be a non-empty string');
  return tenant;
}

/** A checked RangeQuery: tenant, exactly one of name/prefix, finite times, limit 1..10000. */
export interface CheckedQuery {
  tenant: string;
  name?: string;
  prefix?: string;
  /** Microseconds, clamped to the years the table can hold; undefined: unbounded. */
  fromUs?: number;
  toUs?: number;
  /** True when the range cannot hold anything (to ≤ from, or entirely outside the years 1..9999). */
  empty: boolean;
  limit: number;
}

export function checkQuery(query: RangeQuery): CheckedQuery {
  if (query === null || typeof query !== 'object') throw new TypeError('query must be an object');
  const tenant = checkTenant(query.tenant);
  const { name, prefix } = query;
  if ((name === undefined) === (prefix === undefined)) throw new TypeError('query needs exactly one of name and prefix');
  if (name !== undefined && typeof name !== 'string') throw new TypeError('query.name must be a string');
  if (prefix !== undefined && typeof prefix !== 'string') throw new TypeError('query.prefix must be a string');
  const limit = query.limit ?? DEFAULT_LIMIT;
  if (!(Number.isInteger(limit) && limit >= 1 && limit <= MAX_LIMIT)) {
    throw new RangeError(`limit must be an integer within 1..${MAX_LIMIT}, got ${String(query.limit)}`);
  }
  for (const key of ['from', 'to'] as const) {
    const value = query[key];
    if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value))) throw new RangeError(`query.${key} must be a finite number of seconds`);
  }
  const checked: CheckedQuery = { tenant, limit, empty: false };
  if (name !== undefined) checked.name = name;
  else checked.prefix = prefix;
  const { from, to } = query;
  if (from !== undefined && from > MIN_T) {
    if (from >= MAX_T) checked.empty = true;
    else checked.fromUs = toMicros(from);
  }
  if (to !== undefined && to < MAX_T) {
    if (to <= MIN_T) checked.empty = true;
    else checked.toUs = toMicros(to);
  }
  if (checked.fromUs !== undefined && checked.toUs !== undefined && checked.toUs <= checked.fromUs) checked.empty = true;
  // No stored text holds U+0000 (PostgreSQL refuses it, append rejects it): nothing can match.
  if (!storableText(tenant) || !storableText(name ?? prefix)) checked.empty = true;
  return checked;
}

/** An opaque cursor: base64url of a JSON array starting with the store's tag. */
export function encodeCursor(tag: string, values: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify([tag, ...values])).toString('base64url');
}

/** The values of a cursor encodeCursor made with tag and these value types; RangeError otherwise. */
export function decodeCursor(tag: string, cursor: string, types: readonly ('string' | 'integer')[]): (string | number)[] {
  let parsed: unknown;
  try {
    parsed = typeof cursor === 'string' && /^[A-Za-z0-9_-]+$/.test(cursor) ? JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) : undefined;
  } catch {
    parsed = undefined;
  }
  const ok =
    Array.isArray(parsed) &&
    parsed.length === types.length + 1 &&
    parsed[0] === tag &&
    types.every((type, i) => (type === 'string' ? typeof parsed[i + 1] === 'string' : Number.isInteger(parsed[i + 1])));
  if (!ok) throw new RangeError('cursor is not one this store returned');
  return (parsed as (string | number)[]).slice(1);
}

/** A text the database can store: PostgreSQL text cannot hold U+0000. */
export function storableText(value: unknown): value is string {
  return typeof value === 'string' && !value.includes('\u0000');
}

// ---------------------------------------------------------------------------------------------

const COLUMNS = 'tenant_id, name, t, v, vs, vb, vd, s, u, ut, bver';
const COPY_SQL = `COPY readings (${COLUMNS}) FROM STDIN (FORMAT binary)`;
const INSERT_SQL = `INSERT INTO readings (${COLUMNS})
  SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[], $6::bool[], $7::text[],
                       $8::float8[], $9::text[], $10::float8[], $11::int4[])`;
const SELECT = `SELECT name, ${micros('t')} AS us, id, v, vs, vb, vd, s, u, ut, bver FROM readings`;
const CURSOR_TAG = 'r1';

interface Row {
  name: string;
  us: number | bigint;
  id: number | bigint;
  v: number | null;
  vs: string | null;
  vb: boolean | null;
  vd: string | null;
  s: number | null;
  u: string | null;
  ut: number | null;
  bver: number | null;
}

const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Why the readings table cannot hold this reading, or undefined when it can. */
export function unstorable(reading: Reading): string | undefined {
  if (reading === null || typeof reading !== 'object') return 'a reading must be an object';
  if (!storableText(reading.tenant) || reading.tenant === '') return 'tenant must be a non-empty string without U+0000';
  if (Buffer.byteLength(reading.tenant) > MAX_TENANT_BYTES) return `tenant is longer than ${MAX_TENANT_BYTES} bytes`;
  const r = reading.record;
  if (r === null || typeof r !== 'object') return 'record must be an object';
  if (!storableText(r.n) || r.n === '') return 'n must be a non-empty string without U+0000';
  if (r.n.length > MAX_NAME_BYTES / 3 && Buffer.byteLength(r.n) > MAX_NAME_BYTES) return `n is longer than ${MAX_NAME_BYTES} bytes`;
  if (!finite(r.t)) return 't must be a finite number of seconds';
  if (!(r.t >= MIN_T && r.t < MAX_T)) return 't must fall within the years 1 to 9999';
  let values = 0;
  if (r.v !== undefined) {
    if (!finite(r.v)) return 'v must be a finite number';
    values++;
  }
  if (r.vs !== undefined) {
    if (!storableText(r.vs)) return 'vs must be a string without U+0000';
    values++;
  }
  if (r.vb !== undefined) {
    if (typeof r.vb !== 'boolean') return 'vb must be a boolean';
    values++;
  }
  if (r.vd !== undefined) {
    if (!storableText(r.vd)) return 'vd must be a string without U+0000';
    values++;
  }
  if (values > 1) return 'a record holds at most one of v, vs, vb, vd';
  if (r.s !== undefined && !finite(r.s)) return 's must be a finite number';
  if (values === 0 && r.s === undefined) return 'a record needs one of v, vs, vb, vd or s';
  if (r.u !== undefined && !storableText(r.u)) return 'u must be a string without U+0000';
  if (r.ut !== undefined && !finite(r.ut)) return 'ut must be a finite number';
  if (r.bver !== undefined && !(Number.isInteger(r.bver) && r.bver >= 0 && r.bver <= 2 ** 31 - 1)) return 'bver must be a non-negative integer';
  return undefined;
}

/** COPY binary data for checked readings, streamed in chunks of about 64 kB as they are encoded. */
function* copyChunks(readings: readonly Reading[]): Generator<Buffer> {
  const w = new BinaryCopyWriter();
  const text = (x: string | undefined) => (x === undefined ? w.null() : w.text(x));
  const float8 = (x: number | undefined) => (x === undefined ? w.null() : w.float8(x));
  for (const { tenant, record: r } of readings) {
    w.row(11);
    w.text(tenant);
    w.text(r.n);
    w.timestamptz(toMicros(r.t));
    float8(r.v);
    text(r.vs);
    if (r.vb === undefined) w.null();
    else w.bool(r.vb);
    text(r.vd);
    float8(r.s);
    text(r.u);
    float8(r.ut);
    if (r.bver === undefined) w.null();
    else w.int4(r.bver);
    if (w.ready) yield* w.take();
  }
  w.end();
  yield* w.take();
}

/** The parameters of INSERT_SQL: one array per column. */
function insertParams(readings: readonly Reading[]): unknown[][] {
  const cols: unknown[][] = Array.from({ length: 11 }, () => new Array<unknown>(readings.length));
  readings.forEach(({ tenant, record: r }, i) => {
    cols[0][i] = tenant;
    cols[1][i] = r.n;
    cols[2][i] = isoMicros(toMicros(r.t));
    cols[3][i] = r.v ?? null;
    cols[4][i] = r.vs ?? null;
    cols[5][i] = r.vb ?? null;
    cols[6][i] = r.vd ?? null;
    cols[7][i] = r.s ?? null;
    cols[8][i] = r.u ?? null;
    cols[9][i] = r.ut ?? null;
    cols[10][i] = r.bver ?? null;
  });
  return cols;
}

function record(row: Row): ResolvedRecord {
  const r: ResolvedRecord = { n: row.name, t: secondsOf(row.us) };
  if (row.u !== null) r.u = row.u;
  if (row.v !== null) r.v = row.v;
  if (row.vs !== null) r.vs = row.vs;
  if (row.vb !== null) r.vb = row.vb;
  if (row.vd !== null) r.vd = row.vd;
  if (row.s !== null) r.s = row.s;
  if (row.ut !== null) r.ut = row.ut;
  if (row.bver !== null) r.bver = row.bver;
  return r;
}

function positiveInt(name: string, value: number): number {
  if (!(Number.isInteger(value) && value >= 1)) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

export function createSqlTimeSeries(db: SqlClient, options: SqlTimeSeriesOptions = {}): TimeSeriesStore {
  const copyFrom = db.kind === 'postgres' ? options.copyFrom : undefined;
  const copyMinRows = positiveInt('copyMinRows', options.copyMinRows ?? 100);
  const dropChunk = positiveInt('dropChunk', options.dropChunk ?? 10_000);
  let closed = false;
  const open = () => {
    if (closed) throw new Error('time-series store is closed');
  };

  async function append(readings: readonly Reading[]): Promise<AppendResult> {
    open();
    const good: Reading[] = [];
    const rejected: AppendResult['rejected'] = [];
    for (const reading of readings) {
      const reason = unstorable(reading);
      if (reason === undefined) good.push(reading);
      else rejected.push({ reading, reason });
    }
    if (good.length === 0) return { written: 0, rejected };
    let written: number;
    if (copyFrom && good.length >= copyMinRows) {
      written = await copyFrom(COPY_SQL, copyChunks(good));
    } else {
      written = (await db.query(INSERT_SQL, insertParams(good))).rowCount;
    }
    return { written, rejected };
  }

  async function query(query: RangeQuery): Promise<Page<ResolvedRecord>> {
    open();
    const q = checkQuery(query);
    if (q.empty) return { items: [] };
    const params: unknown[] = [q.tenant];
    const p = (value: unknown) => `$${params.push(value)}`;
    const where = ['tenant_id = $1'];
    const byName = q.name !== undefined;
    if (byName) where.push(`name = ${p(q.name)}`);
    else if (q.prefix) where.push(`name >= ${p(q.prefix)}`, `name LIKE ${p(likePrefix(q.prefix))}`);
    if (q.fromUs !== undefined) where.push(`t >= ${p(isoMicros(q.fromUs))}::timestamptz`);
    if (q.toUs !== undefined) where.push(`t < ${p(isoMicros(q.toUs))}::timestamptz`);
    if (query.cursor !== undefined) {
      const [us, name, id] = decodeCursor(CURSOR_TAG, query.cursor, ['integer', 'string', 'string']);
      if (!/^-?\d{1,19}$/.test(id as string) || !inRangeMicros(us as number)) throw new RangeError('cursor is not one this store returned');
      const t = `${p(isoMicros(us as number))}::timestamptz`;
      // Row comparisons that match the index columns in order, so the index starts at the cursor.
      if (byName) where.push(`(t, id) > (${t}, ${p(id)}::int8)`);
      else where.push(`(t, name, id) > (${t}, ${p(name)}, ${p(id)}::int8)`);
    }
    const order = byName ? 't, id' : 't, name, id';
    const { rows } = await db.query<Row>(`${SELECT} WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ${p(q.limit + 1)}`, params);
    const more = rows.length > q.limit;
    if (more) rows.length = q.limit;
    const page: Page<ResolvedRecord> = { items: rows.map(record) };
    if (more) {
      const last = rows[rows.length - 1];
      page.cursor = encodeCursor(CURSOR_TAG, [Number(last.us), last.name, String(last.id)]);
    }
    return page;
  }

  async function dropBefore(cutoff: number): Promise<number> {
    open();
    if (!(typeof cutoff === 'number' && Number.isFinite(cutoff))) throw new RangeError('cutoff must be a finite number of seconds');
    if (cutoff <= MIN_T) return 0;
    const before = cutoff >= MAX_T ? 'infinity' : isoMicros(toMicros(cutoff));
    let total = 0;
    for (;;) {
      // One short statement (and transaction) per chunk: never one huge DELETE holding its locks and WAL.
      const { rowCount } = await db.query(
        `DELETE FROM readings WHERE ctid = ANY (ARRAY(SELECT ctid FROM readings WHERE t < $1::timestamptz LIMIT $2))`,
        [before, dropChunk],
      );
      total += rowCount;
      if (rowCount < dropChunk || closed) return total;
    }
  }

  return {
    kind: db.kind,
    append,
    query,
    dropBefore,
    // The store opened nothing: whoever opened db (and the copier) closes them.
    close: async () => void (closed = true),
  };
}
