/**
 * Measurements from the SQL time-series tier (PostgreSQL, PGlite) in one statement that also
 * builds the page's JSON: the database turns each row into its item (seed 004's names, the unit
 * token) and Node only writes the times out (`2022-10-11T16:21:27+00:00`), so it neither parses
 * 1,000 rows into objects nor serialises them again. The answer is the same as readings-model.ts's,
 * which reads any tier (and Elasticsearch): checked item for item by
 * test/integration/api-measurements-sql.test.ts.
 *
 * A measurement is a record `<dev>/<sensor>/<unitType>` with a numeric value and no position unit,
 * so item order is record order (t, name, unit) and the cursor is the last item's record key.
 * It has its own tag: a cursor of the other reader is refused with a 400, as one of another kind.
 */
import type { SqlClient } from '../../db/sql';
import { formatEapiMillis } from '../../codecs/eapi';
import { isoMicros, micros, toMicros } from '../../stores/sql-common';
import { ApiError } from '../operation';
import { sensorIdOf } from './readings-model';

const TAG = 'ms1';

/** Where a time in milliseconds stands in the database's JSON: `"timeStamp":"@<ms>"`. */
const MARK = `'@'`;
const MARKED_TIME = /"timeStamp":"@(-?\d+)"/g;

/**
 * The page with its times written out. The pattern cannot match inside a JSON string: there every
 * `"` is escaped, so `"timeStamp":"@` only occurs as the property the database wrote.
 */
function withTimes(json: string): string {
  // A page's times mostly share their day: its text is made once (formatEapiMillis's form, which
  // the tests compare against), the time of day by arithmetic.
  let day = NaN;
  let dayText = '';
  return json.replace(MARKED_TIME, (_, text: string) => {
    const ms = Number(text);
    const start = Math.floor(ms / DAY_MS) * DAY_MS;
    if (start !== day) {
      day = start;
      dayText = formatEapiMillis(start).slice(0, 11);
    }
    let rest = ms - start;
    const h = Math.floor(rest / 3_600_000);
    rest -= h * 3_600_000;
    const m = Math.floor(rest / 60_000);
    rest -= m * 60_000;
    const sec = Math.floor(rest / 1000);
    const frac = rest - sec * 1000;
    return `"timeStamp":"${dayText}${two(h)}:${two(m)}:${two(sec)}${frac === 0 ? '' : `.${String(frac).padStart(3, '0')}`}+00:00"`;
  });
}
const DAY_MS = 86_400_000;
const two = (n: number) => (n < 10 ? `0${n}` : String(n));

/**
 * One item as JSON text, concatenated (cheaper than json_build_object). The serial, and the sensor
 * id when the query names one sensor, are parameters (every row has them); a device's query works
 * the sensor id out per row. The time is rounded to the millisecond as formatEapiTime does.
 */
function item(v2: boolean, sensorJson: string | undefined, deviceJson: string): string {
  const sid = `split_part(name, '/', 2)`;
  const sensorId =
    sensorJson ??
    `CASE WHEN ${sid} ~ '^[+-]?[0-9]{1,30}$' THEN
      CASE WHEN abs(${sid}::numeric) <= 9007199254740991 THEN ${sid}::numeric::int8::text
           WHEN ${sid}::numeric BETWEEN -9223372036854775808 AND 9223372036854775807 THEN to_json(${sid}::numeric::text)::text
           ELSE to_json(${sid})::text END
    ELSE to_json(${sid})::text END`;
  // Whole milliseconds behind a marker: Node writes them as text (formatting 1,000 times costs the
  // database more than anything else in the item; see withTimes).
  const time = `${MARK} || (extract(epoch FROM date_trunc('milliseconds', t + interval '500 microseconds')) * 1000)::int8::text`;
  // ° escaped: the page stays ASCII, which Node reads from the database and writes to the socket
  // without re-encoding (one '°' would make the whole string two bytes a character).
  const unit = `CASE u WHEN 'Cel' THEN '"\\u00b0C"' WHEN 'degF' THEN '"\\u00b0F"' WHEN '%RH' THEN '"%"' WHEN 'K' THEN '"K"' ELSE to_json(coalesce(u, ''))::text END`;
  let json =
    `'{"sensorId":' || ${sensorId} || ',"deviceId":' || ${deviceJson}` +
    ` || ',"timeStamp":"' || ${time} || '","value":' || v::text || ',"unit":' || ${unit} || ',"unitType":' || to_json(split_part(name, '/', 3))::text`;
  if (v2) json += ` || ',"name":' || to_json(name)::text || CASE WHEN u IS NULL THEN '' ELSE ',"senmlUnit":' || to_json(u)::text END`;
  return `${json} || '}'`;
}

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
 * One page: the JSON text of `{"items":[...], "cursor"?}`; undefined when q.of names no device or
 * sensor sink of the tenant. One statement: it finds the device (and sink) too, so a request costs
 * one round trip to the database.
 */
