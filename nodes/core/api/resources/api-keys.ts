/**
 * API keys of the organisation (the business entity api_keys; auth/api-key.ts makes them):
 *
 *   GET    /api-keys          list (paged): prefix, name, scopes, dates; never the hash
 *   POST   /api-keys          create: the key itself is in this answer and never again
 *   DELETE /api-keys/{id}     revoke (revokedAt set; the key stops working at once)
 *
 * A key may not hand out more than it holds: a caller with scopes (other than `*`) can create
 * keys only with a non-empty subset of its own scopes. A new key belongs to the caller's user.
 * v2 adds `active` (neither revoked nor expired) and `userId`.
 */
import { ACTION_SCOPES } from '../../auth/scopes';
import type { BusinessRow } from '../../stores/business';
import { ApiError, type ApiContext, type ApiOperation, type ApiVersion, type JsonSchema } from '../operation';
import {
  bodyObject,
  bool,
  business,
  extend,
  ID_PARAM,
  idOf,
  idParam,
  int,
  invalid,
  iso,
  listRows,
  nullable,
  obj,
  ok,
  onlyKnown,
  page,
  PAGE_PARAMS,
  pageBody,
  str,
  strings,
  time,
  viaStore,
} from './common';

/** Every scope some action accepts. */
export const KNOWN_SCOPES: readonly string[] = [...new Set(Object.values(ACTION_SCOPES).flat())].sort();

const KEY_V1 = obj(
  {
    id: int('The key id.'),
    prefix: str('The first characters of the key: a label to recognise it by, not a secret.'),
    name: nullable(str('A name.')),
    scopes: strings('What the key may do; empty: everything.'),
    createdAt: time('When it was created.'),
    expiresAt: nullable(time('When it stops working; null: never.')),
    lastUsedAt: nullable(time('When it was last used (to the minute).')),
    revokedAt: nullable(time('When it was revoked; null while it is not.')),
  },
  undefined,
  'An API key (without its secret).',
);
const KEY_V2 = extend(KEY_V1, { active: bool('v2: neither revoked nor expired.'), userId: nullable(int('v2: the user the key belongs to.')) }, [
  'active',
  'userId',
]);
const keySchema = (v: ApiVersion) => (v === 1 ? KEY_V1 : KEY_V2);
const createdSchema = (v: ApiVersion): JsonSchema =>
  extend(keySchema(v), { key: str('The key itself. Shown only in this answer: store it now.', { pattern: '^cfx_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{43}$' }) }, [
    'key',
  ]);

const requestSchema: JsonSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 200 },
    scopes: { type: 'array', items: { type: 'string', enum: [...KNOWN_SCOPES] }, description: 'Empty or absent: everything your own key may do.' },
    expiresat: { type: 'string', format: 'date-time', description: 'expiresAt: when the key stops working.' },
  },
  additionalProperties: false,
};

function keyBody(v: ApiVersion, k: BusinessRow): Record<string, unknown> {
  const body: Record<string, unknown> = {
    id: idOf(k.id),
    prefix: k.prefix,
    name: k.name ?? null,
    scopes: k.scopes ?? [],
    createdAt: iso(k.created_at),
    expiresAt: iso(k.expires_at),
    lastUsedAt: iso(k.last_used_at),
    revokedAt: iso(k.revoked_at),
  };
  if (v >= 2) {
    const expired = k.expires_at instanceof Date && k.expires_at.getTime() <= Date.now();
    Object.assign(body, { active: !k.revoked_at && !expired, userId: k.user_id === null || k.user_id === undefined ? null : idOf(k.user_id) });
  }
  return body;
}

