/**
 * The federation proxy's configuration (seed 003, docs/federation.md), tenant-scoped, `manage` scope:
 *
 *   GET, PUT /federation/settings                          Config: the local system's API and App
 *   GET, POST /federation/apps; GET, PATCH, DELETE …/{id}  App: the federation's applications, JIDs
 *   GET, POST /federation/users; …/{id}                    User: the organisation's users, federationId
 *   GET, POST /federation/user-apps; …/{id}                UserApp: a user's login on an application
 *   GET, POST /federation/consumers; …/{id}                Consumer: what data goes to whom
 *
 * A UserApp's password and secretRef are write-only like every secret (hasPassword, hasSecretRef).
 * A consumer's mapping travels as pairs [{from, to}] (request bodies are lower-cased at every
 * depth, which would change ids used as object keys); v2 adds `watermark`, how far Push Outbox has
 * taken the consumer's data. Deleting a user deletes what hangs on it (UserApps, consumers, its
 * API keys and webhook subscriptions).
 */
import type { BusinessRow } from '../../stores/business';
import { parseSettings, SETTINGS_FIELDS, SETTINGS_KEY, SettingsError } from '../../federation/settings';
import { watermarkKey } from '../../federation/push';
import { ApiError, type ApiContext, type ApiOperation, type ApiVersion, type JsonSchema } from '../operation';
import { arr, bodyObject, bool, extend, idOf, int, iso, nullable, obj, ok, str, strings, time } from './common';
import { crudOperations, type CrudField } from './crud';

const ID = { type: 'integer', minimum: 1 };
const TEXT = { type: 'string', minLength: 1 };
const OPT_TEXT = { type: ['string', 'null'] };
const opt = (v: unknown) => (v === undefined ? null : v);

// ─── Settings ─────────────────────────────────────────────────────────────────────────────

const SETTINGS_SCHEMA = obj(
  {
    application: str('The name of the App that is the local system (Sen1Message applicationSrc; its UserApps hold the logins).'),
    baseUrl: str('The local system API, e.g. http://legacy.example:8080.'),
    readingsPath: str('GET: the readings to extract. Default /api/readings.'),
    itemsPath: str('Where the readings are in that answer; empty: the answer is the array.'),
    ingestPath: str('POST: where incoming data is written. Default /api/ingest.'),
    watermarkParam: str('The query parameter carrying how far a consumer has got. Default after.'),
    watermarkKind: { type: 'string', enum: ['id', 'timestamp'], description: 'What the watermark is. Default id.' },
    watermarkPath: str("The reading's field holding it. Default id."),
    pageSize: int('Readings asked for per request (sent as limit). Default 500.'),
    updatedAt: time('When they were last changed.'),
  },
  undefined,
  "The proxy's settings.",
);

const SETTINGS_REQUEST: JsonSchema = {
  type: 'object',
  properties: {
    application: TEXT,
    baseurl: { type: 'string', minLength: 1 },
    readingspath: { type: 'string' },
    itemspath: { type: 'string' },
    ingestpath: { type: 'string' },
    watermarkparam: { type: 'string' },
    watermarkkind: { type: 'string', enum: ['id', 'timestamp'] },
    watermarkpath: { type: 'string' },
    pagesize: { type: 'integer', minimum: 1, maximum: 10_000 },
  },
  required: ['application', 'baseurl'],
  additionalProperties: false,
};

const settingsAnswer = (value: unknown, updatedAt: unknown) => ({ ...parseSettings(value), updatedAt: iso(updatedAt) });

const SETTINGS_OPERATIONS: ApiOperation[] = [
  {
    versions: [1, 2],
    action: 'manage',
    tags: ['federation'],
    operationId: 'getFederationSettings',
    method: 'get',
    path: '/federation/settings',
    summary: "The federation proxy's settings",
    responses: () => ({ 200: ok('The settings (404 while none are set).', SETTINGS_SCHEMA) }),
    async handle(ctx) {
      const { rows } = await ctx.stores.db.query<{ value: unknown; updated_at: unknown }>(
        'SELECT value, updated_at FROM config WHERE tenant_id = $1 AND key = $2',
        [ctx.identity.tenant, SETTINGS_KEY],
      );
      if (rows.length === 0) throw new ApiError('not-found', 'no federation settings yet: PUT them');
      return { body: settingsAnswer(rows[0].value, rows[0].updated_at) };
    },
  },
  {
    versions: [1, 2],
    action: 'manage',
    tags: ['federation'],
    operationId: 'putFederationSettings',
    method: 'put',
    path: '/federation/settings',
    summary: "Set the federation proxy's settings",
    description: 'Replaces them all; what is left out takes its default.',
    requestBody: () => SETTINGS_REQUEST,
    responses: () => ({ 200: ok('The settings as stored.', SETTINGS_SCHEMA) }),
    async handle(ctx) {
      const body = bodyObject(ctx);
      const byLower = new Map(SETTINGS_FIELDS.map((f) => [f.toLowerCase(), f]));
      const value: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(body)) value[byLower.get(k) ?? k] = v;
      let settings;
      try {
        settings = parseSettings(value);
      } catch (err) {
        if (err instanceof SettingsError) throw new ApiError('invalid-request', err.message, err.field);
        throw err;
      }
      const { rows } = await ctx.stores.db.query<{ value: unknown; updated_at: unknown }>(
        `INSERT INTO config (tenant_id, key, value) VALUES ($1, $2, $3::jsonb)
         ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, updated_at = now()
         RETURNING value, updated_at`,
        [ctx.identity.tenant, SETTINGS_KEY, JSON.stringify(settings)],
      );
      return { body: settingsAnswer(rows[0].value, rows[0].updated_at) };
    },
  },
];

