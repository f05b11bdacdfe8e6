/**
 * What the SQL time-series and long-term stores share: the time range and text the tables can
 * hold, microsecond times, checked queries, name prefixes; and the opaque cursors every SQL store
 * pages with (the business store's too).
 */
import { MAX_NAME_LENGTH, MAX_TIME } from '../model/senml';
import type { RangeQuery } from './types';

export const DEFAULT_LIMIT = 1_000;
export const MAX_LIMIT = 10_000;

/**
 * 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z: what the tables hold (ISO 8601 text, used for
 * parameters, writes only these years plainly). The canonical model refuses later times at the
 * door (MAX_TIME); earlier ones bound queries.
 */
export const MIN_T = -62_135_596_800;
export const MAX_T = MAX_TIME;

/**
 * Longest tenant and name (UTF-8 bytes): both are in the btree indexes, whose entries cannot
 * exceed about 2.7 kB. Refusing longer ones up front keeps one such reading from failing its
 * whole batch (and every retry of it).
 */
export const MAX_TENANT_BYTES = 256;
export const MAX_NAME_BYTES = MAX_NAME_LENGTH; // a SenML name is ASCII: one byte a character

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
