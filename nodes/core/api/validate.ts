/**
 * Request bodies checked against their operation's JSON schema (2020-12, the dialect of OpenAPI
 * 3.1) with ajv; the first fault becomes a 400 naming the property. Schemas are compiled once per
 * operation and version. Framework-free.
 */
import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { InputError } from './input';
import type { JsonSchema } from './operation';

/** A schema compiler for API schemas: OpenAPI's annotations (example, ...) are allowed. */
export function apiAjv(): Ajv2020 {
  const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true });
  addFormats(ajv);
  return ajv;
}

/** `a.b[0]`-style name of the property an ajv error is about. */
export function propertyOf(error: ErrorObject): string {
  const parts = error.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const missing =
    (error.params as { missingProperty?: string; additionalProperty?: string }).missingProperty ??
    (error.params as { additionalProperty?: string }).additionalProperty;
  if (missing !== undefined) parts.push(missing);
  return parts.reduce((name, p) => (/^\d+$/.test(p) ? `${name}[${p}]` : name ? `${name}.${p}` : p), '');
}

export class BodyValidator {
  private readonly ajv = apiAjv();
  private readonly compiled = new Map<string, ValidateFunction>();

  /** Throws an InputError naming the property when body does not match schema. */
  check(key: string, schema: JsonSchema, body: unknown): void {
    let validate = this.compiled.get(key);
    if (!validate) {
      validate = this.ajv.compile(schema);
      this.compiled.set(key, validate);
    }
    if (body === undefined) throw new InputError('the request needs a JSON body', 'body');
    if (validate(body)) return;
    const error = validate.errors![0];
    const property = propertyOf(error) || 'body';
    const why =
      error.keyword === 'required' ? 'is required' : error.keyword === 'additionalProperties' ? 'is not allowed here' : (error.message ?? 'is invalid');
    throw new InputError(`the body's property ${property} ${why}`, property);
  }
}