// ─── Apps, users, user apps, consumers ─────────────────────────────────────────────────────

const APP = obj(
  {
    id: int('The application id.'),
    name: str('A name, unique in your organisation (Sen1Message applicationSrc/applicationDst).'),
    jid: str('Its XMPP address, where messages for it go.'),
    description: nullable(str('What it is.')),
    createdAt: time('When it was added.'),
  },
  undefined,
  'A federation application.',
);

const USER = obj(
  {
    id: int('The user id.'),
    username: str('The login name in your organisation.'),
    federationId: nullable(str('The id unique across the federation (Sen1Message username).')),
    displayName: nullable(str('A name to show.')),
    email: nullable(str('An e-mail address.')),
    createdAt: time('When it was added.'),
    disabledAt: nullable(time('When it was disabled (its consumers stop).')),
  },
  undefined,
  'A user.',
);

const USER_APP_V1 = obj(
  {
    id: int('The id.'),
    userId: int('The user.'),
    appId: int('The application the login is for (the local system, for the federation jobs).'),
    login: nullable(str('The login.')),
    hasPassword: bool('Whether a password is set (it is never returned).'),
    hasSecretRef: bool('Whether a secret reference is set (it is never returned).'),
    createdAt: time('When it was added.'),
    updatedAt: time('When it was last changed.'),
  },
  undefined,
  "A user's login on an application.",
);
const USER_APP_V2 = extend(USER_APP_V1, { roles: strings('v2: the roles of the login.') }, ['roles']);

const SOURCE = obj(
  { objects: strings('The object ids of the local system to take; absent: all.'), names: strings('The datum names to take; absent: all.') },
  [],
  'Which data of the local system the consumer takes.',
);
const PAIRS = arr(obj({ from: str('A local object id.'), to: str('Its id in the target application.') }), 'Object ids mapped, local → target.');

const CONSUMER_V1 = obj(
  {
    id: int('The consumer id.'),
    userId: int('The user whose data it is.'),
    userAppId: nullable(int("The login used to extract; null: the user's login on the local application.")),
    targetAppId: int('The application the data goes to.'),
    source: SOURCE,
    mapping: PAIRS,
    enabled: bool('false: Push Outbox skips it.'),
    createdAt: time('When it was added.'),
    updatedAt: time('When it was last changed.'),
  },
  undefined,
  'A consumer: what data of which user goes to which application.',
);
const CONSUMER_V2 = extend(
  CONSUMER_V1,
  { watermark: { type: ['string', 'number', 'null'], description: 'v2: how far Push Outbox has taken its data (null: not yet).' } },
  ['watermark'],
);

/** Pairs [{from, to}] → {from: to}; 400 on anything else. */
function mappingColumn(value: unknown): Record<string, string> | null {
  if (!Array.isArray(value)) throw new ApiError('invalid-request', 'mapping must be an array of {from, to}', 'mapping');
  const out: Record<string, string> = {};
  for (const p of value as Array<Record<string, unknown>>) {
    if (typeof p?.from !== 'string' || typeof p.to !== 'string' || p.from === '' || p.to === '')
      throw new ApiError('invalid-request', 'each mapping pair needs non-empty from and to', 'mapping');
    out[p.from] = p.to;
  }
  return Object.keys(out).length ? out : null;
}

const pairsOf = (mapping: unknown): Array<{ from: string; to: string }> =>
  mapping !== null && typeof mapping === 'object' && !Array.isArray(mapping)
    ? Object.entries(mapping as Record<string, unknown>)
        .filter((e): e is [string, string] => typeof e[1] === 'string')
        .map(([from, to]) => ({ from, to }))
    : [];

function sourceOf(source: unknown): { objects?: string[]; names?: string[] } {
  const s = (source ?? {}) as Record<string, unknown>;
  const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);
  const objects = list(s.objects);
  const names = list(s.names);
  return { ...(objects ? { objects } : {}), ...(names ? { names } : {}) };
}

const field = (name: string, column: string, schema: JsonSchema, extra: Partial<CrudField> = {}): CrudField => ({ name, column, schema, ...extra });