/** The scopes a new key gets: never more than the caller's. */
function grantedScopes(ctx: ApiContext, requested: unknown): string[] {
  if (requested !== undefined && (!Array.isArray(requested) || requested.some((s) => typeof s !== 'string')))
    throw invalid('scopes', 'scopes must be an array of texts');
  const wanted = [...new Set((requested as string[] | undefined) ?? [])];
  const unknown = wanted.find((s) => !KNOWN_SCOPES.includes(s));
  if (unknown !== undefined) throw invalid('scopes', `unknown scope ${JSON.stringify(unknown)}; known: ${KNOWN_SCOPES.join(', ')}`);
  const own = ctx.identity.scopes;
  const unlimited = own.length === 0 || own.includes('*');
  if (unlimited) return wanted;
  if (wanted.length === 0) return [...own];
  const beyond = wanted.find((s) => !own.includes(s));
  if (beyond !== undefined) throw invalid('scopes', `scope ${JSON.stringify(beyond)} is beyond your own key's (${own.join(', ')})`);
  return wanted;
}

const NOT_FOUND = { description: 'No such API key in your organisation.' };
const base = { versions: [1, 2] as const, action: 'keys' as const, tags: ['api-keys'] };

export const API_KEY_OPERATIONS: ApiOperation[] = [
  {
    ...base,
    operationId: 'listApiKeys',
    method: 'get',
    path: '/api-keys',
    summary: "Your organisation's API keys",
    description: 'Revoked keys are listed too (revokedAt set). The keys themselves are never shown again.',
    parameters: [...PAGE_PARAMS],
    responses: (v) => ({ 200: ok('A page of API keys.', page(keySchema(v))) }),
    async handle(ctx) {
      const r = await listRows(ctx, 'api_keys');
      return pageBody(
        r.items.map((k) => keyBody(ctx.version, k)),
        r.cursor,
      );
    },
  },
  {
    ...base,
    operationId: 'createApiKey',
    method: 'post',
    path: '/api-keys',
    summary: 'Create an API key',
    description: 'The answer carries the key itself, once. Its scopes cannot exceed your own key’s.',
    requestBody: () => requestSchema,
    responses: (v) => ({ 201: ok('The new key, with its secret.', createdSchema(v)) }),
    async handle(ctx) {
      const body = ctx.body === undefined || ctx.body === null ? {} : bodyObject(ctx);
      onlyKnown(body, ['name', 'scopes', 'expiresat']);
      if (body.name !== undefined && typeof body.name !== 'string') throw invalid('name', 'name must be text');
      let expires: Date | undefined;
      if (body.expiresat !== undefined) {
        expires = typeof body.expiresat === 'string' ? new Date(body.expiresat) : new Date(NaN);
        if (Number.isNaN(expires.getTime()) || !/(Z|[+-]\d\d:?\d\d)$/i.test(String(body.expiresat)))
          throw invalid('expiresAt', 'expiresAt must be an ISO 8601 time with an offset');
        if (expires.getTime() <= Date.now()) throw invalid('expiresAt', 'expiresAt must be in the future');
      }
      const data: Record<string, unknown> = { scopes: grantedScopes(ctx, body.scopes) };
      if (body.name !== undefined) data.name = body.name;
      if (expires) data.expires_at = expires;
      if (ctx.identity.user_id !== null) data.user_id = String(ctx.identity.user_id);
      const row = await viaStore(() => business(ctx).create(ctx.identity.tenant, 'api_keys', data), { expires_at: 'expiresAt' });
      return { status: 201, body: { ...keyBody(ctx.version, row), key: row.key } };
    },
  },
  {
    ...base,
    operationId: 'revokeApiKey',
    method: 'delete',
    path: '/api-keys/{id}',
    summary: 'Revoke an API key',
    description: 'The key stops working at once. Revoking a revoked key changes nothing.',
    parameters: [ID_PARAM],
    responses: (v) => ({ 200: ok('The revoked key.', keySchema(v)), 404: NOT_FOUND }),
    async handle(ctx) {
      const id = idParam(ctx, 'id');
      const store = business(ctx);
      const row = await viaStore(() => store.read(ctx.identity.tenant, 'api_keys', id)).catch((err: unknown) => {
        throw err instanceof ApiError && err.kind === 'not-found' ? new ApiError('not-found', `no API key ${id}`) : err;
      });
      const revoked = row.revoked_at ? row : await viaStore(() => store.update(ctx.identity.tenant, 'api_keys', id, { revoked_at: new Date() }));
      return { body: keyBody(ctx.version, revoked) };
    },
  },
];
