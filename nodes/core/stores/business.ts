/**
 * The business-data store: create, read, update, delete and list of the business entities of
 * migration 001, tenant-scoped, over SqlClient (PostgreSQL and PGlite alike). Framework-free;
 * a Node-RED node calls it with plain data taken from msg fields.
 *
 * Field names are the schema's column names, snake_case as in 001_initial.ts (`device_id`,
 * `interval_s`, `valid_until`...). Each entity has an explicit whitelist of the fields a caller may
 * write (some only on create) and of the fields it returns; `describeEntity` lists them. Never
 * writable from the input: id, tenant_id, created_at, updated_at. Never returned: device_keys'
 * salt, stored_key and server_key, api_keys' hash, user_applications' secret (it returns
 * `has_secret` instead).
 *
 * Tenancy: the tenant argument is the only source of tenant_id, and every statement filters by
 * it, so a tenant can neither see, change, delete nor reference another tenant's rows (the
 * schema's composite foreign keys back this up). One exception is inherent in the schema: a
 * device serial and an API key prefix are unique across tenants, so a clash with another
 * tenant's serial is a 'conflict'. The `tenants` entity is a tenant's own row: it can read,
 * list and update (name, settings) only that; tenants are created by an operator through
 * `createTenant`, and not deleted here.
 *
 * Values: text as strings; integers as numbers; ids as positive integers (a number, a bigint or
 * a decimal string); booleans; timestamps as Date or ISO 8601 strings (a time needs `Z` or an
 * offset); jsonb as any JSON value (objects where the column holds an object); text[] as
 * arrays of strings; bytea as Buffer. null clears a nullable field. Rows come back with ids
 * as numbers, timestamps as Date, jsonb parsed, text[] as arrays.
 *
 * Errors are BusinessError with code 'invalid' (bad input, including a reference to a row the
 * tenant does not have), 'not-found' (the addressed row or the tenant does not exist) or
 * 'conflict' (a unique rule: a taken name, serial or key slot). Values always travel as
 * parameters; identifiers come only from the whitelists below.
 */
import type { SqlClient } from '../db/sql';
import { deriveScramKeys, SCRAM_MAX_ITERATIONS, SCRAM_MIN_ITERATIONS } from '../auth/scram';
import { apiKeyPrefix, generateApiKey, verifyApiKey } from '../auth/api-key';

export type BusinessErrorCode = 'invalid' | 'not-found' | 'conflict';

/** The store's one error type; `field` names the offending field when there is one. */
export class BusinessError extends Error {
  override readonly name = 'BusinessError';

