/**
 * The long-term tier on PostgreSQL or PGlite: hour and day rollups of numeric readings, in the
 * rollups table (migrations 001 and 002).
 *
 *   add    folds a batch's numeric (v) records into their UTC hour and day buckets. The batch is
 *          aggregated here first, one row per (tenant, name, size, bucket): INSERT … ON CONFLICT
 *          DO UPDATE may touch a row only once per statement. Then ONE upsert per batch adds
 *          count and sum, widens min and max, and keeps `last` from the later of the two by time
 *          (a late, older record does not replace it; on equal times the newer write wins).
 *          Rows go in one fixed order, so two instances folding overlapping batches at once
 *          lock rows in the same order and do not deadlock.
 *          addRollups is that fold on its own, for the time-series store to run in the transaction
 *          that stores the readings (only the new ones then count).
 *   query  a tenant's rollups of one size, one name or a name prefix, buckets in [from, to),
 *          in (bucket, n) order; (bucket, n) is unique, so it is the keyset itself.
 *
 * Buckets are UTC: floor(t / 3600) · 3600 and floor(t / 86400) · 86400 seconds, which is what
 * date_trunc('hour' | 'day', t AT TIME ZONE 'UTC') gives (the epoch has no leap seconds). t is
 * first rounded to the microsecond, as the time-series store stores it.
 */
import type { SqlClient } from '../db/sql';
import {
  checkQuery,
  decodeCursor,
  encodeCursor,
  inRangeMicros,
  isoMicros,
  likePrefix,
  MAX_NAME_BYTES,
  MAX_T,
  MAX_TENANT_BYTES,
  micros,
  MIN_T,
  secondsOf,
  storableText,
  toMicros,
} from './sql-common';
import type { LongTermStore, Page, RangeQuery, Reading, Rollup, RollupSize } from './types';

const HOUR_US = 3_600_000_000;
const DAY_US = 86_400_000_000;
const CURSOR_TAG = 'u1';

const UPSERT_SQL = `INSERT INTO rollups AS r (tenant_id, name, size, bucket, count, min, max, sum, last, last_t)
  SELECT x.tenant_id, x.name, x.size, x.bucket, x.count, x.min, x.max, x.sum, x.last, x.last_t
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[], $6::float8[], $7::float8[], $8::float8[],
              $9::float8[], $10::timestamptz[])
       WITH ORDINALITY AS x(tenant_id, name, size, bucket, count, min, max, sum, last, last_t, ord)
  ORDER BY x.ord
  ON CONFLICT (tenant_id, name, size, bucket) DO UPDATE SET
    count  = r.count + excluded.count,
    min    = least(r.min, excluded.min),
    max    = greatest(r.max, excluded.max),
    sum    = coalesce(r.sum, 0) + excluded.sum,
    last   = CASE WHEN r.last_t IS NULL OR excluded.last_t >= r.last_t THEN excluded.last ELSE r.last END,
    last_t = greatest(r.last_t, excluded.last_t)`;

interface Acc {
  key: string;
  tenant: string;
  name: string;
  size: RollupSize;
  bucketUs: number;
  count: number;
  min: number;
  max: number;
  sum: number;
  last: number;
  lastUs: number;
}

interface Row {
  name: string;
  bucket_us: number | bigint;
  count: number | bigint;
  min: number | null;
  max: number | null;
  sum: number | null;
  last: number | null;
  last_us: number | bigint | null;
}

/** Start of the UTC bucket holding us (exact: % on doubles is). */
function bucketOf(us: number, size: number): number {
  return us - (((us % size) + size) % size);
}

