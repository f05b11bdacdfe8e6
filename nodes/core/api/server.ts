/**
 * The REST API's server core: takes a parsed request and returns the answer, whatever serves the
 * HTTP (the conflux-api node mounts it on Node-RED). In order: the route (`<base>/v<major>/...`,
 * 404/405), maintenance (503 with Retry-After), Accept (406), the API key (401 the same for any
 * bad key, 403 for its scopes), the quota (410 with the reset; RateLimit headers from here on),
 * the body (JSON, bounded, names lower-cased, checked against the operation's schema: 400 names
 * the property), parameters and page limits (400 names the parameter), the handler (ApiError →
 * 400/404/409/503; anything else → 500 with a correlation id, logged, no detail), and `version`
 * in every body. Framework-free.
 */
import { apiAnswered } from '../metrics/metrics';
import { randomUUID } from 'node:crypto';
import type { SqlClient } from '../db/sql';
import { authenticateApiKey, type ApiKeyIdentity } from '../auth/api-key-store';
import { scopeRefusal } from '../auth/scopes';
import { problem, type HttpResponse, type ProblemSlug } from '../protocol/problem';
import { ApiError, type ApiOperation, type ApiParameter, type ApiStores, type ApiVersion } from './operation';
import { acceptsJson, apiKeyOf, checkParameters, headerOf, InputError, isJsonType, parseJsonBody, queryOf, type Headers } from './input';
import { buildOpenApi, type ServedOperation } from './openapi';
import { QuotaCounter, quotaEnabled, rateLimitHeaders, type QuotaPolicy } from './quota';
import { BodyValidator } from './validate';
import { API_VERSIONS, versionString } from './versions';

export interface PageLimits {
  /** The `limit` a list operation gets when the client gives none. */
  default: number;
  /** The largest `limit` a client may ask for (400 above it). */
  max: number;
}

export interface ApiServerOptions {
  /** `/api` (no trailing slash; '' serves at the root). */
  base: string;
  /** Headers that carry the key as it is (`EAPI-ELCLV2`), matched ignoring case. */
  keyHeaders: readonly string[];
  /** Whether `Authorization: Bearer <key>` is accepted. */
  bearer: boolean;
  quota: QuotaPolicy;
  pageLimits: PageLimits;
  maxBodyBytes: number;
  /** Seconds a client is told to wait in maintenance mode; undefined: not in maintenance. */
  maintenance?: number;
  db(): Promise<SqlClient>;
  stores(): Promise<ApiStores>;
  /**
   * How long a key's identity is reused without asking the database (ms; 0: every request asks).
   * A key revoked or expired meanwhile stops working within this time; unknown keys are never cached.
   */
  identityCacheMs?: number;
  /** Who presents a key; default: the api_keys table (auth/api-key-store.ts). */
  authenticate?(key: string): Promise<ApiKeyIdentity | undefined>;
  /** A 500's error with its correlation id, for the operator's log. */
  onInternalError(err: unknown, correlationId: string, request: string): void;
  /** The base path as clients see it (under Node-RED's httpNodeRoot): the OpenAPI document's server. */
  serverUrl?: string;
  title?: string;
  now?: () => number;
}

export interface ApiRequest {
  method: string;
  /** The path and query as sent (percent-encoded). */
  url: string;
  /** Lower-case names, as Node gives them. */
  headers: Headers;
  /** Reads the body (bounded to maxBodyBytes by the caller): the bytes, or the refusal to answer. */
  body(): Promise<Buffer | HttpResponse>;
}

interface Route {
  served: ServedOperation;
  segments: string[];
  owner: string;
}

const BODY_METHODS = new Set(['post', 'put', 'patch']);
const MAX_CACHED_IDENTITIES = 10_000;

export class ApiServer {
  private readonly routes: Route[] = [];
  private readonly docs = new Map<string, Record<string, unknown>>();
  private readonly validator = new BodyValidator();
  private readonly quota: QuotaCounter | undefined;
  private readonly now: () => number;
  private readonly identities = new Map<string, { identity: ApiKeyIdentity; until: number }>();

  constructor(private readonly options: ApiServerOptions) {
    this.now = options.now ?? Date.now;
    this.quota = quotaEnabled(options.quota)
      ? new QuotaCounter(options.db, options.quota, this.now, 1_000, (err) => options.onInternalError(err, randomUUID(), 'counting bytes'))
      : undefined;
  }

