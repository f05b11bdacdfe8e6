/**
 * Measurements from the SQL time-series tier (PostgreSQL, PGlite) in one statement that finds the
 * device (or sensor sink) and returns the page's rows as one compact text, which
 * measurements-page.ts writes out as the items' JSON bytes: Node neither parses 1,000 rows into
 * objects nor serialises them again. The answer is the same as readings-model.ts's,
 * which reads any tier (and Elasticsearch): checked item for item by
 * test/integration/api-measurements-sql.test.ts.
 *
 * A measurement is a record `<dev>/<sensor>/<unitType>` with a numeric value and no position unit,
 * so item order is record order (t, name, unit) and the cursor is the last item's record key.
 * It has its own tag: a cursor of the other reader is refused with a 400, as one of another kind.
 */
import type { SqlClient } from '../../db/sql';
import { isoMicros, micros, toMicros } from '../../stores/sql-common';
import { ApiError } from '../operation';
import { writeItems } from './measurements-page';
import { sensorIdOf } from './readings-model';

const TAG = 'ms1';

export interface MeasurementQuery {
  tenant: string;
  /** A device's readings (`<serial>/`), or one sensor sink's by its id (found in the same statement). */
  of: { serial: string } | { sensorId: string };
  from?: number;
  to?: number;
  limit: number;
  cursor?: string;
  v2: boolean;
}

function decodeCursor(cursor: string): [number, string, string] {
  let v: unknown;
  try {
    v = cursor.length <= 2000 && /^[A-Za-z0-9_-]+$/.test(cursor) ? JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) : undefined;
  } catch {
    v = undefined;
  }
  if (!Array.isArray(v) || v.length !== 4 || v[0] !== TAG || !Number.isSafeInteger(v[1]) || typeof v[2] !== 'string' || typeof v[3] !== 'string') {
    throw new ApiError('invalid-request', 'cursor is not one a measurements query returned', 'cursor');
  }
  return [v[1], v[2], v[3]];
}

/**
 * One page: the JSON of `{"items":[...], "cursor"?}` as UTF-8; undefined when q.of names no device or
 * sensor sink of the tenant. One statement: it finds the device (and sink) too, so a request costs
 * one round trip to the database.
 */
export async function measurementsPage(db: SqlClient, q: MeasurementQuery): Promise<Buffer | undefined> {
  const params: unknown[] = [q.tenant];
  const p = (value: unknown) => `$${params.push(value)}`;
  let source: string;
  let sensorJson: string | undefined;
  if ('sensorId' in q.of) {
    const id = p(q.of.sensorId);
    source = `SELECT d.serial, d.serial || '/' || ${id} || '/' AS prefix FROM sensors s JOIN devices d ON d.tenant_id = s.tenant_id AND d.id = s.device_id
              WHERE s.tenant_id = $1 AND s.id = ${id}::int8`;
    sensorJson = JSON.stringify(sensorIdOf(q.of.sensorId));
  } else {
    source = `SELECT serial, serial || '/' AS prefix FROM devices WHERE tenant_id = $1 AND serial = ${p(q.of.serial)}`;
  }
  // Names from the prefix up to the prefix with its last '/' as '0', the next byte: the index range.
  const where = [
    'tenant_id = $1',
    'name >= (SELECT prefix FROM src)',
    `name < (SELECT left(prefix, -1) || '0' FROM src)`,
    'v IS NOT NULL',
    // `<dev>/<sensor>/<unitType>`, no part empty: as the pattern ^[^/]+/[^/]+/[^/]+$, at a fraction of its cost.
    `name LIKE '%_/_%/_%'`,
    `name NOT LIKE '%/%/%/%'`,
    `coalesce(u, '') NOT IN ('lat', 'lon')`,
    `NOT (u = 'm' AND split_part(name, '/', 3) = 'accuracy')`,
  ];
  if (q.from !== undefined) where.push(`t >= ${p(isoMicros(toMicros(q.from)))}::timestamptz`);
  if (q.to !== undefined) where.push(`t < ${p(isoMicros(toMicros(q.to)))}::timestamptz`);
  if (q.cursor !== undefined) {
    const [us, name, unit] = decodeCursor(q.cursor);
    where.push(`(t, name, coalesce(u, '')) > (${p(isoMicros(us))}::timestamptz, ${p(name)}, ${p(unit)})`);
  }
  const limit = p(q.limit);
  // The rows as measurements-page.ts reads them (lengths delimit the texts). The page's order is
  // the subquery's: a plain aggregate takes its rows as the LIMITed subquery gives them, which
  // saves the aggregate a sort of its own (test/integration/api-measurements-sql.test.ts compares
  // the order on PostgreSQL and PGlite). The row past the page only says whether more follow.
  const record = `${micros('t')}::text || ',' || v::text || ',' || coalesce(octet_length(u)::text || ':' || u, '-') || ',' || octet_length(name)::text || ':' || name`;
  const { rows } = await db.query<{ serial: string | null; records: string | null }>(
    `WITH src AS (${source})
     SELECT (SELECT serial FROM src) AS serial, string_agg(record, '') AS records
     FROM (SELECT ${record} AS record FROM readings WHERE ${where.join(' AND ')} ORDER BY t, name, coalesce(u, '') LIMIT ${limit}::int + 1) page`,
    params,
  );
  const { serial, records } = rows[0];
  if (serial === null) return undefined;
  const page = writeItems(records ?? '', q.limit, JSON.stringify(serial), sensorJson, q.v2);
  const cursor =
    page.records > q.limit && page.last ? Buffer.from(JSON.stringify([TAG, page.last.us, page.last.name, page.last.unit])).toString('base64url') : undefined;
  return Buffer.concat([Buffer.from('{"items":['), page.items, Buffer.from(`]${cursor ? `,"cursor":"${cursor}"` : ''}}`)]);
}
