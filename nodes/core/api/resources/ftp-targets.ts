/**
 * FTP targets (the business entity ftp_targets): where files for a third party go.
 *
 *   GET /ftp-targets · POST /ftp-targets · GET, PATCH, DELETE /ftp-targets/{id}
 *
 * Tenant-scoped (a target belongs to the organisation, not to a user). The secret reference
 * (`secretRef`: the name under which the operator keeps the password, never the password) is
 * write-only like every secret: answers say hasSecret. v2 adds `url`, the target as an
 * ftp/ftps URL without credentials.
 */
import type { BusinessRow } from '../../stores/business';
import type { ApiContext, ApiOperation, ApiVersion, JsonSchema } from '../operation';
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
  obj,
  ok,
  onlyKnown,
  page,
  PAGE_PARAMS,
  pageBody,
  str,
  time,
  viaStore,
} from './common';

const PROTOCOLS = ['ftp', 'ftps', 'ftpes'];

const TARGET_V1 = obj(
  {
    id: int('The target id.'),
    name: str('A name, unique in your organisation.'),
    host: str('The server.'),
    port: int('The port.'),
    protocol: { type: 'string', enum: PROTOCOLS, description: 'ftp, ftps (implicit TLS) or ftpes (explicit TLS).' },
    username: str('The login.'),
    hasSecret: bool('Whether a secret reference is set (it is never returned).'),
    directory: str('The remote directory.'),
    naming: str('The file name rule, e.g. {tenant}/{device}/{date}-{id}.json.'),
    enabled: bool('false: nothing is sent.'),
    createdAt: time('When it was created.'),
  },
  undefined,
  'An FTP target.',
);
const TARGET_V2 = extend(TARGET_V1, { url: str('v2: the target as a URL without credentials, e.g. ftps://files.example.com:990/in.') }, ['url']);
const targetSchema = (v: ApiVersion) => (v === 1 ? TARGET_V1 : TARGET_V2);

/** API property (lower-case, as the framework hands it over) → business column. */
const COLUMNS: Record<string, string> = {
  name: 'name',
  host: 'host',
  port: 'port',
  protocol: 'protocol',
  username: 'username',
  secretref: 'secret_ref',
  directory: 'directory',
  naming: 'naming',
  enabled: 'enabled',
};
const API_NAMES: Record<string, string> = Object.fromEntries(Object.entries(COLUMNS).map(([api, col]) => [col, api === 'secretref' ? 'secretRef' : api]));

const requestSchema = (create: boolean): JsonSchema => ({
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1 },
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'Default 21.' },
    protocol: { type: 'string', enum: PROTOCOLS, description: 'Default ftps.' },
    username: { type: 'string', minLength: 1 },
    secretref: { type: ['string', 'null'], description: 'secretRef: where the operator keeps the password (write-only).' },
    directory: { type: 'string', description: "Default '/'." },
    naming: { type: 'string' },
    enabled: { type: 'boolean' },
  },
  ...(create ? { required: ['name', 'host', 'username'] } : { minProperties: 1 }),
  additionalProperties: false,
});

function targetBody(v: ApiVersion, t: BusinessRow): Record<string, unknown> {
  const body: Record<string, unknown> = {
    id: idOf(t.id),
    name: t.name,
    host: t.host,
    port: t.port,
    protocol: t.protocol,
    username: t.username,
    hasSecret: t.secret_ref !== null && t.secret_ref !== undefined,
    directory: t.directory,
    naming: t.naming,
    enabled: t.enabled,
    createdAt: iso(t.created_at),
  };
  if (v >= 2) {
    const host = String(t.host).includes(':') ? `[${String(t.host)}]` : String(t.host);
    const dir = String(t.directory).startsWith('/') ? String(t.directory) : `/${String(t.directory)}`;
    body.url = `${t.protocol === 'ftp' ? 'ftp' : 'ftps'}://${host}:${String(t.port)}${dir}`;
  }
  return body;
}

