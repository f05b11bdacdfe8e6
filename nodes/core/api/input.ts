/**
 * What the API reads from a request, case-insensitively (seed 004 §2.4): JSON bodies with their
 * property names lower-cased at every depth, query parameters matched to an operation's names
 * ignoring case, the API key from the configured headers, and the Accept header. Framework-free.
 */
import type { ApiParameter } from './operation';

export type Headers = Record<string, string | string[] | undefined>;

/** Deepest nesting of a request body; deeper is refused (a bound on the work lower-casing does). */
export const MAX_BODY_DEPTH = 32;

export class InputError extends Error {
  constructor(
    readonly detail: string,
    readonly param?: string,
  ) {
    super(detail);
  }
}

/** A header's first value (names are lower-case, as Node gives them). */
export function headerOf(headers: Headers, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v[0] : String(v);
}

/**
 * The value with every object's property names lower-cased, at every depth. Two names that differ
 * only in case ("Name" and "name") are ambiguous: refused naming them, rather than one silently
 * winning.
 */
export function lowerCaseKeys(value: unknown, path = '', depth = 0): unknown {
  if (depth > MAX_BODY_DEPTH) throw new InputError(`the body is nested deeper than ${MAX_BODY_DEPTH} levels`);
  if (Array.isArray(value)) return value.map((v, i) => lowerCaseKeys(v, `${path}[${i}]`, depth + 1));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const lower = k.toLowerCase();
    const name = path ? `${path}.${lower}` : lower;
    if (Object.prototype.hasOwnProperty.call(out, lower))
      throw new InputError(`the body has two properties named "${name}" (names are case-insensitive)`, name);
    out[lower] = lowerCaseKeys(v, name, depth + 1);
  }
  return out;
}

/** Parses a JSON body (empty: undefined) and lower-cases its property names. */
export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new InputError('the body is not valid JSON');
  }
  return lowerCaseKeys(parsed);
}

/** Whether a Content-Type names JSON (application/json or any +json). */
export function isJsonType(contentType: string | undefined): boolean {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

/**
 * Whether the Accept header admits application/json (or application/problem+json, which an error
 * is). Absent, empty, `*\/*`, `application/*` and `application/json` do; q=0 excludes.
 */
export function acceptsJson(accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === '') return true;
  let best = 0;
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((s) => s.trim().toLowerCase());
    if (!['*/*', 'application/*', 'application/json', 'application/problem+json'].includes(type)) continue;
    let q = 1;
    for (const p of params) if (p.startsWith('q=')) q = Number(p.slice(2));
    if (Number.isFinite(q) && q > best) best = q;
  }
  return best > 0;
}

/** The API key from the configured headers (first found), or `Authorization: Bearer <key>`. */
export function apiKeyOf(headers: Headers, keyHeaders: readonly string[], bearer: boolean): string | undefined {
  for (const name of keyHeaders) {
    const v = headerOf(headers, name)?.trim();
    if (v) return v;
  }
  if (!bearer) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(headerOf(headers, 'authorization') ?? '');
  return m?.[1];
}

/**
 * The query of a URL (`a=1&B=2`) keyed by the operation's parameter names, matched ignoring case.
 * Unknown names are ignored (a client may send more); a name given twice is refused.
 */
export function queryOf(search: string, parameters: readonly ApiParameter[]): Record<string, string> {
  const byLower = new Map(parameters.filter((p) => p.in === 'query').map((p) => [p.name.toLowerCase(), p.name]));
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(search)) {
    const name = byLower.get(k.toLowerCase());
    if (name === undefined) continue;
    if (name in out) throw new InputError(`the query parameter ${name} is given more than once`, name);
    out[name] = v;
  }
  return out;
}

/**
 * Checks query and path values against their parameter's schema as far as a string can be
 * checked: required, integer/number/boolean, minimum/maximum, enum, maxLength. 400 names it.
 */
export function checkParameters(parameters: readonly ApiParameter[], values: { query: Record<string, string>; params: Record<string, string> }): void {
  for (const p of parameters) {
    const value = p.in === 'query' ? values.query[p.name] : values.params[p.name];
    const where = p.in === 'query' ? 'query parameter' : 'path parameter';
    if (value === undefined || value === '') {
      if (p.required) throw new InputError(`the ${where} ${p.name} is required`, p.name);
      continue;
    }
    const s = p.schema as { type?: string; minimum?: number; maximum?: number; enum?: unknown[]; maxLength?: number };
    const bad = (why: string) => new InputError(`the ${where} ${p.name} ${why}`, p.name);
    if (s.type === 'integer' || s.type === 'number') {
      const n = Number(value);
      if (!(s.type === 'integer' ? /^-?\d{1,15}$/.test(value) : value.trim() !== '' && Number.isFinite(n)))
        throw bad(`must be ${s.type === 'integer' ? 'an integer' : 'a number'}`);
      if (s.minimum !== undefined && n < s.minimum) throw bad(`must be at least ${s.minimum}`);
      if (s.maximum !== undefined && n > s.maximum) throw bad(`must be at most ${s.maximum}`);
    } else if (s.type === 'boolean' && value !== 'true' && value !== 'false') throw bad('must be true or false');
    if (s.enum && !s.enum.map(String).includes(value)) throw bad(`must be one of ${s.enum.join(', ')}`);
    if (s.maxLength !== undefined && value.length > s.maxLength) throw bad(`must be at most ${s.maxLength} characters`);
  }
}
