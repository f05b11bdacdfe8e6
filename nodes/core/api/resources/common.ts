/**
 * What the standard resources share: schema builders (JSON Schema 2020-12), the common
 * parameters and their parsing (every bad one is a 400 naming it), times in seed 004's form
 * (`2022-10-11T16:21:27+00:00`), page limits, the business store's errors as ApiErrors, and the
 * tenant-scoped look-ups of a device by serial and a sensor sink by id (another tenant's is a 404,
 * exactly like one that does not exist). Framework-free.
 */
import { formatEapiTime } from '../../codecs/eapi';
import { parseIsoTime } from '../../codecs/time';
import { BusinessError, createBusinessStore, type BusinessRow, type BusinessStore } from '../../stores/business';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../../stores/query';
import { MAX_TIME } from '../../model/senml';
import type { SqlClient } from '../../db/sql';
import { ApiError, type ApiContext, type ApiParameter, type JsonSchema } from '../operation';

// ─── Schemas ──────────────────────────────────────────────────────────────────────────────

/** A closed object: exactly these properties, the required ones always present. */
export function obj(properties: Record<string, JsonSchema>, required: readonly string[] = Object.keys(properties), description?: string): JsonSchema {
  return { type: 'object', ...(description ? { description } : {}), properties, required: [...required], additionalProperties: false };
}

export const str = (description: string, extra: JsonSchema = {}): JsonSchema => ({ type: 'string', description, ...extra });
export const int = (description: string, extra: JsonSchema = {}): JsonSchema => ({ type: 'integer', description, ...extra });
export const num = (description: string): JsonSchema => ({ type: 'number', description });
export const bool = (description: string): JsonSchema => ({ type: 'boolean', description });
export const time = (description: string): JsonSchema => ({ type: 'string', format: 'date-time', description });
export const nullable = (schema: JsonSchema): JsonSchema => ({ ...schema, type: [schema.type as string, 'null'] });
export const arr = (items: JsonSchema, description?: string): JsonSchema => ({ type: 'array', items, ...(description ? { description } : {}) });
export const strings = (description: string): JsonSchema => arr({ type: 'string' }, description);

export const CURSOR_SCHEMA = str('Present when there may be more: pass it as `cursor` to get the next page.');

/** A page: `items` and, when there may be more, `cursor`. */
export const page = (item: JsonSchema, extra: Record<string, JsonSchema> = {}): JsonSchema =>
  obj({ ...extra, items: arr(item), cursor: CURSOR_SCHEMA }, [...Object.keys(extra), 'items']);

/** Merges v2's added properties into a v1 object schema (v1's shape stays frozen). */
export function extend(v1: JsonSchema, added: Record<string, JsonSchema>, requiredAdded: readonly string[] = []): JsonSchema {
  return {
    ...v1,
    properties: { ...(v1.properties as Record<string, JsonSchema>), ...added },
    required: [...(v1.required as string[]), ...requiredAdded],
  };
}

export const ok = (description: string, schema: JsonSchema) => ({ description, schema });

// ─── Parameters ───────────────────────────────────────────────────────────────────────────

export const SERIAL_PARAM: ApiParameter = {
  name: 'serial',
  in: 'path',
  required: true,
  description: "The device's serial number.",
  schema: { type: 'string', minLength: 1 },
};
export const SENSOR_PARAM: ApiParameter = {
  name: 'sensorId',
  in: 'path',
  required: true,
  description: 'The sensor id: one data sink (one run of a sensor, a new one after each device restart).',
  schema: { type: 'string', pattern: '^[0-9]+$' },
};
export const ID_PARAM: ApiParameter = { name: 'id', in: 'path', required: true, description: 'The id.', schema: { type: 'string', pattern: '^[0-9]+$' } };
export const LIMIT_PARAM: ApiParameter = {
  name: 'limit',
  in: 'query',
  description: `Most items in the page (default ${DEFAULT_LIMIT} or the API's page limit when lower; at most the page limit).`,
  schema: { type: 'integer', minimum: 1 },
};
export const CURSOR_PARAM: ApiParameter = { name: 'cursor', in: 'query', description: 'From the previous page, to get the next.', schema: { type: 'string' } };
export const FROM_PARAM: ApiParameter = {
  name: 'from',
  in: 'query',
  description: 'Start of the time range, inclusive: ISO 8601 with an offset (`2022-10-11T16:21:27+00:00`) or seconds since the epoch.',
  schema: { type: 'string' },
};
export const TO_PARAM: ApiParameter = { name: 'to', in: 'query', description: 'End of the time range, exclusive (as `from`).', schema: { type: 'string' } };
export const PAGE_PARAMS = [LIMIT_PARAM, CURSOR_PARAM] as const;