async function consumerAnswer(ctx: ApiContext, c: BusinessRow): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {
    id: idOf(c.id),
    userId: idOf(c.user_id),
    userAppId: c.user_application_id === null || c.user_application_id === undefined ? null : idOf(c.user_application_id),
    targetAppId: idOf(c.target_application_id),
    source: sourceOf(c.source),
    mapping: pairsOf(c.mapping),
    enabled: c.enabled,
    createdAt: iso(c.created_at),
    updatedAt: iso(c.updated_at),
  };
  if (ctx.version >= 2) {
    const { rows } = await ctx.stores.db.query<{ watermark: unknown }>('SELECT watermark FROM pull_sources WHERE tenant_id = $1 AND key = $2', [
      ctx.identity.tenant,
      watermarkKey(String(c.id)),
    ]);
    const w = rows[0]?.watermark;
    body.watermark = typeof w === 'string' || typeof w === 'number' ? w : null;
  }
  return body;
}

const byVersion = (v1: JsonSchema, v2: JsonSchema) => (v: ApiVersion) => (v === 1 ? v1 : v2);

export const FEDERATION_OPERATIONS: ApiOperation[] = [
  ...SETTINGS_OPERATIONS,
  ...crudOperations({
    entity: 'applications',
    path: '/federation/apps',
    tag: 'federation',
    singular: 'FederationApp',
    plural: 'FederationApps',
    noun: 'application',
    fields: [field('name', 'name', TEXT, { required: true }), field('jid', 'jid', TEXT, { required: true }), field('description', 'description', OPT_TEXT)],
    schema: () => APP,
    answer: (_ctx, a) => ({ id: idOf(a.id), name: a.name, jid: a.jid, description: opt(a.description), createdAt: iso(a.created_at) }),
  }),
  ...crudOperations({
    entity: 'users',
    path: '/federation/users',
    tag: 'federation',
    singular: 'FederationUser',
    plural: 'FederationUsers',
    noun: 'user',
    fields: [
      field('username', 'username', TEXT, { required: true }),
      field('federationId', 'federation_id', OPT_TEXT),
      field('displayName', 'display_name', OPT_TEXT),
      field('email', 'email', OPT_TEXT),
    ],
    schema: () => USER,
    answer: (_ctx, u) => ({
      id: idOf(u.id),
      username: u.username,
      federationId: opt(u.federation_id),
      displayName: opt(u.display_name),
      email: opt(u.email),
      createdAt: iso(u.created_at),
      disabledAt: iso(u.disabled_at),
    }),
  }),
  ...crudOperations({
    entity: 'user_applications',
    path: '/federation/user-apps',
    tag: 'federation',
    singular: 'FederationUserApp',
    plural: 'FederationUserApps',
    noun: 'user login',
    fields: [
      field('userId', 'user_id', ID, { required: true, createOnly: true }),
      field('appId', 'application_id', ID, { required: true, createOnly: true }),
      field('login', 'login', OPT_TEXT),
      field('password', 'password', { type: ['string', 'null'], description: 'Write-only: sent to the application, never returned.' }),
      field('secretRef', 'secret_ref', {
        type: ['string', 'null'],
        description: 'Write-only: the Node-RED setting or environment variable holding the password.',
      }),
      field('roles', 'roles', { type: 'array', items: { type: 'string' } }),
    ],
    schema: byVersion(USER_APP_V1, USER_APP_V2),
    answer: (ctx, ua) => ({
      id: idOf(ua.id),
      userId: idOf(ua.user_id),
      appId: idOf(ua.application_id),
      login: opt(ua.login),
      hasPassword: ua.has_password === true,
      hasSecretRef: ua.secret_ref !== null && ua.secret_ref !== undefined,
      createdAt: iso(ua.created_at),
      updatedAt: iso(ua.updated_at),
      ...(ctx.version >= 2 ? { roles: ua.roles } : {}),
    }),
  }),
  ...crudOperations({
    entity: 'consumers',
    path: '/federation/consumers',
    tag: 'federation',
    singular: 'FederationConsumer',
    plural: 'FederationConsumers',
    noun: 'consumer',
    fields: [
      field('userId', 'user_id', ID, { required: true }),
      field('userAppId', 'user_application_id', { type: ['integer', 'null'], minimum: 1 }),
      field('targetAppId', 'target_application_id', ID, { required: true }),
      field(
        'source',
        'source',
        {
          type: 'object',
          properties: { objects: { type: 'array', items: { type: 'string' } }, names: { type: 'array', items: { type: 'string' } } },
          additionalProperties: false,
        },
        { required: true },
      ),
      field(
        'mapping',
        'mapping',
        {
          type: ['array', 'null'],
          items: { type: 'object', properties: { from: TEXT, to: TEXT }, required: ['from', 'to'], additionalProperties: false },
        },
        { toColumn: mappingColumn },
      ),
      field('enabled', 'enabled', { type: 'boolean' }),
    ],
    schema: byVersion(CONSUMER_V1, CONSUMER_V2),
    answer: consumerAnswer,
  }),
];
