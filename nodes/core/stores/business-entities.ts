/**
 * The business entities of migrations 001, 005, 009, 010 and 011, each described once: its table, the column that
 * addresses a row, the tenant column, and every column with its type, nullability and who may
 * write it. The store's whitelists, SQL and coercion all derive from these descriptions;
 * test/integration/business-schema.test.ts checks them against the migrated database, so a
 * migration that drifts from a description fails there.
 */

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
  'webhook_deliveries',
  'ftp_targets',
  'pull_sources',
] as const;
export type BusinessEntity = (typeof BUSINESS_ENTITIES)[number];

export type ColumnType = 'text' | 'int' | 'smallint' | 'id' | 'bool' | 'object' | 'json' | 'text[]' | 'timestamptz' | 'bytea';

/** The PostgreSQL type of each column type: the casts of the SQL, and what the schema must say. */
export const SQL_TYPE: Record<ColumnType, string> = {
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

export interface Column {
  type: ColumnType;
  /** Writable from the input: on create only, or on create and update. Absent: never. */
  input?: 'create' | 'always';
  /** Must be given on create. */
  required?: boolean;
  /** The column may hold NULL (and an input null clears it). */
  nullable?: boolean;
  /** Stored but never returned. */
  hidden?: boolean;
  /** Input only: not a column (device_keys' plain key). */
  virtual?: boolean;
  /** The store fills it on create (from other input or a lookup): the schema needs no default. */
  filled?: boolean;
}

export interface Entity {
  name: BusinessEntity;
  table: string;
  /** The column that addresses a row: the primary key (config's is the tenant column and key). */
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

type Options = Omit<Column, 'type' | 'input'>;
/** Read-only: set by a default, the database or the store. */
const ro = (type: ColumnType, opts: Options = {}): Column => ({ type, ...opts });
/** Writable on create and update. */
const w = (type: ColumnType, opts: Options = {}): Column => ({ type, input: 'always', ...opts });
/** Writable on create only. */
const wc = (type: ColumnType, opts: Options = {}): Column => ({ type, input: 'create', ...opts });
const opt = { nullable: true } as const;
const req = { required: true } as const;
const secret = { hidden: true, filled: true } as const;

const id = ro('id');
const createdAt = ro('timestamptz');
const updatedAt = ro('timestamptz');

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

export const ENTITIES: Record<BusinessEntity, Entity> = {
  tenants: entity(
    'tenants',
    { id: ro('text'), name: w('text'), settings: w('object'), created_at: createdAt, disabled_at: ro('timestamptz', opt) },
    { scope: 'id', creatable: false, deletable: false },
  ),
  config: entity('config', { key: wc('text', req), value: w('json', req), updated_at: updatedAt }, { key: 'key' }),
  users: entity('users', {
    id,
    username: w('text', req),
    federation_id: w('text', opt),
    display_name: w('text', opt),
    email: w('text', opt),
    attributes: w('object'),
    created_at: createdAt,
    updated_at: updatedAt,
    disabled_at: w('timestamptz', opt),
  }),
  devices: entity('devices', {
    id,
    serial: w('text', req),
    name: w('text', opt),
    model: w('text', opt),
    attributes: w('object'),
    created_at: createdAt,
    updated_at: updatedAt,
    disabled_at: w('timestamptz', opt),
    last_seen_at: w('timestamptz', opt),
  }),
  device_keys: entity('device_keys', {
    id,
    device_id: wc('id', req),
    slot: wc('smallint', { filled: true }),
    key: wc('text', { required: true, virtual: true }),
    mechanism: ro('text'),
    iterations: wc('int', { filled: true }),
    salt: ro('bytea', secret),
    stored_key: ro('bytea', secret),
    server_key: ro('bytea', secret),
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
    device_id: wc('id', { filled: true }),
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
      // As a webhook's password: sent to the local system, so stored as is, never returned.
      password: w('text', { nullable: true, hidden: true }),
      secret_ref: w('text', opt),
      roles: w('text[]'),
      created_at: createdAt,
      updated_at: updatedAt,
    },
    { computed: { has_password: '(password IS NOT NULL)' } },
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
    updated_at: updatedAt,
  }),
  api_keys: entity('api_keys', {
    id,
    prefix: ro('text', { filled: true }),
    hash: ro('bytea', secret),
    name: w('text', opt),
    user_id: wc('id', opt),
    scopes: w('text[]'),
    created_at: createdAt,
    expires_at: w('timestamptz', opt),
    last_used_at: ro('timestamptz', opt),
    revoked_at: w('timestamptz', opt),
  }),
  // password and secret are written, never returned (has_password, has_secret instead); the
  // webhook sender reads them itself, since it must send the one and sign with the other.
  webhook_subscriptions: entity(
    'webhook_subscriptions',
    {
      id,
      user_id: w('id', opt),
      url: w('text', req),
      events: w('text[]'),
      username: w('text', opt),
      password: w('text', { nullable: true, hidden: true }),
      secret: w('text', { nullable: true, hidden: true }),
      secret_ref: w('text', opt),
      headers: w('object'),
      enabled: w('bool'),
      disabled_at: w('timestamptz', opt),
      disabled_reason: w('text', opt),
      created_at: createdAt,
      updated_at: updatedAt,
    },
    { computed: { has_password: '(password IS NOT NULL)', has_secret: '(secret IS NOT NULL)' } },
  ),
  // The delivery log, written by conflux-webhook-out: read, list and delete only.
  webhook_deliveries: entity(
    'webhook_deliveries',
    {
      id,
      subscription_id: ro('id'),
      event_id: ro('text'),
      event_type: ro('text'),
      attempt: ro('int'),
      status: ro('int', opt),
      outcome: ro('text'),
      duration_ms: ro('int'),
      response: ro('text', opt),
      error: ro('text', opt),
      attempted_at: ro('timestamptz'),
    },
    { creatable: false },
  ),
  // Per client or per user (migration 011). The password is written, never returned
  // (has_password): conflux-ftp-out reads it itself, since it must send it.
  ftp_targets: entity(
    'ftp_targets',
    {
      id,
      name: w('text', req),
      client: w('text', opt),
      user_ref: w('text', opt),
      host: w('text', req),
      port: w('int'),
      protocol: w('text'),
      username: w('text', req),
      password: w('text', { nullable: true, hidden: true }),
      secret_ref: w('text', opt),
      ca: w('text', opt),
      directory: w('text'),
      naming: w('text'),
      archive: w('text', opt),
      metadata: w('text', opt),
      max_connections: w('int'),
      enabled: w('bool'),
      created_at: createdAt,
      updated_at: updatedAt,
    },
    { computed: { has_password: '(password IS NOT NULL)' } },
  ),
  // The watermarks of conflux-http-pull (migration 009): read and list; delete resets a source
  // (its next pull starts from the beginning). Written only by the pull, after the flow stored a batch.
  pull_sources: entity(
    'pull_sources',
    { key: ro('text'), watermark: ro('json', opt), boundary: ro('json'), version: ro('int'), updated_at: updatedAt },
    { key: 'key', creatable: false },
  ),
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
  const spec = lookupEntity(name);
  if (!spec) return undefined;
  const cols = Object.entries(spec.columns);
  return {
    key: spec.key,
    create: spec.creatable ? cols.filter(([, c]) => c.input).map(([n]) => n) : [],
    required: spec.creatable ? cols.filter(([, c]) => c.required).map(([n]) => n) : [],
    update: cols.filter(([, c]) => c.input === 'always').map(([n]) => n),
    returned: [...returnedColumns(spec), ...Object.keys(spec.computed ?? {})],
    filterable: filterableColumns(spec),
  };
}

export function lookupEntity(name: string): Entity | undefined {
  return typeof name === 'string' && Object.hasOwn(ENTITIES, name) ? ENTITIES[name as BusinessEntity] : undefined;
}

/** The columns a row comes back with (computed fields aside). */
export const returnedColumns = (spec: Entity): string[] =>
  Object.entries(spec.columns)
    .filter(([, c]) => !c.hidden && !c.virtual)
    .map(([n]) => n);

export const filterableColumns = (spec: Entity): string[] => returnedColumns(spec).filter((n) => SCALAR_TYPES.has(spec.columns[n].type));

/** The fields of spec the input may write in this mode. */
export const writableColumns = (spec: Entity, mode: 'create' | 'update'): string[] =>
  Object.entries(spec.columns)
    .filter(([, c]) => (mode === 'create' ? c.input : c.input === 'always'))
    .map(([n]) => n);