  /** Serves operations on behalf of owner (a node); refuses a method and path or an operationId already served. */
  add(owner: string, operations: readonly ApiOperation[]): void {
    const added: Route[] = [];
    for (const op of operations) {
      for (const version of op.versions) {
        const segments = splitPath(op.path);
        const clash = [...this.routes, ...added].find(
          (r) =>
            r.served.version === version &&
            ((r.served.op.method === op.method && samePattern(r.segments, segments)) || r.served.op.operationId === op.operationId),
        );
        if (clash)
          throw new Error(`${op.method.toUpperCase()} /v${version}${op.path} (${op.operationId}) clashes with ${clash.served.op.operationId} of another node`);
        added.push({ served: { op, version, parameters: this.effectiveParameters(op) }, segments, owner });
      }
    }
    this.routes.push(...added);
    this.docs.clear();
  }

  /** Stops serving owner's operations. */
  remove(owner: string): void {
    for (let i = this.routes.length - 1; i >= 0; i--) if (this.routes[i].owner === owner) this.routes.splice(i, 1);
    this.docs.clear();
  }

  /** Turns maintenance mode on (seconds for Retry-After) or off (undefined). */
  setMaintenance(retryAfterSeconds: number | undefined): void {
    this.options.maintenance = retryAfterSeconds;
  }

  /** The OpenAPI document of these versions (cached until the operations change). */
  openapi(versions: readonly ApiVersion[] = API_VERSIONS): Record<string, unknown> {
    const key = versions.join(',');
    let doc = this.docs.get(key);
    if (!doc) {
      doc = buildOpenApi(
        this.routes.map((r) => r.served),
        versions,
        {
          base: this.options.serverUrl ?? this.options.base,
          keyHeaders: this.options.keyHeaders,
          bearer: this.options.bearer,
          quotas: this.quota !== undefined,
          title: this.options.title,
        },
      );
      this.docs.set(key, doc);
    }
    return doc;
  }

  /** Flushes byte counts not yet written. */
  close(): Promise<void> {
    return this.quota?.close() ?? Promise.resolve();
  }

  async handle(req: ApiRequest): Promise<HttpResponse> {
    const correlationId = randomUUID();
    const answer = await this.answer(req, correlationId).catch((err: unknown) => {
      this.options.onInternalError(err, correlationId, `${req.method} ${req.url.split('?')[0]}`);
      return { response: this.internal(correlationId) } as Answer;
    });
    const response = answer.response;
    response.headers['x-correlation-id'] = correlationId;
    if (answer.charged && this.quota) this.quota.addBytes(answer.charged, Buffer.byteLength(response.body));
    apiAnswered(response.status);
    return response;
  }

