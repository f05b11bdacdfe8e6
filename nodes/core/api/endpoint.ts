/**
 * An integrator's own endpoint as an API operation (conflux-api-endpoint): its method, path,
 * versions, key action, query parameters and request/response schemas come from the node; its
 * handler hands the request to the flow and waits for the flow's answer. The flow answers with
 * the core `http response` node, as after an `http in`: msg.res here is an object that node can
 * write to (status, headers, payload), and the answer goes out through the API (version added,
 * bytes counted, errors as problem documents). Framework-free.
 */
import { ApiError, type ApiContext, type ApiOperation, type ApiResult, type ApiVersion, type HttpMethod, type JsonSchema } from './operation';
import type { ApiKeyAction } from '../auth/scopes';
import { ACTION_SCOPES } from '../auth/scopes';
import { apiAjv } from './validate';

export interface EndpointSpec {
  method: HttpMethod;
  /** `/orders/{id}`: relative to `/api/v<major>`. */
  path: string;
  versions: ApiVersion[];
  action: ApiKeyAction;
  summary: string;
  description?: string;
  /** Query parameter names (optional ones, strings). */
  query: string[];
  requestSchema?: JsonSchema;
  responseSchema?: JsonSchema;
  /** The status the flow answers when all is well (documented). */
  status: number;
}

export interface EndpointFields {
  method?: string;
  path?: string;
  versions?: string;
  action?: string;
  summary?: string;
  description?: string;
  query?: string;
  requestSchema?: string;
  responseSchema?: string;
  status?: string | number;
}

const METHODS: readonly HttpMethod[] = ['get', 'post', 'put', 'patch', 'delete'];
const SEGMENT = /^([A-Za-z0-9._~-]+|\{[A-Za-z_][A-Za-z0-9_]*\})$/;

function schemaField(text: string | undefined, what: string): JsonSchema | undefined {
  if (!text || text.trim() === '') return undefined;
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch {
    throw new Error(`the ${what} schema is not JSON`);
  }
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) throw new Error(`the ${what} schema is not a JSON object`);
  try {
    apiAjv().compile(schema as JsonSchema);
  } catch (err) {
    throw new Error(`the ${what} schema is not a valid JSON schema: ${(err as Error).message}`, { cause: err });
  }
  return schema as JsonSchema;
}

/** The endpoint the node's fields describe; throws with the reason for a bad field. */
export function parseEndpoint(f: EndpointFields): EndpointSpec {
  const method = (f.method ?? 'get').toLowerCase() as HttpMethod;
  if (!METHODS.includes(method)) throw new Error(`the method must be one of ${METHODS.join(', ')}`);
  const path = (f.path ?? '').trim().replace(/\/+$/, '');
  const parts = path.split('/').slice(1);
  if (!path.startsWith('/') || parts.length === 0 || !parts.every((p) => SEGMENT.test(p))) {
    throw new Error('the path is /-separated parts of letters, digits and . _ ~ -, or {name} parameters');
  }
  if (parts[0].toLowerCase() === 'openapi.json') throw new Error('/openapi.json is the API document');
  const versions = [
    ...new Set(
      (f.versions ?? '2')
        .split(/[\s,]+/)
        .filter(Boolean)
        .map(Number),
    ),
  ] as ApiVersion[];
  if (versions.length === 0 || versions.some((v) => v !== 1 && v !== 2)) throw new Error('the versions are 1, 2 or both');
  const action = (f.action || 'read') as ApiKeyAction;
  if (!(action in ACTION_SCOPES)) throw new Error(`the key action must be one of ${Object.keys(ACTION_SCOPES).join(', ')}`);
  const query = (f.query ?? '').split(/[\s,]+/).filter(Boolean);
  if (query.some((q) => !/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/.test(q))) throw new Error('query parameter names are letters, digits, _ . -');
  const status = Number(f.status || 200);
  if (!Number.isInteger(status) || status < 200 || status > 299) throw new Error('the status is a 2xx code');
  const requestSchema = schemaField(f.requestSchema, 'request');
  if (requestSchema && (method === 'get' || method === 'delete')) throw new Error(`a ${method.toUpperCase()} takes no request body`);
  return {
    method,
    path,
    versions,
    action,
    summary: (f.summary ?? '').trim() || `${method.toUpperCase()} ${path}`,
    description: f.description?.trim() || undefined,
    query,
    requestSchema,
    responseSchema: schemaField(f.responseSchema, 'response'),
    status,
  };
}

