/**
 * HTTP errors as RFC 9457 problem details (`application/problem+json`). Every Conflux HTTP
 * endpoint answers an error with one of these: a `type` URI naming the kind of problem (stable,
 * documented in docs/protocol-http.md), a `title` that is the same for every occurrence of that
 * type, the `status`, a `detail` saying what was wrong with this request, and extension members
 * where a client can act on them (`retryAfter`, `accept`, `limit`, a codec's `format`/`field`...).
 * Framework-free.
 */

/** Where the problem types are documented; each type is `${PROBLEM_BASE}<slug>`. */
export const PROBLEM_BASE = 'https://conflux.dev/problems/';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** The problem types Conflux uses: slug → [status, title]. */
export const PROBLEM_TYPES = {
  'invalid-request': [400, 'The request is malformed'],
  'invalid-body': [400, 'The body cannot be decoded'],
  unauthorized: [401, 'Missing or wrong credentials'],
  forbidden: [403, 'The credentials do not allow this request'],
  'unknown-device': [404, 'No such device'],
  'not-found': [404, 'No such resource'],
  'method-not-allowed': [405, 'Method not allowed'],
  'not-acceptable': [406, 'No acceptable representation'],
  'request-timeout': [408, 'The body did not arrive in time'],
  conflict: [409, 'The request conflicts with the current state'],
  'quota-exceeded': [410, "The API key's quota for this period is used up"],
  'body-too-large': [413, 'The body is too large'],
  'unsupported-media-type': [415, 'Unsupported media type'],
  'rate-limited': [429, "The tenant's rate limit is reached"],
  'too-many-logins': [429, 'Too many failed logins from this address'],
  'internal-error': [500, 'Internal error'],
  overloaded: [503, 'The flow behind this endpoint cannot keep up'],
  unavailable: [503, 'The service is unavailable'],
  maintenance: [503, 'The API is down for maintenance'],
  'not-stored': [503, 'The reading was not kept'],
  'device-offline': [409, 'The device is not connected'],
  'command-refused': [502, 'The device refused the command'],
  'command-queue-full': [503, "The device's command queue is full"],
  'command-timeout': [504, 'The device did not answer in time'],
} as const satisfies Record<string, readonly [number, string]>;

export type ProblemSlug = keyof typeof PROBLEM_TYPES;

export interface HttpResponse {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string | Buffer;
}

export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail?: string;
  [extension: string]: unknown;
}

/** Members an extension may not override. */
const RESERVED = new Set(['type', 'title', 'status', 'detail']);

/**
 * A problem response. `status` and `title` default to the type's; `extra` adds extension members
 * (undefined ones are left out) and `headers` adds response headers (lower-case names).
 */
export function problem(
  slug: ProblemSlug,
  detail?: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): HttpResponse & { document: ProblemDocument } {
  const [status, title] = PROBLEM_TYPES[slug];
  const document: ProblemDocument = { type: PROBLEM_BASE + slug, title, status };
  if (detail !== undefined && detail !== '') document.detail = detail;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && !RESERVED.has(k)) document[k] = v;
  return {
    status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store', ...headers },
    body: JSON.stringify(document),
    document,
  };
}

/** A JSON response (2xx). */
export function jsonResponse(status: number, value: unknown, headers: Record<string, string> = {}): HttpResponse {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(value) };
}

/** Whether a response is a problem document (for clients and tests). */
export function isProblem(response: { headers: Record<string, string> }): boolean {
  return (response.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase() === PROBLEM_CONTENT_TYPE;
}