  private async answer(req: ApiRequest, correlationId: string): Promise<Answer> {
    const [rawPath, search = ''] = splitUrl(req.url);
    const base = this.options.base.toLowerCase();
    const lower = rawPath.toLowerCase();
    const m = /^\/v(\d+)(\/.*)?$/i.exec(lower.startsWith(base) ? rawPath.slice(base.length) : '');
    const version = m ? (Number(m[1]) as ApiVersion) : undefined;
    if (!m || !version || !API_VERSIONS.includes(version)) {
      return {
        response: this.problem(
          2,
          'not-found',
          m ? `there is no version ${m[1]} of this API (${API_VERSIONS.map((v) => `v${v}`).join(', ')})` : 'nothing is served at this path',
        ),
      };
    }
    const rest = m[2] ?? '/';
    const method = req.method.toLowerCase();
    if (rest.toLowerCase() === '/openapi.json' && (method === 'get' || method === 'head')) {
      return {
        response: {
          status: 200,
          headers: { 'content-type': 'application/json', 'cache-control': 'no-cache' },
          body: JSON.stringify(this.openapi(version === 1 ? [1] : API_VERSIONS)),
        },
      };
    }
    const found = this.match(version, rest);
    if (found === undefined) return { response: this.problem(version, 'not-found', 'nothing is served at this path') };
    const route = found.find((f) => f.route.served.op.method === method);
    if (!route) {
      const allow = [...new Set(found.map((f) => f.route.served.op.method.toUpperCase()))].join(', ');
      return { response: this.problem(version, 'method-not-allowed', `this path answers ${allow}`, {}, { allow }) };
    }
    if (this.options.maintenance !== undefined) {
      const s = this.options.maintenance;
      return {
        response: this.problem(version, 'maintenance', `the API is down for maintenance; try again in ${s} s`, { retryAfter: s }, { 'retry-after': String(s) }),
      };
    }
    if (!acceptsJson(headerOf(req.headers, 'accept'))) {
      return { response: this.problem(version, 'not-acceptable', 'this API answers application/json (errors application/problem+json) only', {}) };
    }
    const { op, parameters } = route.route.served;
    const identity = await this.authenticate(req.headers);
    if (!identity) {
      return {
        response: this.problem(
          version,
          'unauthorized',
          'the API key is missing, unknown, revoked or expired',
          {},
          this.options.bearer ? { 'www-authenticate': 'Bearer realm="conflux-api"' } : {},
        ),
      };
    }
    const refused = scopeRefusal(identity.scopes, op.action);
    if (refused) return { response: this.problem(version, 'forbidden', refused) };

    let rate: Record<string, string> = {};
    let charged: ApiKeyIdentity | undefined;
    const read = BODY_METHODS.has(method) || op.requestBody ? await req.body() : Buffer.alloc(0);
    if (!Buffer.isBuffer(read)) return { response: withVersionMember(read, version) };
    if (this.quota) {
      const state = await this.quota.charge(identity, read.length);
      const now = this.now();
      rate = rateLimitHeaders(this.options.quota, state, now);
      if (!state.allowed) {
        const wait = Math.max(1, Math.ceil((state.resetAt - now) / 1000));
        const reset = new Date(state.resetAt).toISOString();
        return {
          response: this.problem(
            version,
            'quota-exceeded',
            `the API key's quota of ${state.exceeded} for this period is used up until ${reset}`,
            { reset, retryAfter: wait },
            { ...rate, 'retry-after': String(wait) },
          ),
        };
      }
      charged = identity;
    }
    const withRate = (response: HttpResponse): Answer => {
      Object.assign(response.headers, rate);
      return { response, charged };
    };
    let body: unknown;
    let query: Record<string, string>;
    try {
      if (read.length > 0 && !isJsonType(headerOf(req.headers, 'content-type'))) {
        return withRate(this.problem(version, 'unsupported-media-type', 'a body must be application/json'));
      }
      body = parseJsonBody(read);
      if (op.requestBody) this.validator.check(`${op.operationId}.v${version}`, op.requestBody(version), body);
      query = queryOf(search, parameters);
      const limit = parameters.find((p) => p.in === 'query' && p.name === 'limit');
      if (limit && query.limit === undefined) query.limit = String(this.options.pageLimits.default);
      checkParameters(parameters, { query, params: route.params });
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      return withRate(this.problem(version, 'invalid-request', err.detail, { parameter: err.param }));
    }
    try {
      const result = await op.handle({
        version,
        identity,
        params: route.params,
        query,
        body,
        stores: await this.options.stores(),
        correlationId,
        pageLimit: this.options.pageLimits.max,
      });
      const status = result.status ?? 200;
      const headers = { ...(result.headers ?? {}) };
      const versionMember = `"version":"${versionString(version)}"`;
      let bytes: Buffer;
      if (Buffer.isBuffer(result.json)) bytes = withMember(result.json, versionMember);
      else if (result.json !== undefined) bytes = withMember(Buffer.from(result.json), versionMember);
      else if (status !== 204 && result.body !== undefined) bytes = Buffer.from(JSON.stringify({ ...result.body, version: versionString(version) }));
      else return withRate({ status, headers, body: '' });
      // As bytes with their length: written to the socket in one piece, and counted without encoding twice.
      return withRate({ status, headers: { ...headers, 'content-type': 'application/json', 'content-length': String(bytes.length) }, body: bytes });
    } catch (err) {
      if (err instanceof ApiError) {
        const slug: ProblemSlug = err.kind;
        return withRate(this.problem(version, slug, err.detail, err.kind === 'invalid-request' ? { parameter: err.param } : {}));
      }
      this.options.onInternalError(err, correlationId, `${req.method} ${rawPath}`);
      return withRate(this.internal(correlationId, version));
    }
  }

