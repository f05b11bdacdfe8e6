/**
 * The business store's SQL, built from the entity descriptions: identifiers come only from
 * them (quoted), values always travel as parameters, each cast to its column's type. Every
 * statement is scoped to the tenant in $1.
 */
import type { Assignment } from './business-coercion';
import { returnedColumns, SQL_TYPE, type ColumnType, type Entity } from './business-entities';

export interface Statement {
  text: string;
  params: unknown[];
}

const q = (ident: string): string => `"${ident}"`;

/** The returned columns and computed fields of spec. */
export function selectList(spec: Entity): string {
  const cols = returnedColumns(spec).map(q);
  for (const [name, expr] of Object.entries(spec.computed ?? {})) cols.push(`${expr} AS ${q(name)}`);
  return cols.join(', ');
}

/** "$n::type" for a parameter just pushed. */
const param = (params: unknown[], value: unknown, type: ColumnType): string => {
  params.push(value);
  return `$${params.length}::${SQL_TYPE[type]}`;
};

/** The cast of a key parameter: ids are bigint; config's key and a tenant's id are text. */
const keyCast = (spec: Entity): string => (spec.key === 'id' && spec.scope === 'tenant_id' ? '::bigint' : '');

/** The row of spec addressed by $1 (the tenant) and $2 (the key). */
const byKey = (spec: Entity): string => `${q(spec.scope)} = $1 AND ${q(spec.key)} = $2${keyCast(spec)}`;

export function insertStatement(spec: Entity, tenant: string, values: Iterable<Assignment>): Statement {
  const params: unknown[] = [tenant];
  const cols: string[] = ['tenant_id'];
  const exprs: string[] = ['$1'];
  for (const a of values) {
    cols.push(q(a.column));
    exprs.push(param(params, a.value, a.type));
  }
  return { text: `INSERT INTO ${q(spec.table)} (${cols.join(', ')}) VALUES (${exprs.join(', ')}) RETURNING ${selectList(spec)}`, params };
}

export function selectStatement(spec: Entity, tenant: string, key: string): Statement {
  return { text: `SELECT ${selectList(spec)} FROM ${q(spec.table)} WHERE ${byKey(spec)}`, params: [tenant, key] };
}

export function updateStatement(spec: Entity, tenant: string, key: string, values: Iterable<Assignment>): Statement {
  const params: unknown[] = [tenant, key];
  const sets: string[] = [];
  for (const a of values) sets.push(`${q(a.column)} = ${param(params, a.value, a.type)}`);
  if (spec.updatedAt) sets.push('"updated_at" = now()');
  return { text: `UPDATE ${q(spec.table)} SET ${sets.join(', ')} WHERE ${byKey(spec)} RETURNING ${selectList(spec)}`, params };
}

export function deleteStatement(spec: Entity, tenant: string, key: string): Statement {
  return { text: `DELETE FROM ${q(spec.table)} WHERE ${byKey(spec)} RETURNING ${selectList(spec)}`, params: [tenant, key] };
}

export interface ListQuery {
  /** Equalities on columns; a null value matches NULL. */
  equal: Assignment[];
  /** Rows with a key after this one. */
  after?: string;
  /** Rows to fetch. */
  limit: number;
}

/** One page of spec's rows in key order. */
export function listStatement(spec: Entity, tenant: string, query: ListQuery): Statement {
  const params: unknown[] = [tenant];
  const where = [`${q(spec.scope)} = $1`];
  for (const a of query.equal) {
    where.push(a.value === null ? `${q(a.column)} IS NULL` : `${q(a.column)} = ${param(params, a.value, a.type)}`);
  }
  if (query.after !== undefined) {
    params.push(query.after);
    where.push(`${q(spec.key)} > $${params.length}${keyCast(spec)}`);
  }
  params.push(query.limit);
  return {
    text: `SELECT ${selectList(spec)} FROM ${q(spec.table)} WHERE ${where.join(' AND ')} ORDER BY ${q(spec.key)} LIMIT $${params.length}::integer`,
    params,
  };
}
