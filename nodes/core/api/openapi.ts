/**
 * The OpenAPI 3.1 document of the API, built from its operations (standard resources and custom
 * endpoints alike): every path of the versions asked for under `/v<major>`, the two ways to give
 * the key, the problem document, and every JSON body's schema with the `version` member the
 * framework adds. Framework-free.
 */
import type { ApiOperation, ApiParameter, ApiVersion, JsonSchema } from './operation';
import { versionString } from './versions';

export interface OpenApiOptions {
  /** The base path (`/api`): the document's server. */
  base: string;
  /** Headers that carry the key as it is (`EAPI-ELCLV2`). */
  keyHeaders: readonly string[];
  /** Whether `Authorization: Bearer <key>` is accepted. */
  bearer: boolean;
  /** Whether quotas apply (410 and the RateLimit headers are documented then). */
  quotas: boolean;
  title?: string;
}

/** An operation as served in one version: its parameters with the configured page limits. */
export interface ServedOperation {
  op: ApiOperation;
  version: ApiVersion;
  parameters: readonly ApiParameter[];
}

export const PROBLEM_SCHEMA: JsonSchema = {
  type: 'object',
  description: 'An RFC 9457 problem document, with the version of the API that answered.',
  required: ['type', 'title', 'status', 'version'],
  properties: {
    type: { type: 'string', format: 'uri', description: 'The kind of problem, under https://conflux.dev/problems/.' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string', description: 'What was wrong with this request.' },
    version: { type: 'string', pattern: '^\\d+\\.\\d+$' },
    parameter: { type: 'string', description: '400: the query or path parameter or body property at fault.' },
    correlationId: { type: 'string', description: '500: quote it to the operator, who finds the error in the log under it.' },
    reset: { type: 'string', format: 'date-time', description: '410: when the quota is renewed.' },
    retryAfter: { type: 'integer', description: '410, 503: seconds to wait (also the Retry-After header).' },
  },
};

const ERRORS: Record<number, string> = {
  400: 'A parameter or body property is missing or bad (named in `parameter`).',
  401: 'No API key, or an unknown, revoked or expired one.',
  403: "The key's scopes do not allow this operation.",
  404: "No such resource (or another tenant's).",
  406: 'The Accept header excludes application/json.',
  410: "The key's quota of requests or bytes for this period is used up; `reset` says when it is renewed.",
  500: "An internal error; `correlationId` identifies it in the operator's log.",
  503: 'Maintenance (with Retry-After), or a store this API was not given.',
};

/** The errors of operations that take a body or change something. */
const BODY_ERRORS: Record<number, string> = {
  409: 'The request conflicts with the current state.',
  413: 'The body is larger than the API accepts.',
  415: 'A body that is not application/json.',
};

const RATE_HEADERS = ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'] as const;

/** schema with `version` (a constant of this version) required: merged into a plain object schema, else through allOf. */
export function withVersion(schema: JsonSchema | undefined, version: ApiVersion): JsonSchema {
  const member = { type: 'string', const: versionString(version), description: 'The version of the API that answered: <major>.<minor>.' };
  if (!schema) return { type: 'object', required: ['version'], properties: { version: member } };
  const composed = ['allOf', 'anyOf', 'oneOf', '$ref', 'if'].some((k) => k in schema);
  if (schema.type === 'object' && !composed) {
    const required = Array.isArray(schema.required) ? (schema.required as string[]) : [];
    return {
      ...schema,
      properties: { ...((schema.properties as Record<string, unknown>) ?? {}), version: member },
      required: [...required.filter((r) => r !== 'version'), 'version'],
    };
  }
  return { allOf: [schema, { type: 'object', required: ['version'], properties: { version: member } }] };
}

function problemResponse(description: string, headers?: Record<string, unknown>): Record<string, unknown> {
  return { description, ...(headers ? { headers } : {}), content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
}

/** The OpenAPI document for these operations; `paths` are `/v<major>/...` under the server `base`. */
export function buildOpenApi(served: readonly ServedOperation[], versions: readonly ApiVersion[], options: OpenApiOptions): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const rate = options.quotas ? Object.fromEntries(RATE_HEADERS.map((h) => [h, { $ref: `#/components/headers/${h}` }])) : undefined;
  for (const { op, version, parameters } of served) {
    if (!versions.includes(version)) continue;
    const responses: Record<string, unknown> = {};
    for (const [status, spec] of Object.entries(op.responses(version))) {
      // An error an operation declares without a body schema (its own 404, 409) is answered, like
      // every refusal, with a problem document.
      responses[status] =
        Number(status) === 204
          ? { description: spec.description, ...(rate ? { headers: rate } : {}) }
          : Number(status) >= 400 && spec.schema === undefined
            ? problemResponse(spec.description, rate)
            : {
                description: spec.description,
                ...(rate ? { headers: rate } : {}),
                content: { 'application/json': { schema: withVersion(spec.schema, version) } },
              };
    }
    const errors = op.requestBody || op.method !== 'get' ? { ...ERRORS, ...BODY_ERRORS } : ERRORS;
    for (const [status, description] of Object.entries(errors)) {
      if (status === '410' && !options.quotas) continue;
      const withHeaders = status === '410' || status === '503' ? { ...rate, 'Retry-After': { $ref: '#/components/headers/Retry-After' } } : rate;
      responses[status] ??= problemResponse(description, withHeaders);
    }
    const operation: Record<string, unknown> = {
      operationId: `${op.operationId}.v${version}`,
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      tags: [...op.tags],
      ...(parameters.length > 0 ? { parameters: parameters.map((p) => ({ ...p })) } : {}),
      responses,
    };
    if (op.requestBody) operation.requestBody = { required: true, content: { 'application/json': { schema: op.requestBody(version) } } };
    (paths[`/v${version}${op.path}`] ??= {})[op.method] = operation;
  }
  for (const version of versions) {
    paths[`/v${version}/openapi.json`] = {
      get: {
        operationId: `openapi.v${version}`,
        summary: 'This document',
        tags: ['meta'],
        security: [],
        responses: {
          200: {
            description: 'The OpenAPI document (without a version member: it has info.version).',
            content: { 'application/json': { schema: { type: 'object' } } },
          },
        },
      },
    };
  }
  const securitySchemes: Record<string, unknown> = {};
  options.keyHeaders.forEach((name, i) => {
    securitySchemes[i === 0 ? 'apiKeyHeader' : `apiKeyHeader${i + 1}`] = { type: 'apiKey', in: 'header', name, description: 'The API key as it is.' };
  });
  if (options.bearer) securitySchemes.bearer = { type: 'http', scheme: 'bearer', description: 'The API key as a bearer token.' };
  const latest = Math.max(...versions) as ApiVersion;
  return {
    openapi: '3.1.0',
    info: {
      title: options.title || 'Conflux API',
      version: versionString(latest),
      description: `Major versions are in the path (${versions.map((v) => `/v${v}`).join(', ')}); every JSON body carries "version": "<major>.<minor>". Property names in request bodies and query parameter names are case-insensitive.`,
    },
    servers: [{ url: options.base || '/' }],
    security: Object.keys(securitySchemes).map((name) => ({ [name]: [] })),
    paths,
    components: {
      securitySchemes,
      schemas: { Problem: PROBLEM_SCHEMA },
      headers: {
        'RateLimit-Limit': { description: 'Requests the key may make in the current period.', schema: { type: 'integer' } },
        'RateLimit-Remaining': { description: 'Requests left in the current period.', schema: { type: 'integer' } },
        'RateLimit-Reset': { description: 'Seconds until the period ends and the quota is renewed.', schema: { type: 'integer' } },
        'Retry-After': { description: 'Seconds to wait before trying again.', schema: { type: 'integer' } },
      },
    },
  };
}