  private internal(correlationId: string, version: ApiVersion = 2): HttpResponse {
    return this.problem(version, 'internal-error', `an internal error occurred; the operator finds it in the log under ${correlationId}`, { correlationId });
  }

  private problem(
    version: ApiVersion,
    slug: ProblemSlug,
    detail: string,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ): HttpResponse {
    const { status, headers: h, body } = problem(slug, detail, { ...extra, version: versionString(version) }, headers);
    return { status, headers: h, body };
  }

  private async authenticate(headers: Headers): Promise<ApiKeyIdentity | undefined> {
    const key = apiKeyOf(headers, this.options.keyHeaders, this.options.bearer);
    if (!key) return undefined;
    const ttl = this.options.identityCacheMs ?? 0;
    const now = this.now();
    const cached = ttl > 0 ? this.identities.get(key) : undefined;
    if (cached && cached.until > now) return cached.identity;
    const identity = this.options.authenticate ? await this.options.authenticate(key) : await authenticateApiKey(await this.options.db(), key);
    if (identity && ttl > 0) {
      if (this.identities.size >= MAX_CACHED_IDENTITIES) this.identities.delete(this.identities.keys().next().value as string);
      this.identities.set(key, { identity, until: now + ttl });
    } else this.identities.delete(key);
    return identity;
  }

  /** The routes of this version whose pattern matches the path (any method), with their parameters; undefined when none. */
  private match(version: ApiVersion, path: string): Array<{ route: Route; params: Record<string, string> }> | undefined {
    const parts = splitPath(path);
    const out: Array<{ route: Route; params: Record<string, string> }> = [];
    for (const route of this.routes) {
      if (route.served.version !== version || route.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < parts.length && ok; i++) {
        const seg = route.segments[i];
        if (seg.startsWith('{')) {
          try {
            params[seg.slice(1, -1)] = decodeURIComponent(parts[i]);
          } catch {
            ok = false;
          }
        } else ok = seg.toLowerCase() === parts[i].toLowerCase();
      }
      if (ok) out.push({ route, params });
    }
    // `/devices/search` before `/devices/{serial}`: the more literal segments, the better the match.
    const literals = (r: Route) => r.segments.filter((seg) => !seg.startsWith('{')).length;
    out.sort((a, b) => literals(b.route) - literals(a.route));
    return out.length > 0 ? out : undefined;
  }

  /** The operation's parameters with the configured page limits on `limit`, and path parameters required. */
  private effectiveParameters(op: ApiOperation): ApiParameter[] {
    const { default: dflt, max } = this.options.pageLimits;
    return (op.parameters ?? []).map((p) => {
      if (p.in === 'path') return { ...p, required: true };
      if (p.name !== 'limit') return p;
      const own = typeof p.schema.maximum === 'number' ? p.schema.maximum : max;
      const maximum = Math.min(own, max);
      return { ...p, schema: { ...p.schema, type: 'integer', minimum: 1, maximum, default: Math.min(dflt, maximum) } };
    });
  }
}

interface Answer {
  response: HttpResponse;
  /** The key whose byte quota the answer counts against. */
  charged?: ApiKeyIdentity;
}

/** A problem made elsewhere (the body reader's 413, 408) with the version member every body has. */
function withVersionMember(response: HttpResponse, version: ApiVersion): HttpResponse {
  const document = JSON.parse(String(response.body)) as Record<string, unknown>;
  return { ...response, body: JSON.stringify({ ...document, version: versionString(version) }) };
}

/** An object's JSON bytes with one more member (`"name":value`) before its closing brace. */
function withMember(json: Buffer, member: string): Buffer {
  if (json.length <= 2) return Buffer.from(`{${member}}`);
  return Buffer.concat([json.subarray(0, -1), Buffer.from(`,${member}}`)]);
}

function splitUrl(url: string): [string, string?] {
  const q = url.indexOf('?');
  return q < 0 ? [url] : [url.slice(0, q), url.slice(q + 1)];
}

function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

function samePattern(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((s, i) => (s.startsWith('{') && b[i].startsWith('{')) || s.toLowerCase() === b[i].toLowerCase());
}