  constructor(
    readonly code: BusinessErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const BUSINESS_ENTITIES = [
  'tenants',
  'config',
  'users',
  'devices',
  'device_keys',
  'channels',
  'sensors',
  'applications',
  'user_applications',
  'consumers',
  'api_keys',
  'webhook_subscriptions',
  'ftp_targets',
] as const;
export type BusinessEntity = (typeof BUSINESS_ENTITIES)[number];

/** A row as returned: the entity's returned fields by column name. */
export type BusinessRow = Record<string, unknown>;
/** An id (a positive integer; a decimal string is accepted), or config's key, or a tenant's id. */
export type BusinessKey = number | bigint | string;
export type Scalar = string | number | boolean | bigint | null;

export interface ListOptions {
  /** Equality on returned scalar fields; null matches NULL. */
  filter?: Record<string, Scalar>;
  /** 1..1000, default 100. */
  limit?: number;
  /** Opaque, from the previous page. */
  cursor?: string;
}

export interface ListResult {
  /** In key order (id, or config's key). */
  items: BusinessRow[];
  /** Present when there may be more: pass it back for the next page. */
  cursor?: string;
}

export interface BusinessStore {
  /** Inserts a row; returns it (api_keys: with the generated `key`, the only time it is shown). */
  create(tenant: string, entity: string, data: Record<string, unknown>): Promise<BusinessRow>;
  read(tenant: string, entity: string, id: BusinessKey): Promise<BusinessRow>;
  /** Changes the given fields; an empty patch returns the row unchanged. */
  update(tenant: string, entity: string, id: BusinessKey, patch: Record<string, unknown>): Promise<BusinessRow>;
  /** Deletes a row (children cascade); returns what it was. */
  delete(tenant: string, entity: string, id: BusinessKey): Promise<BusinessRow>;
  list(tenant: string, entity: string, options?: ListOptions): Promise<ListResult>;
  /**
   * A device restarted (seed 004): in one transaction ends every open sensor sink of the device
   * and opens a new one for each (same channel, position, kind, quantities). Returns the new
   * sensor ids, ascending; the i-th replaces the i-th ended sink in id order.
   */
  restartDevice(tenant: string, deviceId: BusinessKey): Promise<Array<number | bigint>>;
}

// ─── The whitelists ───────────────────────────────────────────────────────────────────────

type ColumnType = 'text' | 'int' | 'smallint' | 'id' | 'bool' | 'object' | 'json' | 'text[]' | 'timestamptz' | 'bytea';

interface Column {
  type: ColumnType;
  /** Writable from the input: on create only, or on create and update. Absent: never. */
  input?: 'create' | 'always';
  /** Must be given on create. */
  required?: boolean;
  /** null is allowed (and stored as NULL). */
  nullable?: boolean;
  /** Stored but never returned. */
  hidden?: boolean;
  /** Input only: not a column (device_keys' plain key). */
  virtual?: boolean;
}

interface Entity {
  name: BusinessEntity;
  table: string;
  /** The column that addresses a row. */
  key: 'id' | 'key';
  /** The column holding the tenant: tenant_id, or id for the tenants table itself. */
  scope: 'tenant_id' | 'id';
  columns: Record<string, Column>;
  /** Returned expressions that are not columns. */
  computed?: Record<string, string>;
  updatedAt: boolean;
  /** false: create/delete only through dedicated functions. */
  creatable: boolean;
  deletable: boolean;
}

const ro = (type: ColumnType): Column => ({ type });
const w = (type: ColumnType, opts: Omit<Column, 'type' | 'input'> & { input?: 'create' | 'always' } = {}): Column => ({
  type,
  input: 'always',
  ...opts,
});
const wc = (type: ColumnType, opts: Omit<Column, 'type' | 'input'> = {}): Column => ({ type, input: 'create', ...opts });
const opt = { nullable: true } as const;
const req = { required: true } as const;

const id = ro('id');
const createdAt = ro('timestamptz');

function entity(name: BusinessEntity, columns: Record<string, Column>, extra: Partial<Omit<Entity, 'name' | 'columns'>> = {}): Entity {
  return {
    name,
    table: name,
    key: 'id',
    scope: 'tenant_id',
    columns,
    updatedAt: 'updated_at' in columns,
    creatable: true,
    deletable: true,
    ...extra,
  };
}

const ENTITIES: Record<BusinessEntity, Entity> = {
  tenants: entity(
    'tenants',
    { id: ro('text'), name: w('text'), settings: w('object'), created_at: createdAt, disabled_at: ro('timestamptz') },
    { scope: 'id', creatable: false, deletable: false },
  ),
  config: entity('config', { key: wc('text', req), value: w('json', req), updated_at: ro('timestamptz') }, { key: 'key' }),
  users: entity('users', {
    id,
    username: w('text', req),
    federation_id: w('text', opt),
    display_name: w('text', opt),
    email: w('text', opt),
    attributes: w('object'),
    created_at: createdAt,
    updated_at: ro('timestamptz'),
    disabled_at: w('timestamptz', opt),
  }),
  devices: entity('devices', {
    id,
    serial: w('text', req),
    name: w('text', opt),
    model: w('text', opt),
    attributes: w('object'),
    created_at: createdAt,
    updated_at: ro('timestamptz'),
    disabled_at: w('timestamptz', opt),
    last_seen_at: w('timestamptz', opt),
  }),
  device_keys: entity('device_keys', {
    id,
    device_id: wc('id', req),
    slot: wc('smallint'),
    key: wc('text', { required: true, virtual: true }),
    mechanism: ro('text'),
    iterations: wc('int'),
    salt: { type: 'bytea', hidden: true },
    stored_key: { type: 'bytea', hidden: true },
    server_key: { type: 'bytea', hidden: true },
    valid_from: w('timestamptz'),
    valid_until: w('timestamptz', opt),
    created_at: createdAt,
  }),
  channels: entity('channels', {
    id,
    device_id: wc('id', req),
    number: w('int', req),
    name: w('text', opt),
    interval_s: w('int', opt),
    config: w('object'),
    created_at: createdAt,
  }),
  sensors: entity('sensors', {
    id,
    device_id: wc('id'),
    channel_id: wc('id', req),
    position: wc('smallint'),
    kind: w('text', opt),
    quantities: w('text[]'),
    started_at: wc('timestamptz'),
    ended_at: w('timestamptz', opt),
  }),
  applications: entity('applications', {
    id,
    name: w('text', req),
    jid: w('text', req),
    description: w('text', opt),
    attributes: w('object'),
    created_at: createdAt,
  }),
  user_applications: entity(
    'user_applications',
    {
      id,
      user_id: wc('id', req),
      application_id: wc('id', req),
      login: w('text', opt),
      secret: w('bytea', { nullable: true, hidden: true }),
      secret_key_id: w('text', opt),
      roles: w('text[]'),
      created_at: createdAt,
      updated_at: ro('timestamptz'),
    },
    { computed: { has_secret: '(secret IS NOT NULL)' } },
  ),
  consumers: entity('consumers', {
    id,
    user_id: w('id', req),
    user_application_id: w('id', opt),
    target_application_id: w('id', req),
    source: w('json', req),
    mapping: w('json', opt),
    schedule: w('text', opt),
    enabled: w('bool'),
    created_at: createdAt,
    updated_at: ro('timestamptz'),
  }),
  api_keys: entity('api_keys', {
    id,
    prefix: ro('text'),
    hash: { type: 'bytea', hidden: true },
    name: w('text', opt),
    user_id: wc('id', opt),
    scopes: w('text[]'),
    created_at: createdAt,
    expires_at: w('timestamptz', opt),
    last_used_at: ro('timestamptz'),
    revoked_at: w('timestamptz', opt),
  }),
  webhook_subscriptions: entity('webhook_subscriptions', {
    id,
    url: w('text', req),
    events: w('text[]'),
    username: w('text', opt),
    secret_ref: w('text', opt),
    headers: w('object'),
    enabled: w('bool'),
    created_at: createdAt,
    updated_at: ro('timestamptz'),
  }),
  ftp_targets: entity('ftp_targets', {
    id,
    name: w('text', req),
    host: w('text', req),
    port: w('int'),
    protocol: w('text'),
    username: w('text', req),
    secret_ref: w('text', opt),
    directory: w('text'),
    naming: w('text'),
    enabled: w('bool'),
    created_at: createdAt,
  }),
};

export interface EntityDescription {
  /** The field that addresses a row: id, or key for config. */
  key: 'id' | 'key';
  /** Fields create accepts. */
  create: string[];
  /** Fields create requires. */
  required: string[];
  /** Fields update accepts. */
  update: string[];
  /** Fields every row comes back with. */
  returned: string[];
  /** Fields list can filter on. */
  filterable: string[];
}

const SCALAR_TYPES: ReadonlySet<ColumnType> = new Set(['text', 'int', 'smallint', 'id', 'bool', 'timestamptz']);

/** The whitelists of one entity; undefined for an unknown entity. */
export function describeEntity(name: string): EntityDescription | undefined {
  const spec = lookup(name);
  if (!spec) return undefined;
  const cols = Object.entries(spec.columns);
  return {
    key: spec.key,
    create: spec.creatable ? cols.filter(([, c]) => c.input).map(([n]) => n) : [],
    required: spec.creatable ? cols.filter(([, c]) => c.required).map(([n]) => n) : [],
    update: cols.filter(([, c]) => c.input === 'always').map(([n]) => n),
    returned: [...returnedColumns(spec), ...Object.keys(spec.computed ?? {})],
    filterable: returnedColumns(spec).filter((n) => SCALAR_TYPES.has(spec.columns[n].type)),
  };
}

function lookup(name: string): Entity | undefined {
  return typeof name === 'string' && Object.hasOwn(ENTITIES, name) ? ENTITIES[name as BusinessEntity] : undefined;
}

function entityOf(name: string): Entity {
  const spec = lookup(name);
  if (!spec) throw new BusinessError('invalid', `unknown entity ${JSON.stringify(name)}; one of ${BUSINESS_ENTITIES.join(', ')}`, 'entity');
  return spec;
}

const returnedColumns = (spec: Entity): string[] =>
  Object.entries(spec.columns)
    .filter(([, c]) => !c.hidden && !c.virtual)
    .map(([n]) => n);

const q = (ident: string): string => `"${ident}"`;

function selectList(spec: Entity): string {
  const cols = returnedColumns(spec).map(q);
  for (const [name, expr] of Object.entries(spec.computed ?? {})) cols.push(`${expr} AS ${q(name)}`);
  return cols.join(', ');
}

const CAST: Record<ColumnType, string> = {
  text: 'text',
  int: 'integer',
  smallint: 'smallint',
  id: 'bigint',
  bool: 'boolean',
  object: 'jsonb',
  json: 'jsonb',
  'text[]': 'text[]',
  timestamptz: 'timestamptz',
  bytea: 'bytea',
};

// ─── Input validation ─────────────────────────────────────────────────────────────────────

const INT8_MAX = 9223372036854775807n;
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:$|[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$)/i;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a Date';
  if (Buffer.isBuffer(value)) return 'a Buffer';
  return `a ${typeof value}`;
}

/** Parses an id argument or value: a positive int8 as a number, bigint or decimal string. */
function parseId(value: unknown): string | undefined {
  let text: string;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 1) return undefined;
    text = String(value);
  } else if (typeof value === 'bigint') {
    text = value.toString();
  } else if (typeof value === 'string' && /^[1-9][0-9]{0,18}$/.test(value)) {
    text = value;
  } else {
    return undefined;
  }
  const n = BigInt(text);
  return n >= 1n && n <= INT8_MAX ? text : undefined;
}

