/**
 * The business-data store: create, read, update, delete and list of the business entities of
 * migration 001, tenant-scoped, over SqlClient (PostgreSQL and PGlite alike). Framework-free;
 * a Node-RED node calls it with plain data taken from msg fields.
 *
 * Field names are the schema's column names, snake_case as in 001_initial.ts (`device_id`,
 * `interval_s`, `valid_until`...). Each entity has an explicit whitelist of the fields a caller may
 * write (some only on create) and of the fields it returns; `describeEntity` lists them. Never
 * writable from the input: id, tenant_id, created_at, updated_at. Never returned: device_keys'
 * salt, stored_key and server_key, api_keys' hash, user_applications' password (it returns
 * `has_password` instead).
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
 * parameters; identifiers come only from the whitelists.
 *
 * The parts: business-entities.ts (each entity described once), business-coercion.ts (input to
 * parameters), business-sql.ts (statements), business-errors.ts (PostgreSQL errors to
 * BusinessError); API keys are authenticated in ../auth/api-key-store.ts.
 */
import type { SqlClient } from '../db/sql';
import { deriveScramKeysAsync, SCRAM_MAX_ITERATIONS, SCRAM_MIN_ITERATIONS } from '../auth/scram';
import { generateApiKey } from '../auth/api-key';
import { assignments, checkTenant, describe, isPlainObject, keyParam, parseId, toParam, type Assignment } from './business-coercion';
import { BUSINESS_ENTITIES, ENTITIES, filterableColumns, lookupEntity, type Entity } from './business-entities';
import { BusinessError, notFound, run, type PgError } from './business-errors';
import { deleteStatement, insertStatement, listStatement, selectList, selectStatement, updateStatement, type Statement } from './business-sql';
import { decodeCursor, encodeCursor } from './sql-common';

export { BUSINESS_ENTITIES, describeEntity, type BusinessEntity, type EntityDescription } from './business-entities';
export { BusinessError, type BusinessErrorCode } from './business-errors';

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

function entityOf(name: string): Entity {
  const spec = lookupEntity(name);
  if (!spec) throw new BusinessError('invalid', `unknown entity ${JSON.stringify(name)}; one of ${BUSINESS_ENTITIES.join(', ')}`, 'entity');
  return spec;
}

const exec = <T = BusinessRow>(db: SqlClient, spec: Entity, tenant: string, s: Statement): Promise<T[]> => run<T>(db, spec, tenant, s.text, s.params);

/** The key after which a list cursor continues. */
function cursorKey(spec: Entity, cursor: unknown): string {
  let key: string | undefined;
  try {
    if (typeof cursor === 'string' && cursor.length <= 4000) key = decodeCursor(spec.name, cursor, ['string'])[0] as string;
  } catch {
    key = undefined;
  }
  if (key === undefined || (spec.key === 'id' && spec.scope === 'tenant_id' && parseId(key) === undefined)) {
    throw new BusinessError('invalid', `${spec.name}: cursor is not one this list returned`, 'cursor');
  }
  return key;
}

// ─── The store ────────────────────────────────────────────────────────────────────────────

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

async function insert(db: SqlClient, spec: Entity, tenant: string, values: Map<string, Assignment>): Promise<BusinessRow> {
  const rows = await exec(db, spec, tenant, insertStatement(spec, tenant, values.values()));
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
    derived = await deriveScramKeysAsync(key, { iterations });
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
      const rows = await exec(db, spec, tenant, selectStatement(spec, tenant, keyParam(spec, key)));
      if (rows.length === 0) throw notFound(spec, key);
      return rows[0];
    },

    async update(tenant, name, key, patch) {
      const spec = entityOf(name);
      checkTenant(tenant);
      const k = keyParam(spec, key);
      const values = assignments(spec, patch, 'update');
      if (values.size === 0) return store.read(tenant, name, key);
      const rows = await exec(db, spec, tenant, updateStatement(spec, tenant, k, values.values()));
      if (rows.length === 0) throw notFound(spec, key);
      return rows[0];
    },

    async delete(tenant, name, key) {
      const spec = entityOf(name);
      checkTenant(tenant);
      if (!spec.deletable) throw new BusinessError('invalid', `${spec.name}: an operator removes tenants; they cannot be deleted here`, 'entity');
      const rows = await exec(db, spec, tenant, deleteStatement(spec, tenant, keyParam(spec, key)));
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
      const filter = options.filter ?? {};
      if (!isPlainObject(filter)) throw new BusinessError('invalid', `${spec.name}: filter must be an object`, 'filter');
      const filterable = filterableColumns(spec);
      const equal: Assignment[] = [];
      for (const field of Object.keys(filter)) {
        const value = filter[field];
        if (value === undefined) continue;
        if (!filterable.includes(field)) {
          throw new BusinessError('invalid', `${spec.name}: cannot filter on field "${field}"; filterable: ${filterable.join(', ')}`, field);
        }
        const col = spec.columns[field];
        if (value !== null && typeof value === 'object') throw new BusinessError('invalid', `${spec.name}: filter "${field}" must be a scalar`, field);
        const param = value === null ? null : toParam(spec.name, field, { ...col, required: false }, value);
        equal.push({ column: field, type: col.type, value: param });
      }
      const after = options.cursor === undefined ? undefined : cursorKey(spec, options.cursor);
      const rows = await exec(db, spec, tenant, listStatement(spec, tenant, { equal, after, limit: limit + 1 }));
      if (rows.length <= limit) return { items: rows };
      const items = rows.slice(0, limit);
      return { items, cursor: encodeCursor(spec.name, [String(items[items.length - 1][spec.key])]) };
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
    if (!['id', 'name', 'settings'].includes(field))
      throw new BusinessError('invalid', `tenants: field "${field}" is unknown; writable: id, name, settings`, field);
  }
  const idText = checkTenant(tenant.id);
  if (tenant.name === undefined) throw new BusinessError('invalid', 'tenants: field "name" is required', 'name');
  const name = toParam('tenants', 'name', { type: 'text', required: true }, tenant.name);
  const settings = toParam('tenants', 'settings', { type: 'object' }, tenant.settings ?? {});
  const rows = await run(db, spec, idText, `INSERT INTO tenants (id, name, settings) VALUES ($1, $2::text, $3::jsonb) RETURNING ${selectList(spec)}`, [
    idText,
    name,
    settings,
  ]);
  return rows[0];
}
