/**
 * Coercion of the business store's input: each value checked against its column's type and
 * turned into a query parameter, the tenant and key arguments checked, and a create's or
 * update's fields checked against the entity's whitelist. Every refusal is a BusinessError
 * naming the field.
 */
import { BusinessError } from './business-errors';
import { writableColumns, type Column, type ColumnType, type Entity } from './business-entities';

const INT8_MAX = 9223372036854775807n;
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:$|[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$)/i;

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  // A function node's objects come from its own vm context, with that realm's Object.prototype.
  return proto === null || Object.getPrototypeOf(proto) === null;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a Date';
  if (Buffer.isBuffer(value)) return 'a Buffer';
  return `a ${typeof value}`;
}

/** Parses an id argument or value: a positive int8 as a number, bigint or decimal string. */
export function parseId(value: unknown): string | undefined {
  let text: string;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 1) return undefined;
    text = String(value);
  } else if (typeof value === 'bigint') {
    text = value.toString();
  } else if (typeof value === 'string' && /^[1-9][0-9]{0,18}$/.test(value)) {
    text = value;
  } else {
    return undefined;
  }
  const n = BigInt(text);
  return n >= 1n && n <= INT8_MAX ? text : undefined;
}

function jsonText(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

/** The parameter for value in a column of this type, or a BusinessError naming the field. */
export function toParam(where: string, field: string, col: Column, value: unknown): unknown {
  const bad = (expected: string) => new BusinessError('invalid', `${where}: field "${field}" must be ${expected}, got ${describe(value)}`, field);
  if (value === null) {
    if (col.nullable) return null;
    throw new BusinessError('invalid', `${where}: field "${field}" cannot be null`, field);
  }
  switch (col.type) {
    case 'text':
      if (typeof value !== 'string') throw bad('a string');
      if (value.includes('\u0000')) throw bad('a string without NUL characters');
      if (col.required && value.length === 0) throw bad('a non-empty string');
      return value;
    case 'int':
    case 'smallint': {
      const limit = col.type === 'int' ? 2 ** 31 : 2 ** 15;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < -limit || value >= limit) {
        throw bad(col.type === 'int' ? 'a 32-bit integer' : 'a 16-bit integer');
      }
      return value;
    }
    case 'id': {
      const idText = parseId(value);
      if (idText === undefined) throw bad('an id (a positive integer)');
      return idText;
    }
    case 'bool':
      if (typeof value !== 'boolean') throw bad('a boolean');
      return value;
    case 'object': {
      if (!isPlainObject(value)) throw bad('an object');
      const text = jsonText(value);
      if (text === undefined) throw bad('JSON-serializable');
      return text;
    }
    case 'json': {
      const text = value === undefined ? undefined : jsonText(value);
      if (text === undefined) throw bad('a JSON value');
      return text;
    }
    case 'text[]':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && !v.includes('\u0000'))) throw bad('an array of strings');
      return [...value];
    case 'timestamptz': {
      const date = value instanceof Date ? value : typeof value === 'string' && ISO_8601.test(value) ? new Date(value) : undefined;
      if (!date || Number.isNaN(date.getTime())) throw bad('a Date or an ISO 8601 time with Z or an offset');
      return date.toISOString();
    }
    case 'bytea':
      if (!(value instanceof Uint8Array)) throw bad('a Buffer');
      return Buffer.from(value);
  }
}

export function checkTenant(tenant: unknown): string {
  if (typeof tenant !== 'string' || tenant.length < 1 || tenant.length > 64) {
    throw new BusinessError('invalid', `tenant must be a string of 1 to 64 characters, got ${describe(tenant)}`, 'tenant');
  }
  return tenant;
}

/** The key argument of read/update/delete as a parameter. */
export function keyParam(spec: Entity, value: unknown): string {
  if (spec.key === 'key' || spec.scope === 'id') {
    if (typeof value !== 'string' || value.length === 0) {
      throw new BusinessError('invalid', `${spec.name}: ${spec.key} must be a non-empty string, got ${describe(value)}`, spec.key);
    }
    return value;
  }
  const idText = parseId(value);
  if (idText === undefined) throw new BusinessError('invalid', `${spec.name}: id must be a positive integer, got ${describe(value)}`, 'id');
  return idText;
}

export interface Assignment {
  column: string;
  type: ColumnType;
  value: unknown;
}

/** Validates input fields against the whitelist for create or update. */
export function assignments(spec: Entity, data: unknown, mode: 'create' | 'update'): Map<string, Assignment> {
  if (!isPlainObject(data)) {
    throw new BusinessError('invalid', `${spec.name}: ${mode === 'create' ? 'data' : 'patch'} must be an object, got ${describe(data)}`);
  }
  const out = new Map<string, Assignment>();
  for (const field of Object.keys(data)) {
    const value = data[field];
    if (value === undefined) continue;
    const col = Object.hasOwn(spec.columns, field) ? spec.columns[field] : undefined;
    if (!col || !col.input) {
      const allowed = writableColumns(spec, mode);
      const why = col || field === 'tenant_id' ? 'is not writable' : 'is unknown';
      throw new BusinessError('invalid', `${spec.name}: field "${field}" ${why}; writable: ${allowed.join(', ') || 'none'}`, field);
    }
    if (mode === 'update' && col.input === 'create') {
      throw new BusinessError('invalid', `${spec.name}: field "${field}" can only be set on create`, field);
    }
    out.set(field, { column: field, type: col.type, value: toParam(spec.name, field, col, value) });
  }
  if (mode === 'create') {
    for (const [field, col] of Object.entries(spec.columns)) {
      if (col.required && !out.has(field)) throw new BusinessError('invalid', `${spec.name}: field "${field}" is required`, field);
    }
  }
  return out;
}