function jsonText(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

/** The parameter for value in a column of this type, or a BusinessError naming the field. */
function toParam(where: string, field: string, col: Column, value: unknown): unknown {
  const bad = (expected: string) =>
    new BusinessError('invalid', `${where}: field "${field}" must be ${expected}, got ${describe(value)}`, field);
  if (value === null) {
    if (col.nullable) return null;
    throw new BusinessError('invalid', `${where}: field "${field}" cannot be null`, field);
  }
  switch (col.type) {
    case 'text':
      if (typeof value !== 'string') throw bad('a string');
      if (value.includes('\u0000')) throw bad('a string without NUL characters');
      if (col.required && value.length === 0) throw bad('a non-empty string');
      return value;
    case 'int':
    case 'smallint': {
      const limit = col.type === 'int' ? 2 ** 31 : 2 ** 15;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < -limit || value >= limit) {
        throw bad(col.type === 'int' ? 'a 32-bit integer' : 'a 16-bit integer');
      }
      return value;
    }
    case 'id': {
      const idText = parseId(value);
      if (idText === undefined) throw bad('an id (a positive integer)');
      return idText;
    }
    case 'bool':
      if (typeof value !== 'boolean') throw bad('a boolean');
      return value;
    case 'object': {
      if (!isPlainObject(value)) throw bad('an object');
      const text = jsonText(value);
      if (text === undefined) throw bad('JSON-serializable');
      return text;
    }
    case 'json': {
      const text = value === undefined ? undefined : jsonText(value);
      if (text === undefined) throw bad('a JSON value');
      return text;
    }
    case 'text[]':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && !v.includes('\u0000'))) throw bad('an array of strings');
      return [...value];
    case 'timestamptz': {
      const date = value instanceof Date ? value : typeof value === 'string' && ISO_8601.test(value) ? new Date(value) : undefined;
      if (!date || Number.isNaN(date.getTime())) throw bad('a Date or an ISO 8601 time with Z or an offset');
      return date.toISOString();
    }
    case 'bytea':
      if (!(value instanceof Uint8Array)) throw bad('a Buffer');
      return Buffer.from(value);
  }
}