// ─── Parsing ──────────────────────────────────────────────────────────────────────────────

export const invalid = (param: string, detail: string): ApiError => new ApiError('invalid-request', detail, param);

/** The page size: `limit` within 1..max, where max is the API's page limit (or `storeMax`). */
export function pageSize(ctx: ApiContext, storeMax = MAX_LIMIT): number {
  const max = Math.max(1, Math.min(storeMax, ctx.pageLimit ?? storeMax));
  const given = ctx.query.limit;
  if (given === undefined || given === '') return Math.min(DEFAULT_LIMIT, max);
  const n = /^\d+$/.test(given.trim()) ? Number(given) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw invalid('limit', `limit must be an integer from 1 to ${max}, got ${JSON.stringify(given)}`);
  return n;
}

/** A time query parameter: seconds since the epoch, or undefined when absent. */
export function timeParam(ctx: ApiContext, name: 'from' | 'to'): number | undefined {
  const text = ctx.query[name]?.trim();
  if (text === undefined || text === '') return undefined;
  const t = /^\d+(\.\d+)?$/.test(text) ? Number(text) : parseIsoTime(text);
  if (!Number.isFinite(t))
    throw invalid(name, `${name} must be an ISO 8601 time (e.g. 2022-10-11T16:21:27+00:00) or seconds since the epoch, got ${JSON.stringify(text)}`);
  // Past the year 9999 no store can hold a time (a Date of it is invalid): the client's 400, not a 500.
  if (t > MAX_TIME) throw invalid(name, `${name} must be before the year 10000 (at most ${MAX_TIME} seconds since the epoch), got ${JSON.stringify(text)}`);
  return t;
}

/** from and to, checked against each other. */
export function timeRange(ctx: ApiContext): { from?: number; to?: number } {
  const from = timeParam(ctx, 'from');
  const to = timeParam(ctx, 'to');
  if (from !== undefined && to !== undefined && to < from) throw invalid('to', 'to is before from');
  return { from, to };
}

/** A positive integer id from a path parameter, as decimal text. */
export function idParam(ctx: ApiContext, name: string): string {
  const text = ctx.params[name] ?? '';
  if (!/^[0-9]{1,19}$/.test(text) || BigInt(text) < 1n || BigInt(text) > 2n ** 63n - 1n)
    throw invalid(name, `${name} must be a positive integer, got ${JSON.stringify(text)}`);
  return text;
}

export function cursorParam(ctx: ApiContext): string | undefined {
  const c = ctx.query.cursor;
  return c === undefined || c === '' ? undefined : c;
}

/** The body as an object (the framework has lower-cased its property names). */
export function bodyObject(ctx: ApiContext): Record<string, unknown> {
  const b = ctx.body;
  if (b === null || typeof b !== 'object' || Array.isArray(b)) throw invalid('body', 'the request body must be a JSON object');
  return b as Record<string, unknown>;
}

/** Refuses body properties outside `allowed` (400 naming the first). */
export function onlyKnown(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(body)) if (!allowed.includes(k)) throw invalid(k, `unknown property "${k}"; allowed: ${allowed.join(', ')}`);
}

// ─── Values ───────────────────────────────────────────────────────────────────────────────

/** A time in seed 004's form; null stays null. */
export function iso(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  const ms = value instanceof Date ? value.getTime() : typeof value === 'number' ? value * 1000 : Date.parse(String(value));
  return formatEapiTime(ms / 1000);
}

/** An id as a JSON number (they stay below 2^53 in practice; a bigint past it becomes its text). */
export const idOf = (value: unknown): number | string => {
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : String(value);
};

// ─── Business store ───────────────────────────────────────────────────────────────────────

const stores = new WeakMap<SqlClient, BusinessStore>();