/** The batch's numeric readings folded into one accumulator per (tenant, name, size, bucket), in key order. */
export function preAggregate(readings: readonly Reading[]): { rows: Acc[]; folded: number } {
  const accs = new Map<string, Acc>();
  let folded = 0;
  for (const reading of readings) {
    const r = reading?.record;
    if (!r || typeof r.v !== 'number' || !Number.isFinite(r.v)) continue; // only numeric records fold
    if (!storableText(reading.tenant) || reading.tenant === '' || Buffer.byteLength(reading.tenant) > MAX_TENANT_BYTES) continue;
    if (!storableText(r.n) || r.n === '' || Buffer.byteLength(r.n) > MAX_NAME_BYTES) continue;
    if (!(typeof r.t === 'number' && r.t >= MIN_T && r.t < MAX_T)) continue;
    const us = toMicros(r.t);
    folded++;
    for (const [size, span] of [
      ['hour', HOUR_US],
      ['day', DAY_US],
    ] as const) {
      const bucketUs = bucketOf(us, span);
      const key = `${reading.tenant}\u0000${r.n}\u0000${size}\u0000${bucketUs}`;
      const acc = accs.get(key);
      if (!acc) {
        accs.set(key, { key, tenant: reading.tenant, name: r.n, size, bucketUs, count: 1, min: r.v, max: r.v, sum: r.v, last: r.v, lastUs: us });
        continue;
      }
      acc.count++;
      if (r.v < acc.min) acc.min = r.v;
      if (r.v > acc.max) acc.max = r.v;
      acc.sum += r.v;
      if (us >= acc.lastUs) {
        acc.last = r.v;
        acc.lastUs = us;
      }
    }
  }
  // Any fixed total order does: concurrent upserts then take their row locks in the same order.
  const rows = [...accs.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { rows, folded };
}

function checkSize(size: unknown): RollupSize {
  if (size !== 'hour' && size !== 'day') throw new RangeError(`size must be 'hour' or 'day', got ${String(size)}`);
  return size;
}

/**
 * Folds the numeric readings into their rollups with one upsert, on db or inside a transaction
 * (the time-series store calls it with the new readings of its own transaction). Returns how
 * many readings were folded.
 */
export async function addRollups(db: SqlClient, readings: readonly Reading[]): Promise<number> {
  const { rows, folded } = preAggregate(readings);
  if (rows.length === 0) return 0;
  await db.query(UPSERT_SQL, [
    rows.map((a) => a.tenant),
    rows.map((a) => a.name),
    rows.map((a) => a.size),
    rows.map((a) => isoMicros(a.bucketUs)),
    rows.map((a) => a.count),
    rows.map((a) => a.min),
    rows.map((a) => a.max),
    rows.map((a) => a.sum),
    rows.map((a) => a.last),
    rows.map((a) => isoMicros(a.lastUs)),
  ]);
  return folded;
}

export function createSqlLongTerm(db: SqlClient): LongTermStore {
  const add = (readings: readonly Reading[]) => addRollups(db, readings);

  async function query(query: RangeQuery & { size: RollupSize }): Promise<Page<Rollup>> {
    const q = checkQuery(query);
    const size = checkSize(query.size);
    if (q.empty) return { items: [] };
    const params: unknown[] = [q.tenant, size];
    const p = (value: unknown) => `$${params.push(value)}`;
    const where = ['tenant_id = $1', 'size = $2'];
    const byName = q.name !== undefined;
    if (byName) where.push(`name = ${p(q.name)}`);
    else if (q.prefix) where.push(`name >= ${p(q.prefix)}`, `name LIKE ${p(likePrefix(q.prefix))}`);
    if (q.fromUs !== undefined) where.push(`bucket >= ${p(isoMicros(q.fromUs))}::timestamptz`);
    if (q.toUs !== undefined) where.push(`bucket < ${p(isoMicros(q.toUs))}::timestamptz`);
    if (query.cursor !== undefined) {
      const [us, name] = decodeCursor(CURSOR_TAG, query.cursor, ['integer', 'string']);
      if (!inRangeMicros(us as number)) throw new RangeError('cursor is not one this store returned');
      const bucket = `${p(isoMicros(us as number))}::timestamptz`;
      if (byName) where.push(`bucket > ${bucket}`);
      else where.push(`(bucket, name) > (${bucket}, ${p(name)})`);
    }
    const { rows } = await db.query<Row>(
      `SELECT name, ${micros('bucket')} AS bucket_us, count, min, max, sum, last, ${micros('last_t')} AS last_us
       FROM rollups WHERE ${where.join(' AND ')} ORDER BY bucket, name LIMIT ${p(q.limit + 1)}`,
      params,
    );
    const more = rows.length > q.limit;
    if (more) rows.length = q.limit;
    const items = rows.map((row): Rollup => {
      const count = Number(row.count);
      const sum = row.sum ?? 0;
      return {
        n: row.name,
        size,
        bucket: secondsOf(row.bucket_us),
        count,
        min: row.min ?? NaN,
        max: row.max ?? NaN,
        sum,
        avg: count > 0 ? sum / count : NaN,
        last: row.last ?? NaN,
        lastT: row.last_us === null ? NaN : secondsOf(row.last_us),
      };
    });
    const page: Page<Rollup> = { items };
    if (more) {
      const last = rows[rows.length - 1];
      page.cursor = encodeCursor(CURSOR_TAG, [Number(last.bucket_us), last.name]);
    }
    return page;
  }

  return { add, query };
}