export async function measurementsPage(db: SqlClient, q: MeasurementQuery): Promise<string | undefined> {
  const params: unknown[] = [q.tenant];
  const p = (value: unknown) => `$${params.push(value)}`;
  let source: string;
  let sensorJson: string | undefined;
  if ('sensorId' in q.of) {
    const id = p(q.of.sensorId);
    source = `SELECT d.serial, d.serial || '/' || ${id} || '/' AS prefix FROM sensors s JOIN devices d ON d.tenant_id = s.tenant_id AND d.id = s.device_id
              WHERE s.tenant_id = $1 AND s.id = ${id}::int8`;
    sensorJson = `${p(JSON.stringify(sensorIdOf(q.of.sensorId)))}::text`;
  } else {
    source = `SELECT serial, serial || '/' AS prefix FROM devices WHERE tenant_id = $1 AND serial = ${p(q.of.serial)}`;
  }
  // Names from the prefix up to the prefix with its last '/' as '0', the next byte: the index range.
  const where = [
    'tenant_id = $1',
    'name >= (SELECT prefix FROM src)',
    `name < (SELECT left(prefix, -1) || '0' FROM src)`,
    'v IS NOT NULL',
    `name ~ '^[^/]+/[^/]+/[^/]+$'`,
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
  // Every name starts with the prefix: its serial (and sensor) are the same on every row.
  const deviceJson = '(SELECT to_json(serial)::text FROM src)';
  const { rows } = await db.query<{ found: boolean; items: string | null; n: number; us: string | null; name: string | null; unit: string | null }>(
    // The row past the page only says whether more follow: its item is not built.
    `WITH src AS (${source})
     SELECT EXISTS (SELECT 1 FROM src) AS found, string_agg(${item(q.v2, sensorJson, deviceJson)}, ',' ORDER BY i) FILTER (WHERE i <= ${limit}) AS items, count(*)::int AS n,
            max(${micros('t')}) FILTER (WHERE i = ${limit}) AS us, max(name) FILTER (WHERE i = ${limit}) AS name,
            max(coalesce(u, '')) FILTER (WHERE i = ${limit}) AS unit
     FROM (SELECT t, name, v, u, row_number() OVER (ORDER BY t, name, coalesce(u, '')) AS i
           FROM (SELECT t, name, v, u FROM readings WHERE ${where.join(' AND ')} ORDER BY t, name, coalesce(u, '') LIMIT ${limit}::int + 1) page) numbered`,
    params,
  );
  const row = rows[0];
  if (!row.found) return undefined;
  const more = row.n > q.limit;
  const cursor = more ? Buffer.from(JSON.stringify([TAG, Number(row.us), row.name, row.unit])).toString('base64url') : undefined;
  return `{"items":[${withTimes(row.items ?? '')}]${cursor ? `,"cursor":"${cursor}"` : ''}}`;
}