function checkTenant(tenant: unknown): string {
  if (typeof tenant !== 'string' || tenant.length < 1 || tenant.length > 64) {
    throw new BusinessError('invalid', `tenant must be a string of 1 to 64 characters, got ${describe(tenant)}`, 'tenant');
  }
  return tenant;
}

/** The key argument of read/update/delete as a parameter. */
function keyParam(spec: Entity, value: unknown): string {
  if (spec.key === 'key' || spec.scope === 'id') {
    if (typeof value !== 'string' || value.length === 0) {
      throw new BusinessError('invalid', `${spec.name}: ${spec.key} must be a non-empty string, got ${describe(value)}`, spec.key);
    }
    return value;
  }
  const idText = parseId(value);
  if (idText === undefined) throw new BusinessError('invalid', `${spec.name}: id must be a positive integer, got ${describe(value)}`, 'id');
  return idText;
}

interface Assignment {
  column: string;
  type: ColumnType;
  value: unknown;
}

/** Validates input fields against the whitelist for create or update. */
function assignments(spec: Entity, data: unknown, mode: 'create' | 'update'): Map<string, Assignment> {
  if (!isPlainObject(data)) {
    throw new BusinessError('invalid', `${spec.name}: ${mode === 'create' ? 'data' : 'patch'} must be an object, got ${describe(data)}`);
  }
  const out = new Map<string, Assignment>();
  for (const field of Object.keys(data)) {
    const value = data[field];
    if (value === undefined) continue;
    const col = Object.hasOwn(spec.columns, field) ? spec.columns[field] : undefined;
    if (!col || !col.input) {
      const allowed = Object.entries(spec.columns)
        .filter(([, c]) => (mode === 'create' ? c.input : c.input === 'always'))
        .map(([n]) => n);
      const why = col || field === 'tenant_id' ? 'is not writable' : 'is unknown';
      throw new BusinessError('invalid', `${spec.name}: field "${field}" ${why}; writable: ${allowed.join(', ') || 'none'}`, field);
    }
    if (mode === 'update' && col.input === 'create') {
      throw new BusinessError('invalid', `${spec.name}: field "${field}" can only be set on create`, field);
    }
    out.set(field, { column: field, type: col.type, value: toParam(spec.name, field, col, value) });
  }
  if (mode === 'create') {
    for (const [field, col] of Object.entries(spec.columns)) {
      if (col.required && !out.has(field)) throw new BusinessError('invalid', `${spec.name}: field "${field}" is required`, field);
    }
  }
  return out;
}

// ─── Database errors ──────────────────────────────────────────────────────────────────────

interface PgError {
  code?: unknown;
  detail?: unknown;
  constraint?: unknown;
  column?: unknown;
  message?: unknown;
}

