/**
 * The operator dashboard's readings: the latest value of every name (the short-term tier when
 * there is one, else the last value of each name's newest daily rollup), the names to pick from,
 * and one name's time series or rollups as chart points. Reads go through the stores' own
 * readers (nodes/core/stores), as the REST API's do. Framework-free.
 */
import type { SqlClient } from '../db/sql';
import type { ResolvedRecord } from '../model/senml';
import { parseIsoTime } from '../codecs/time';
import type { LongTermStore, RollupSize, ShortTermStore, TimeSeriesStore } from '../stores/types';

export class OpsInputError extends Error {
  override readonly name = 'OpsInputError';
}

export interface LatestRow {
  name: string;
  value: string | number | boolean;
  unit: string;
  /** ISO 8601 */
  time: string;
}

export const MAX_LATEST = 1000;
/** Points in one chart at most: the oldest of the range come first, the rest is cut. */
export const MAX_POINTS = 5000;
export const DEFAULT_RANGE_SECONDS = 24 * 3600;

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

function valueOf(r: ResolvedRecord): string | number | boolean {
  return r.v ?? r.vs ?? r.vb ?? r.vd ?? r.s ?? '';
}

// The last value of each name's newest daily rollup (numeric names only): the fallback without a cache.
const LATEST_SQL = `SELECT DISTINCT ON (name) name, last, extract(epoch FROM last_t)::float8 AS last_t
  FROM rollups WHERE tenant_id = $1 AND size = 'day' AND last_t IS NOT NULL
  ORDER BY name, bucket DESC LIMIT $2`;

/** The latest value of every name of the tenant, in name order. */
export async function latestValues(tenant: string, source: { shortTerm?: ShortTermStore; db: SqlClient }): Promise<LatestRow[]> {
  if (source.shortTerm) {
    const records = await source.shortTerm.latestByPrefix(tenant, '', MAX_LATEST);
    return records.map((r) => ({ name: r.n, value: valueOf(r), unit: r.u ?? '', time: iso(r.t) }));
  }
  const { rows } = await source.db.query<{ name: string; last: number; last_t: number }>(LATEST_SQL, [tenant, MAX_LATEST]);
  return rows.map((r) => ({ name: r.name, value: r.last, unit: '', time: iso(r.last_t) }));
}

/** The numeric names of the tenant (those with rollups), for a dropdown. */
export async function sensorNames(db: SqlClient, tenant: string): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(`SELECT DISTINCT name FROM rollups WHERE tenant_id = $1 AND size = 'day' ORDER BY name LIMIT $2`, [
    tenant,
    MAX_LATEST,
  ]);
  return rows.map((r) => r.name);
}

export interface SeriesRequest {
  sensor: string;
  /** Seconds since the epoch. */
  from: number;
  to: number;
  /** Absent: the readings themselves. */
  rollup?: RollupSize;
}

/** A point of a ui-chart line: x in ms, y the value, series its line. */
export interface ChartPoint {
  x: number;
  y: number;
  series: string;
}

function seconds(field: string, value: unknown, fallback: number): number {
  if (value === undefined || value === null || value === '') return fallback;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string') {
    const t = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : parseIsoTime(value.trim());
    if (!Number.isNaN(t)) return t;
  }
  throw new OpsInputError(`payload.${field} must be seconds since the epoch or an ISO 8601 time, got ${JSON.stringify(value)}`);
}

/** Checks msg.payload of a "series" request: {sensor, from?, to?, rollup?: 'hour' | 'day'}; the range defaults to the last 24 hours. */
export function parseSeriesRequest(payload: unknown, nowSeconds: number): SeriesRequest {
  const p = (typeof payload === 'string' ? { sensor: payload } : payload) as Record<string, unknown> | null;
  if (!p || typeof p !== 'object' || Array.isArray(p)) throw new OpsInputError('payload must be {sensor, from, to, rollup}');
  if (typeof p.sensor !== 'string' || p.sensor === '') throw new OpsInputError('payload.sensor must name a sensor (a record name)');
  const to = seconds('to', p.to, nowSeconds);
  const from = seconds('from', p.from, to - DEFAULT_RANGE_SECONDS);
  if (to < from) throw new OpsInputError('payload.to is before payload.from');
  const rollup = p.rollup === undefined || p.rollup === '' || p.rollup === 'none' ? undefined : p.rollup;
  if (rollup !== undefined && rollup !== 'hour' && rollup !== 'day')
    throw new OpsInputError(`payload.rollup must be "hour", "day" or "none", got ${JSON.stringify(p.rollup)}`);
  return { sensor: p.sensor, from, to, ...(rollup ? { rollup } : {}) };
}

/**
 * The readings of one name (series = the name), or its rollups as three lines (avg, min, max),
 * oldest first; `truncated` when the range held more than MAX_POINTS.
 */
export async function seriesPoints(
  tenant: string,
  request: SeriesRequest,
  stores: { timeSeries: TimeSeriesStore; longTerm: LongTermStore },
): Promise<{ points: ChartPoint[]; truncated: boolean }> {
  const range = { tenant, name: request.sensor, from: request.from, to: request.to, limit: MAX_POINTS };
  if (request.rollup === undefined) {
    const page = await stores.timeSeries.query(range);
    const points = page.items.filter((r) => typeof r.v === 'number').map((r) => ({ x: Math.round(r.t * 1000), y: r.v!, series: request.sensor }));
    return { points, truncated: page.cursor !== undefined };
  }
  // Rollup buckets start on the hour or day: widen `from` so the bucket holding it is included.
  const step = request.rollup === 'hour' ? 3600 : 86_400;
  const page = await stores.longTerm.query({ ...range, from: Math.floor(request.from / step) * step, size: request.rollup });
  const points: ChartPoint[] = [];
  for (const r of page.items) {
    const x = r.bucket * 1000;
    points.push({ x, y: r.avg, series: 'avg' }, { x, y: r.min, series: 'min' }, { x, y: r.max, series: 'max' });
  }
  return { points, truncated: page.cursor !== undefined };
}
