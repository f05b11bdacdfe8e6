/**
 * The REST API's contract between its resources and the framework that serves them.
 *
 * A resource (devices, measurements, webhooks...) is a list of ApiOperation: a method, a path
 * relative to `/api/v<major>`, the versions it exists in, its parameters and schemas (which the
 * OpenAPI document is built from), the API-key action it needs, and a handler. The framework
 * (router, key auth, quotas, maintenance, content negotiation, versions, problem+json, OpenAPI)
 * runs the handler with an ApiContext and adds `version` to every body. Custom endpoints
 * (conflux-api-endpoint) are operations too. Framework-free.
 */
import type { SqlClient } from '../db/sql';
import type { ApiKeyIdentity } from '../auth/api-key-store';
import type { ApiKeyAction } from '../auth/scopes';
import type { LongTermStore, ShortTermStore, TimeSeriesStore } from '../stores/types';
import type { EventTypeInfo } from '../events/catalogue';
import type { PlatformEvent } from '../events/event';

/** A major version of the API: the `v1` / `v2` in the URL. */
export type ApiVersion = 1 | 2;

/** A JSON Schema (2020-12, the dialect of OpenAPI 3.1). */
export type JsonSchema = Record<string, unknown>;

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** An OpenAPI parameter; `in: 'query'` names are matched case-insensitively. */
export interface ApiParameter {
  name: string;
  in: 'path' | 'query';
  required?: boolean;
  description: string;
  schema: JsonSchema;
}

export interface ApiResponseSpec {
  description: string;
  /** The body without `version` (the framework adds it to every body and to the schema). */
  schema?: JsonSchema;
}

/** What the handlers read: the stores of the node's configuration. A missing tier answers 503. */
export interface ApiStores {
  db: SqlClient;
  timeSeries?: TimeSeriesStore;
  longTerm?: LongTermStore;
  shortTerm?: ShortTermStore;
  /** The event catalogue (platform and custom types registered in this runtime). */
  catalogue(): EventTypeInfo[];
  /** Hands an event to the platform (a webhook subscription's test event goes this way). */
  publishEvent?(event: PlatformEvent): void;
}

export interface ApiContext {
  version: ApiVersion;
  /** The caller: its tenant scopes every read and write. */
  identity: ApiKeyIdentity;
  /** Path parameters, decoded. */
  params: Record<string, string>;
  /** Query parameters keyed by their name in the operation's `parameters` (matched ignoring case). */
  query: Record<string, string>;
  /** The parsed JSON body with property names lower-cased at every depth (seed 004 §2.4). */
  body: unknown;
  stores: ApiStores;
  /**
   * The most items one page may hold (conflux-api's page limit): the handlers' ceiling for
   * `limit`, and their default when it is lower. Absent: the stores' own maximum.
   */
  pageLimit?: number;
  /** The request's correlation id (also in the `x-correlation-id` header and in 500 answers). */
  correlationId: string;
}

export interface ApiResult {
  /** 200 unless given. */
  status?: number;
  /** A JSON object; the framework adds `version: "<major>.<minor>"`. Absent for 204. */
  body?: Record<string, unknown>;
  /** The body as JSON of an object (text, or UTF-8 bytes), when the handler has it serialised already (body then unset). */
  json?: string | Buffer;
  headers?: Record<string, string>;
}

export interface ApiOperation {
  /** Unique across the API; used as the OpenAPI operationId. */
  operationId: string;
  method: HttpMethod;
  /** Relative to `/api/v<major>`, OpenAPI style: `/devices/{serial}`. */
  path: string;
  versions: readonly ApiVersion[];
  /** The scope check the caller's key must pass (auth/scopes.ts). */
  action: ApiKeyAction;
  summary: string;
  description?: string;
  tags: readonly string[];
  parameters?: readonly ApiParameter[];
  /** JSON schema of the request body, per version (lower-case property names). */
  requestBody?: (version: ApiVersion) => JsonSchema;
  /** Responses by status, per version: v1's shape is frozen, v2 may add fields. */
  responses: (version: ApiVersion) => Record<number, ApiResponseSpec>;
  handle(ctx: ApiContext): Promise<ApiResult>;
}

export type ApiErrorKind = 'invalid-request' | 'not-found' | 'conflict' | 'unavailable';

/**
 * What a handler throws for a client's mistake: 400 names the parameter, 404 an unknown (or
 * another tenant's) serial or id, 409 a conflict, 503 a tier this API was not given.
 * Anything else a handler throws is a 500 with a correlation id and no detail.
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';

  constructor(
    readonly kind: ApiErrorKind,
    readonly detail: string,
    /** The parameter or body property at fault (400). */
    readonly param?: string,
  ) {
    super(detail);
  }
}