/** Columns named in a unique or foreign-key violation's detail: Key (a, "b")=(...) ... */
function detailColumns(detail: unknown): string[] {
  const m = typeof detail === 'string' ? /^Key \(([^)]*)\)=/.exec(detail) : null;
  return m ? m[1].split(',').map((s) => s.trim().replace(/^"|"$/g, '')) : [];
}

const CHECK_MESSAGES: Record<string, [string, string]> = {
  device_keys_check: ['valid_until', 'valid_until must be later than valid_from'],
  sensors_check: ['ended_at', 'ended_at must not be earlier than started_at'],
  user_applications_check: ['secret_key_id', 'a secret needs the secret_key_id that encrypted it'],
  tenants_id_check: ['id', 'a tenant id has 1 to 64 characters'],
  webhook_subscriptions_url_check: ['url', 'url must start with http:// or https://'],
  ftp_targets_protocol_check: ['protocol', "protocol must be 'ftp', 'ftps' or 'ftpes'"],
};

/** Maps PostgreSQL's integrity and data errors to BusinessError; anything else is rethrown. */
function mapDbError(err: unknown, spec: { name: string; table: string }, tenant: string): never {
  if (err instanceof BusinessError) throw err;
  const e = (err ?? {}) as PgError;
  const code = typeof e.code === 'string' ? e.code : '';
  const constraint = typeof e.constraint === 'string' ? e.constraint : '';
  const cols = detailColumns(e.detail).filter((c) => c !== 'tenant_id');
  const opts = { cause: err };
  switch (code) {
    case '23505': {
      if (constraint === 'sensors_one_open') {
        throw new BusinessError('conflict', `${spec.name}: this channel already has an open sensor at this position`, 'position', opts);
      }
      if (constraint === 'device_keys_device_id_slot_key') {
        throw new BusinessError('conflict', `${spec.name}: this slot of the device already holds a key`, 'slot', opts);
      }
      const what = cols.length ? cols.join(', ') : constraint;
      throw new BusinessError('conflict', `${spec.name}: a row with this ${what} already exists`, cols[cols.length - 1], opts);
    }
    case '23503': {
      if (cols.length === 0) throw new BusinessError('not-found', `tenant ${JSON.stringify(tenant)} does not exist`, 'tenant', opts);
      const field = cols[cols.length - 1];
      const table = typeof e.detail === 'string' ? /table "([^"]+)"/.exec(e.detail)?.[1] : undefined;
      throw new BusinessError('invalid', `${spec.name}: field "${field}" names no ${table ?? 'row'} of this tenant`, field, opts);
    }
    case '23514': {
      const known = CHECK_MESSAGES[constraint];
      const prefix = `${spec.table}_`;
      const field =
        known?.[0] ?? (constraint.startsWith(prefix) && constraint.endsWith('_check') ? constraint.slice(prefix.length, -'_check'.length) : undefined);
      const message = known?.[1] ?? (field ? `field "${field}" is out of range` : `violates ${constraint}`);
      throw new BusinessError('invalid', `${spec.name}: ${message}`, field, opts);
    }
    case '23502': {
      const field = typeof e.column === 'string' ? e.column : undefined;
      throw new BusinessError('invalid', `${spec.name}: field "${field}" cannot be null`, field, opts);
    }
  }
  if (code.startsWith('22')) {
    throw new BusinessError('invalid', `${spec.name}: ${typeof e.message === 'string' ? e.message : 'invalid value'}`, undefined, opts);
  }
  throw err;
}

async function run<T = BusinessRow>(
  db: SqlClient,
  spec: { name: string; table: string },
  tenant: string,
  text: string,
  params: readonly unknown[],
): Promise<T[]> {
  try {
    return (await db.query<T>(text, params)).rows;
  } catch (err) {
    mapDbError(err, spec, tenant);
  }
}

function notFound(spec: Entity, key: unknown): BusinessError {
  return new BusinessError('not-found', `${spec.name}: no row with ${spec.key} ${JSON.stringify(String(key))} in this tenant`, spec.key);
}

// ─── Cursors ──────────────────────────────────────────────────────────────────────────────

function encodeCursor(entity: string, last: unknown): string {
  return Buffer.from(JSON.stringify([entity, String(last)])).toString('base64url');
}

function decodeCursor(spec: Entity, cursor: unknown): string {
  const bad = () => new BusinessError('invalid', `${spec.name}: cursor is not one this list returned`, 'cursor');
  if (typeof cursor !== 'string' || !/^[A-Za-z0-9_-]{1,4000}$/.test(cursor)) throw bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || parsed[0] !== spec.name || typeof parsed[1] !== 'string') throw bad();
  if (spec.key === 'id' && spec.scope === 'tenant_id' && parseId(parsed[1]) === undefined) throw bad();
  return parsed[1];
}

// ─── The store ────────────────────────────────────────────────────────────────────────────

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