/** The business store over the API's database (one per client). */
export function business(ctx: ApiContext): BusinessStore {
  let s = stores.get(ctx.stores.db);
  if (!s) stores.set(ctx.stores.db, (s = createBusinessStore(ctx.stores.db)));
  return s;
}

/**
 * Runs a business-store call, its errors as ApiErrors: invalid → 400 naming the field (renamed to
 * the API's property name by `fields`), not-found → 404, conflict → 409.
 */
export async function viaStore<T>(fn: () => Promise<T>, fields: Record<string, string> = {}): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof BusinessError)) throw err;
    const field = err.field === undefined ? undefined : (fields[err.field] ?? err.field);
    const detail = err.field && field !== err.field ? err.message.replaceAll(`"${err.field}"`, `"${field}"`) : err.message;
    if (err.code === 'not-found') throw new ApiError('not-found', detail);
    if (err.code === 'conflict') throw new ApiError('conflict', detail, field);
    throw new ApiError('invalid-request', detail, field);
  }
}

/** The serial number of the path; 400 when empty or holding a NUL. */
export function serialParam(ctx: ApiContext): string {
  const serial = ctx.params.serial ?? '';
  if (serial === '') throw invalid('serial', 'serial is required');
  // No device has one (the store refuses it) and PostgreSQL text cannot hold one: a 400, not a 500.
  if (serial.includes('\u0000')) throw invalid('serial', 'serial must not contain NUL characters');
  return serial;
}

/** The most rows one business-store list returns. */
export const BUSINESS_MAX = 1000;

/** One page of a business entity of the caller's tenant (limit and cursor from the query). */
export async function listRows(ctx: ApiContext, entity: string, filter?: Record<string, string | null>): Promise<{ items: BusinessRow[]; cursor?: string }> {
  const limit = pageSize(ctx, BUSINESS_MAX);
  return viaStore(() => business(ctx).list(ctx.identity.tenant, entity, { ...(filter ? { filter } : {}), limit, cursor: cursorParam(ctx) }));
}

/** A page's answer: its items, and the cursor when there may be more. */
export const pageBody = (items: unknown[], cursor: string | undefined) => ({ body: { items, ...(cursor ? { cursor } : {}) } });

/** The tenant's device with this serial; 404 otherwise (another tenant's too). */
export async function deviceBySerial(ctx: ApiContext): Promise<BusinessRow> {
  const serial = serialParam(ctx);
  // Through viaStore: a serial the store refuses (a NUL, from /devices/%00) is the client's 400, not a 500.
  const { items } = await viaStore(() => business(ctx).list(ctx.identity.tenant, 'devices', { filter: { serial }, limit: 1 }));
  if (items.length === 0) throw new ApiError('not-found', `no device with serial number ${JSON.stringify(serial)}`);
  return items[0];
}

/** The tenant's sensor sink with this id and its device; 404 otherwise (another tenant's too). */
export async function sensorById(ctx: ApiContext): Promise<{ sensor: BusinessRow; device: BusinessRow }> {
  const id = idParam(ctx, 'sensorId');
  const store = business(ctx);
  const sensor = await viaStore(() => store.read(ctx.identity.tenant, 'sensors', id)).catch((err: unknown) => {
    throw err instanceof ApiError && err.kind === 'not-found' ? new ApiError('not-found', `no sensor with id ${id}`) : err;
  });
  const device = await viaStore(() => store.read(ctx.identity.tenant, 'devices', sensor.device_id as number));
  return { sensor, device };
}

/**
 * `<serial>/<sensorId>/`, where a sensor sink's readings are named; 404 for an id that is no sink
 * of the tenant. One query: the data-set, latest and rollup reads of a sensor start with it.
 */
export async function sensorPrefix(ctx: ApiContext): Promise<string> {
  const id = BigInt(idParam(ctx, 'sensorId')).toString(); // 007 is sensor 7, whose readings say 7
  const { rows } = await ctx.stores.db.query<{ serial: string }>(
    'SELECT d.serial FROM sensors s JOIN devices d ON d.tenant_id = s.tenant_id AND d.id = s.device_id WHERE s.tenant_id = $1 AND s.id = $2',
    [ctx.identity.tenant, id],
  );
  if (rows.length === 0) throw new ApiError('not-found', `no sensor with id ${id}`);
  return `${rows[0].serial}/${id}/`;
}