function data(ctx: ApiContext, create: boolean): Record<string, unknown> {
  const body = bodyObject(ctx);
  onlyKnown(body, Object.keys(COLUMNS));
  if (!create && Object.keys(body).length === 0) throw invalid('body', `give at least one of ${Object.keys(COLUMNS).join(', ')}`);
  if (body.protocol !== undefined && !PROTOCOLS.includes(body.protocol as string)) throw invalid('protocol', `protocol must be one of ${PROTOCOLS.join(', ')}`);
  if (body.port !== undefined && !(Number.isInteger(body.port) && (body.port as number) >= 1 && (body.port as number) <= 65535))
    throw invalid('port', 'port must be an integer from 1 to 65535');
  for (const f of ['name', 'host', 'username'])
    if (body[f] !== undefined && (typeof body[f] !== 'string' || body[f] === '')) throw invalid(f, `${f} must be a non-empty string`);
  return Object.fromEntries(Object.entries(body).map(([k, v]) => [COLUMNS[k], v]));
}

const tenantRow = async (ctx: ApiContext): Promise<BusinessRow> => {
  const id = idParam(ctx, 'id');
  return viaStore(() => business(ctx).read(ctx.identity.tenant, 'ftp_targets', id));
};

const NOT_FOUND = { description: 'No such FTP target in your organisation.' };
const base = { versions: [1, 2] as const, action: 'manage' as const, tags: ['ftp-targets'] };

export const FTP_OPERATIONS: ApiOperation[] = [
  {
    ...base,
    operationId: 'listFtpTargets',
    method: 'get',
    path: '/ftp-targets',
    summary: "Your organisation's FTP targets",
    parameters: [...PAGE_PARAMS],
    responses: (v) => ({ 200: ok('A page of FTP targets.', page(targetSchema(v))) }),
    async handle(ctx) {
      const r = await listRows(ctx, 'ftp_targets');
      return pageBody(
        r.items.map((t) => targetBody(ctx.version, t)),
        r.cursor,
      );
    },
  },
  {
    ...base,
    operationId: 'createFtpTarget',
    method: 'post',
    path: '/ftp-targets',
    summary: 'Add an FTP target',
    requestBody: () => requestSchema(true),
    responses: (v) => ({ 201: ok('The new target.', targetSchema(v)), 409: { description: 'The name is taken.' } }),
    async handle(ctx) {
      const row = await viaStore(() => business(ctx).create(ctx.identity.tenant, 'ftp_targets', data(ctx, true)), API_NAMES);
      return { status: 201, body: targetBody(ctx.version, row) };
    },
  },
  {
    ...base,
    operationId: 'getFtpTarget',
    method: 'get',
    path: '/ftp-targets/{id}',
    summary: 'One FTP target',
    parameters: [ID_PARAM],
    responses: (v) => ({ 200: ok('The target.', targetSchema(v)), 404: NOT_FOUND }),
    async handle(ctx) {
      return { body: targetBody(ctx.version, await tenantRow(ctx)) };
    },
  },
  {
    ...base,
    operationId: 'updateFtpTarget',
    method: 'patch',
    path: '/ftp-targets/{id}',
    summary: 'Change an FTP target',
    description: 'Only the given fields change; secretRef null clears it.',
    parameters: [ID_PARAM],
    requestBody: () => requestSchema(false),
    responses: (v) => ({ 200: ok('The target as changed.', targetSchema(v)), 404: NOT_FOUND, 409: { description: 'The name is taken.' } }),
    async handle(ctx) {
      const patch = data(ctx, false);
      const id = idParam(ctx, 'id');
      const row = await viaStore(() => business(ctx).update(ctx.identity.tenant, 'ftp_targets', id, patch), API_NAMES);
      return { body: targetBody(ctx.version, row) };
    },
  },
  {
    ...base,
    operationId: 'deleteFtpTarget',
    method: 'delete',
    path: '/ftp-targets/{id}',
    summary: 'Delete an FTP target',
    parameters: [ID_PARAM],
    responses: () => ({ 204: { description: 'Deleted.' }, 404: NOT_FOUND }),
    async handle(ctx) {
      const id = idParam(ctx, 'id');
      await viaStore(() => business(ctx).delete(ctx.identity.tenant, 'ftp_targets', id));
      return { status: 204 };
    },
  },
];