async function insert(db: SqlClient, spec: Entity, tenant: string, values: Map<string, Assignment>): Promise<BusinessRow> {
  const params: unknown[] = [tenant];
  const cols: string[] = ['tenant_id'];
  const exprs: string[] = ['$1'];
  for (const a of values.values()) {
    params.push(a.value);
    cols.push(q(a.column));
    exprs.push(`$${params.length}::${CAST[a.type]}`);
  }
  const text = `INSERT INTO ${q(spec.table)} (${cols.join(', ')}) VALUES (${exprs.join(', ')}) RETURNING ${selectList(spec)}`;
  const rows = await run(db, spec, tenant, text, params);
  return rows[0];
}

const hiddenValue = (spec: Entity, column: string, value: unknown): Assignment => ({ column, type: spec.columns[column].type, value });

async function createDeviceKey(db: SqlClient, spec: Entity, tenant: string, values: Map<string, Assignment>): Promise<BusinessRow> {
  const key = values.get('key')!.value as string;
  values.delete('key');
  const iterations = (values.get('iterations')?.value as number | undefined) ?? SCRAM_MIN_ITERATIONS;
  if (iterations < SCRAM_MIN_ITERATIONS || iterations > SCRAM_MAX_ITERATIONS) {
    throw new BusinessError('invalid', `device_keys: field "iterations" must be from ${SCRAM_MIN_ITERATIONS} to ${SCRAM_MAX_ITERATIONS}`, 'iterations');
  }
  const slot = values.get('slot')?.value as number | undefined;
  if (slot !== undefined && slot !== 1 && slot !== 2) throw new BusinessError('invalid', 'device_keys: field "slot" must be 1 or 2', 'slot');
  let derived;
  try {
    derived = deriveScramKeys(key, { iterations });
  } catch (err) {
    throw new BusinessError('invalid', `device_keys: field "key": ${(err as Error).message}`, 'key', { cause: err });
  }
  const deviceId = values.get('device_id')!.value;
  values.set('iterations', hiddenValue(spec, 'iterations', derived.iterations));
  values.set('salt', hiddenValue(spec, 'salt', derived.salt));
  values.set('stored_key', hiddenValue(spec, 'stored_key', derived.storedKey));
  values.set('server_key', hiddenValue(spec, 'server_key', derived.serverKey));
  return db.transaction(async (tx) => {
    // Locking the device row serializes key changes of one device: the slot choice holds.
    const device = await run(tx, spec, tenant, 'SELECT id FROM devices WHERE tenant_id = $1 AND id = $2::bigint FOR UPDATE', [tenant, deviceId]);
    if (device.length === 0) throw new BusinessError('invalid', `device_keys: field "device_id" names no devices of this tenant`, 'device_id');
    const taken = (
      await run<{ slot: number }>(tx, spec, tenant, 'SELECT slot FROM device_keys WHERE tenant_id = $1 AND device_id = $2::bigint', [tenant, deviceId])
    ).map((r) => r.slot);
    if (taken.length >= 2) {
      throw new BusinessError('conflict', 'device_keys: the device already has two keys (slots 1 and 2); delete one before adding another', 'slot');
    }
    if (slot !== undefined && taken.includes(slot)) {
      throw new BusinessError('conflict', `device_keys: slot ${slot} of the device already holds a key`, 'slot');
    }
    values.set('slot', hiddenValue(spec, 'slot', slot ?? (taken.includes(1) ? 2 : 1)));
    return insert(tx, spec, tenant, values);
  });
}

async function createApiKey(db: SqlClient, spec: Entity, tenant: string, values: Map<string, Assignment>): Promise<BusinessRow> {
  // A prefix carries 48 random bits: a clash is rare; draw again a few times before giving up.
  for (let attempt = 1; ; attempt++) {
    const generated = generateApiKey();
    values.set('prefix', hiddenValue(spec, 'prefix', generated.prefix));
    values.set('hash', hiddenValue(spec, 'hash', generated.hash));
    try {
      const row = await insert(db, spec, tenant, values);
      return { ...row, key: generated.key };
    } catch (err) {
      const prefixClash = err instanceof BusinessError && (err.cause as PgError | undefined)?.constraint === 'api_keys_prefix_key';
      if (!prefixClash || attempt >= 3) throw err;
    }
  }
}

async function createSensor(db: SqlClient, spec: Entity, tenant: string, values: Map<string, Assignment>): Promise<BusinessRow> {
  if (!values.has('device_id')) {
    // The device is the channel's: look it up rather than make the caller repeat it.
    const channelId = values.get('channel_id')!.value;
    const rows = await run<{ device_id: unknown }>(db, spec, tenant, 'SELECT device_id FROM channels WHERE tenant_id = $1 AND id = $2::bigint', [
      tenant,
      channelId,
    ]);
    if (rows.length === 0) throw new BusinessError('invalid', 'sensors: field "channel_id" names no channels of this tenant', 'channel_id');
    values.set('device_id', hiddenValue(spec, 'device_id', String(rows[0].device_id)));
  }
  return insert(db, spec, tenant, values);
}

