/**
 * FTP targets (the business entity ftp_targets): where files for a third party go.
 *
 *   GET /ftp-targets · POST /ftp-targets · GET, PATCH, DELETE /ftp-targets/{id}
 *
 * Tenant-scoped. A target serves a client (every user of the client delivers there) or one user
 * (his own server), as the source system names them (`client`, `userRef`; migration 011); the
 * password (`password`, or `secretRef`: env:CONFLUX_FTP_<NAME>, the variable that holds it) is
 * write-only like every secret: answers say hasSecret. Naming rules (docs/ftp.md) are checked on
 * write. v2 adds `url`, the target as an ftp/ftps URL without credentials.
 */
import type { BusinessRow } from '../../stores/business';
import { checkRule } from '../../ftp/naming';
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
    client: { type: ['string', 'null'], description: 'The client it serves: every user of the client delivers here (unless the user has his own).' },
    userRef: { type: ['string', 'null'], description: 'The user it serves (his own server).' },
    host: str('The server.'),
    port: int('The port.'),
    protocol: { type: 'string', enum: PROTOCOLS, description: 'ftp, ftps (implicit TLS) or ftpes (explicit TLS).' },
    username: str('The login.'),
    hasSecret: bool('Whether a password or a secret reference is set (neither is ever returned).'),
    hasCa: bool('Whether a CA certificate is set for the TLS check.'),
    directory: str('The remote directory.'),
    naming: str('The file name rule, e.g. {vin}_{nn:02}.{ext}.'),
    archive: { type: ['string', 'null'], description: 'The zip name rule, e.g. {vin}.zip; null: files one by one.' },
    metadata: { type: ['string', 'null'], description: 'The metadata JSON name rule, e.g. {vin}.json; null: none.' },
    maxConnections: int('Connections open to this server at most.'),
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
  client: 'client',
  userref: 'user_ref',
  host: 'host',
  port: 'port',
  protocol: 'protocol',
  username: 'username',
  password: 'password',
  secretref: 'secret_ref',
  ca: 'ca',
  directory: 'directory',
  naming: 'naming',
  archive: 'archive',
  metadata: 'metadata',
  maxconnections: 'max_connections',
  enabled: 'enabled',
};
const CAMEL: Record<string, string> = { secretref: 'secretRef', userref: 'userRef', maxconnections: 'maxConnections' };
const API_NAMES: Record<string, string> = Object.fromEntries(Object.entries(COLUMNS).map(([api, col]) => [col, CAMEL[api] ?? api]));
const RULES = ['naming', 'archive', 'metadata'];

const requestSchema = (create: boolean): JsonSchema => ({
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1 },
    client: { type: ['string', 'null'], minLength: 1, description: 'The client it serves.' },
    userref: { type: ['string', 'null'], minLength: 1, description: 'userRef: the user it serves.' },
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'Default 21.' },
    protocol: { type: 'string', enum: PROTOCOLS, description: 'Default ftps.' },
    username: { type: 'string', minLength: 1 },
    password: { type: ['string', 'null'], description: 'The FTP password (write-only).' },
    secretref: { type: ['string', 'null'], description: 'secretRef: env:CONFLUX_FTP_<NAME>, the variable that holds the password (write-only).' },
    ca: { type: ['string', 'null'], description: 'PEM certificate(s) the server certificate must chain to.' },
    directory: { type: 'string', description: "Default '/'." },
    naming: { type: 'string', description: 'Default {vin}_{nn:02}.{ext}.' },
    archive: { type: ['string', 'null'] },
    metadata: { type: ['string', 'null'] },
    maxconnections: { type: 'integer', minimum: 1, maximum: 16, description: 'maxConnections, default 2.' },
    enabled: { type: 'boolean' },
  },
  ...(create ? { required: ['name', 'host', 'username'] } : { minProperties: 1 }),
  additionalProperties: false,
});

function targetBody(v: ApiVersion, t: BusinessRow): Record<string, unknown> {
  const body: Record<string, unknown> = {
    id: idOf(t.id),
    name: t.name,
    client: t.client ?? null,
    userRef: t.user_ref ?? null,
    host: t.host,
    port: t.port,
    protocol: t.protocol,
    username: t.username,
    hasSecret: Boolean(t.has_password) || (t.secret_ref !== null && t.secret_ref !== undefined),
    hasCa: t.ca !== null && t.ca !== undefined,
    directory: t.directory,
    naming: t.naming,
    archive: t.archive ?? null,
    metadata: t.metadata ?? null,
    maxConnections: t.max_connections,
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
  if (
    body.maxconnections !== undefined &&
    !(Number.isInteger(body.maxconnections) && (body.maxconnections as number) >= 1 && (body.maxconnections as number) <= 16)
  )
    throw invalid('maxConnections', 'maxConnections must be an integer from 1 to 16');
  if (typeof body.secretref === 'string' && !/^env:CONFLUX_FTP_[A-Z0-9_]+$/.test(body.secretref))
    throw invalid('secretRef', 'secretRef must be env:CONFLUX_FTP_<NAME> (an environment variable of the platform holding the password)');
  for (const f of RULES) {
    if (body[f] === undefined || body[f] === null) continue;
    try {
      checkRule(body[f] as string);
    } catch (err) {
      throw invalid(f, (err as Error).message);
    }
  }
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