/** The operationId of an endpoint node (stable across deploys: the node's id). */
export const endpointOperationId = (nodeId: string): string => `custom_${nodeId.replace(/[^A-Za-z0-9_]/g, '_')}`;

/** The endpoint as an operation whose handler is dispatch (the flow). */
export function customOperation(id: string, spec: EndpointSpec, dispatch: (ctx: ApiContext) => Promise<ApiResult>): ApiOperation {
  const pathParams = [...spec.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
  return {
    operationId: endpointOperationId(id),
    method: spec.method,
    path: spec.path,
    versions: spec.versions,
    action: spec.action,
    summary: spec.summary,
    description: spec.description,
    tags: ['custom'],
    parameters: [
      ...pathParams.map((name) => ({ name, in: 'path' as const, required: true, description: `The ${name}.`, schema: { type: 'string' } })),
      ...spec.query.map((name) => ({ name, in: 'query' as const, description: `The ${name}.`, schema: { type: 'string' } })),
    ],
    requestBody: spec.requestSchema ? () => spec.requestSchema! : undefined,
    responses: () => ({ [spec.status]: { description: 'The answer of the flow.', schema: spec.responseSchema ?? { type: 'object' } } }),
    handle: dispatch,
  };
}

/** Headers a flow may not set on an API answer (the API sets them). */
const RESERVED = new Set(['content-type', 'content-length', 'transfer-encoding', 'connection', 'x-correlation-id']);

/**
 * What msg.res is for the flow: the part of express's response the core `http response` node
 * calls (set, get, status, send, jsonp/json, cookie). `answer` resolves with the flow's answer; a
 * body that is not a JSON object rejects (a 500: the endpoint's flow is wrong, not the client).
 */
export function responseCollector(): { res: { _res: Record<string, unknown> }; answer: Promise<ApiResult> } {
  let resolve!: (r: ApiResult) => void;
  let reject!: (e: Error) => void;
  const answer = new Promise<ApiResult>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  let status = 200;
  const headers: Record<string, string> = {};
  const finish = (payload: unknown) => {
    let body = payload;
    if (Buffer.isBuffer(body)) body = body.toString('utf8');
    if (typeof body === 'string') {
      if (body.trim() === '') body = undefined;
      else
        try {
          body = JSON.parse(body);
        } catch {
          return reject(new Error("the flow's answer is not JSON"));
        }
    }
    if (body !== undefined && (body === null || typeof body !== 'object' || Array.isArray(body)))
      return reject(new Error("the flow's answer is not a JSON object"));
    if (status >= 400) {
      if (status === 404)
        return reject(
          new ApiError('not-found', typeof (body as { detail?: unknown })?.detail === 'string' ? (body as { detail: string }).detail : 'no such resource'),
        );
      if (status === 400)
        return reject(
          new ApiError(
            'invalid-request',
            String((body as { detail?: unknown })?.detail ?? 'the request is invalid'),
            (body as { parameter?: string })?.parameter,
          ),
        );
      if (status === 409) return reject(new ApiError('conflict', String((body as { detail?: unknown })?.detail ?? 'conflict')));
      return reject(new Error(`the flow answered ${status}`));
    }
    resolve({ status, headers, body: body as Record<string, unknown> | undefined });
  };
  const res: Record<string, unknown> = {
    set(name: string | Record<string, unknown>, value?: unknown) {
      const entries = typeof name === 'string' ? [[name, value]] : Object.entries(name);
      for (const [k, v] of entries as Array<[string, unknown]>) if (!RESERVED.has(k.toLowerCase())) headers[k.toLowerCase()] = String(v);
      return res;
    },
    get: (name: string) => headers[name.toLowerCase()],
    status(code: number) {
      status = Number(code) || 200;
      return res;
    },
    send: (body: unknown) => finish(body),
    json: (body: unknown) => finish(body),
    jsonp: (body: unknown) => finish(body),
    end: (body: unknown) => finish(body),
    cookie: () => res,
    clearCookie: () => res,
  };
  return { res: { _res: res }, answer };
}