/** The business store over db: see the module comment. */
export function createBusinessStore(db: SqlClient): BusinessStore {
  const store: BusinessStore = {
    async create(tenant, name, data) {
      const spec = entityOf(name);
      checkTenant(tenant);
      if (!spec.creatable) {
        throw new BusinessError('invalid', `${spec.name}: an operator creates tenants (createTenant); they cannot be created here`, 'entity');
      }
      const values = assignments(spec, data, 'create');
      if (spec.name === 'device_keys') return createDeviceKey(db, spec, tenant, values);
      if (spec.name === 'api_keys') return createApiKey(db, spec, tenant, values);
      if (spec.name === 'sensors') return createSensor(db, spec, tenant, values);
      return insert(db, spec, tenant, values);
    },

    async read(tenant, name, key) {
      const spec = entityOf(name);
      checkTenant(tenant);
      const k = keyParam(spec, key);
      const cast = spec.key === 'id' && spec.scope === 'tenant_id' ? '::bigint' : '';
      const text = `SELECT ${selectList(spec)} FROM ${q(spec.table)} WHERE ${q(spec.scope)} = $1 AND ${q(spec.key)} = $2${cast}`;
      const rows = await run(db, spec, tenant, text, [tenant, k]);
      if (rows.length === 0) throw notFound(spec, key);
      return rows[0];
    },

    async update(tenant, name, key, patch) {
      const spec = entityOf(name);
      checkTenant(tenant);
      const k = keyParam(spec, key);
      const values = assignments(spec, patch, 'update');
      if (values.size === 0) return store.read(tenant, name, key);
      const params: unknown[] = [tenant, k];
      const sets: string[] = [];
      for (const a of values.values()) {
        params.push(a.value);
        sets.push(`${q(a.column)} = $${params.length}::${CAST[a.type]}`);
      }
      if (spec.updatedAt) sets.push('"updated_at" = now()');
      const cast = spec.key === 'id' && spec.scope === 'tenant_id' ? '::bigint' : '';
      const text = `UPDATE ${q(spec.table)} SET ${sets.join(', ')} WHERE ${q(spec.scope)} = $1 AND ${q(spec.key)} = $2${cast} RETURNING ${selectList(spec)}`;
      const rows = await run(db, spec, tenant, text, params);
      if (rows.length === 0) throw notFound(spec, key);
      return rows[0];
    },

    async delete(tenant, name, key) {
      const spec = entityOf(name);
      checkTenant(tenant);
      if (!spec.deletable) throw new BusinessError('invalid', `${spec.name}: an operator removes tenants; they cannot be deleted here`, 'entity');
      const k = keyParam(spec, key);
      const cast = spec.key === 'id' ? '::bigint' : '';
      const text = `DELETE FROM ${q(spec.table)} WHERE tenant_id = $1 AND ${q(spec.key)} = $2${cast} RETURNING ${selectList(spec)}`;
      const rows = await run(db, spec, tenant, text, [tenant, k]);
      if (rows.length === 0) throw notFound(spec, key);
      return rows[0];
    },

    async list(tenant, name, options = {}) {
      const spec = entityOf(name);
      checkTenant(tenant);
      if (!isPlainObject(options)) throw new BusinessError('invalid', `${spec.name}: list options must be an object`);
      const limit = options.limit ?? DEFAULT_LIMIT;
      if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
        throw new BusinessError('invalid', `${spec.name}: limit must be an integer from 1 to ${MAX_LIMIT}, got ${String(limit)}`, 'limit');
      }
      const params: unknown[] = [tenant];
      const where = [`${q(spec.scope)} = $1`];
      const filter = options.filter ?? {};
      if (!isPlainObject(filter)) throw new BusinessError('invalid', `${spec.name}: filter must be an object`, 'filter');
      const filterable = describeEntity(spec.name)!.filterable;
      for (const field of Object.keys(filter)) {
        const value = filter[field];
        if (value === undefined) continue;
        if (!filterable.includes(field)) {
          throw new BusinessError('invalid', `${spec.name}: cannot filter on field "${field}"; filterable: ${filterable.join(', ')}`, field);
        }
        const col = spec.columns[field];
        if (value === null) {
          where.push(`${q(field)} IS NULL`);
          continue;
        }
        if (typeof value === 'object') throw new BusinessError('invalid', `${spec.name}: filter "${field}" must be a scalar`, field);
        params.push(toParam(spec.name, field, { ...col, required: false }, value));
        where.push(`${q(field)} = $${params.length}::${CAST[col.type]}`);
      }
      const keyCast = spec.key === 'id' && spec.scope === 'tenant_id' ? '::bigint' : '';
      if (options.cursor !== undefined) {
        params.push(decodeCursor(spec, options.cursor));
        where.push(`${q(spec.key)} > $${params.length}${keyCast}`);
      }
      params.push(limit + 1);
      const text = `SELECT ${selectList(spec)} FROM ${q(spec.table)} WHERE ${where.join(' AND ')} ORDER BY ${q(spec.key)} LIMIT $${params.length}::integer`;
      const rows = await run(db, spec, tenant, text, params);
      if (rows.length <= limit) return { items: rows };
      const items = rows.slice(0, limit);
      return { items, cursor: encodeCursor(spec.name, items[items.length - 1][spec.key]) };
    },

    async restartDevice(tenant, deviceId) {
      checkTenant(tenant);
      const spec = ENTITIES.sensors;
      const idText = parseId(deviceId);
      if (idText === undefined) throw new BusinessError('invalid', `devices: id must be a positive integer, got ${describe(deviceId)}`, 'id');
      return db.transaction(async (tx) => {
        const device = await run(tx, spec, tenant, 'SELECT id FROM devices WHERE tenant_id = $1 AND id = $2::bigint FOR UPDATE', [tenant, idText]);
        if (device.length === 0) throw notFound(ENTITIES.devices, deviceId);
        // greatest(): a sink created with a future started_at still ends validly.
        const ended = await run<{ id: number | bigint }>(
          tx,
          spec,
          tenant,
          `UPDATE sensors SET ended_at = greatest(now(), started_at)
           WHERE tenant_id = $1 AND device_id = $2::bigint AND ended_at IS NULL RETURNING id`,
          [tenant, idText],
        );
        if (ended.length === 0) return [];
        const started = await run<{ id: number | bigint }>(
          tx,
          spec,
          tenant,
          `INSERT INTO sensors (tenant_id, device_id, channel_id, "position", kind, quantities)
           SELECT tenant_id, device_id, channel_id, "position", kind, quantities
           FROM sensors WHERE tenant_id = $1 AND id = ANY($2::bigint[]) ORDER BY id
           RETURNING id`,
          [tenant, ended.map((r) => String(r.id))],
        );
        return started.map((r) => r.id).sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0));
      });
    },
  };
  return store;
}

