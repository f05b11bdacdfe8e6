/**
 * Queries as they arrive in a message (msg.query), checked and turned into a RangeQuery.
 * Times are seconds since the epoch or ISO 8601 text; every error names the field.
 */
import { parseIsoTime } from '../codecs/time';
import type { RangeQuery, RollupSize } from './types';

export class QueryError extends Error {
  override readonly name = 'QueryError';
}

export const MAX_LIMIT = 10_000;
export const DEFAULT_LIMIT = 1_000;

function time(field: string, value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value.getTime() / 1000;
  if (typeof value === 'string') {
    if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value);
    const t = parseIsoTime(value.trim());
    if (!Number.isNaN(t)) return t;
  }
  throw new QueryError(`query.${field} must be seconds since the epoch or an ISO 8601 time, got ${JSON.stringify(value)}`);
}

function text(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new QueryError(`query.${field} must be text`);
  return value;
}

/** Checks the common fields: exactly one of name and prefix, a time range, a limit and a cursor. */
export function parseRangeQuery(tenant: string, input: unknown): RangeQuery {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new QueryError('msg.query must be an object');
  const q = input as Record<string, unknown>;
  const name = text('name', q.name);
  const prefix = text('prefix', q.prefix);
  if ((name === undefined) === (prefix === undefined)) throw new QueryError('query needs exactly one of name and prefix');
  const from = time('from', q.from);
  const to = time('to', q.to);
  if (from !== undefined && to !== undefined && to < from) throw new QueryError('query.to is before query.from');
  let limit: number | undefined;
  if (q.limit !== undefined) {
    limit = Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new QueryError(`query.limit must be an integer within 1..${MAX_LIMIT}`);
  }
  const query: RangeQuery = { tenant, ...(name !== undefined ? { name } : { prefix }) };
  if (from !== undefined) query.from = from;
  if (to !== undefined) query.to = to;
  if (limit !== undefined) query.limit = limit;
  const cursor = text('cursor', q.cursor);
  if (cursor) query.cursor = cursor;
  return query;
}

export function parseRollupSize(value: unknown): RollupSize {
  if (value === undefined || value === 'hour') return 'hour';
  if (value === 'day') return 'day';
  throw new QueryError(`query.size must be "hour" or "day", got ${JSON.stringify(value)}`);
}