// ─── Operator functions ───────────────────────────────────────────────────────────────────

export interface NewTenant {
  /** 1..64 characters: the msg.device.tenant value. */
  id: string;
  name: string;
  settings?: Record<string, unknown>;
}

/** Creates a tenant: an operator's act, outside any tenant's scope. 'conflict' if the id is taken. */
export async function createTenant(db: SqlClient, tenant: NewTenant): Promise<BusinessRow> {
  const spec = ENTITIES.tenants;
  if (!isPlainObject(tenant)) throw new BusinessError('invalid', 'tenants: data must be an object');
  for (const field of Object.keys(tenant)) {
    if (!['id', 'name', 'settings'].includes(field)) throw new BusinessError('invalid', `tenants: field "${field}" is unknown; writable: id, name, settings`, field);
  }
  const idText = checkTenant(tenant.id);
  if (tenant.name === undefined) throw new BusinessError('invalid', 'tenants: field "name" is required', 'name');
  const name = toParam('tenants', 'name', { type: 'text', required: true }, tenant.name);
  const settings = toParam('tenants', 'settings', { type: 'object' }, tenant.settings ?? {});
  const rows = await run(
    db,
    spec,
    idText,
    `INSERT INTO tenants (id, name, settings) VALUES ($1, $2::text, $3::jsonb) RETURNING ${selectList(spec)}`,
    [idText, name, settings],
  );
  return rows[0];
}

export interface ApiKeyIdentity {
  tenant: string;
  /** api_keys.id */
  id: number | bigint;
  user_id: number | bigint | null;
  scopes: string[];
}

/**
 * Who presents this API key: its tenant, row, user and scopes; undefined when the key is
 * malformed, unknown, revoked, expired, or its tenant disabled. The key names its tenant, so
 * this lookup is by the key's unique prefix; the hash is compared in constant time.
 * last_used_at is refreshed at most once a minute.
 */
export async function authenticateApiKey(db: SqlClient, key: string): Promise<ApiKeyIdentity | undefined> {
  const prefix = apiKeyPrefix(key);
  if (!prefix) return undefined;
  const { rows } = await db.query<{ tenant_id: string; id: number | bigint; hash: Buffer; user_id: number | bigint | null; scopes: string[] }>(
    `SELECT k.tenant_id, k.id, k.hash, k.user_id, k.scopes
     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.prefix = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AND t.disabled_at IS NULL`,
    [prefix],
  );
  const row = rows[0];
  if (!row || !verifyApiKey(key, row.hash)) return undefined;
  await db.query(
    `UPDATE api_keys SET last_used_at = now()
     WHERE tenant_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
    [row.tenant_id, row.id],
  );
  return { tenant: row.tenant_id, id: row.id, user_id: row.user_id, scopes: row.scopes };
}
