/**
 * The five operations of a tenant-scoped business entity managed through the API (list, create,
 * read, update, delete), built from one description: the API's property names and the columns they
 * write, the request and answer schemas per version, and how a row becomes an answer. The
 * federation's resources use it; ftp-targets.ts is the same pattern written out.
 *
 * Request bodies come with property names lower-cased (operation.ts), so `fields` is keyed by
 * the lower-cased name; store errors name the API's spelling (`federationId`, not federation_id).
 * Errors (400, 404 for another tenant's row as for a missing one, 409 for a unique rule) are
 * problem documents the OpenAPI document declares for every operation (openapi.ts ERRORS), so
 * they are not listed here: a 404 listed with a JSON schema would be published as JSON.
 */
import type { BusinessRow } from '../../stores/business';
import type { ApiContext, ApiOperation, ApiVersion, JsonSchema } from '../operation';
import { bodyObject, business, ID_PARAM, idParam, invalid, listRows, ok, onlyKnown, page, PAGE_PARAMS, pageBody, viaStore } from './common';

export interface CrudField {
  /** The API's spelling (camelCase). */
  name: string;
  column: string;
  schema: JsonSchema;
  /** Writable on create only (a row's owner, its application). */
  createOnly?: boolean;
  required?: boolean;
  /** The API value → the column's (a mapping's pairs → an object). */
  toColumn?(value: unknown): unknown;
}

export interface CrudSpec {
  entity: string;
  /** `/federation/apps`: the collection; `{id}` is appended for one row. */
  path: string;
  tag: string;
  /** Operation ids: list<Plural>, create<Singular>, get<Singular>... */
  singular: string;
  plural: string;
  /** "application", for summaries and the 404. */
  noun: string;
  fields: CrudField[];
  schema(v: ApiVersion): JsonSchema;
  /** A row as the answer of version v. */
  answer(ctx: ApiContext, row: BusinessRow): Promise<Record<string, unknown>> | Record<string, unknown>;
}

function requestSchema(spec: CrudSpec, create: boolean): JsonSchema {
  const fields = spec.fields.filter((f) => create || !f.createOnly);
  const required = create ? fields.filter((f) => f.required).map((f) => f.name.toLowerCase()) : [];
  return {
    type: 'object',
    properties: Object.fromEntries(fields.map((f) => [f.name.toLowerCase(), f.schema])),
    ...(required.length ? { required } : {}),
    ...(create ? {} : { minProperties: 1 }),
    additionalProperties: false,
  };
}

/** The body as column values; 400 naming the first unknown or missing property. */
function data(spec: CrudSpec, ctx: ApiContext, create: boolean): Record<string, unknown> {
  const body = bodyObject(ctx);
  const fields = spec.fields.filter((f) => create || !f.createOnly);
  onlyKnown(
    body,
    fields.map((f) => f.name.toLowerCase()),
  );
  if (!create && Object.keys(body).length === 0) throw invalid('body', `give at least one of ${fields.map((f) => f.name).join(', ')}`);
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const value = body[f.name.toLowerCase()];
    if (value === undefined) {
      if (create && f.required) throw invalid(f.name, `${f.name} is required`);
      continue;
    }
    out[f.column] = f.toColumn && value !== null ? f.toColumn(value) : value;
  }
  return out;
}

export function crudOperations(spec: CrudSpec): ApiOperation[] {
  const names = Object.fromEntries(spec.fields.map((f) => [f.column, f.name]));
  const base = { versions: [1, 2] as const, action: 'manage' as const, tags: [spec.tag] };
  const one = `${spec.path}/{id}`;
  return [
    {
      ...base,
      operationId: `list${spec.plural}`,
      method: 'get',
      path: spec.path,
      summary: `Your organisation's ${spec.noun}s`,
      parameters: [...PAGE_PARAMS],
      responses: (v) => ({ 200: ok(`A page of ${spec.noun}s.`, page(spec.schema(v))) }),
      async handle(ctx) {
        const r = await listRows(ctx, spec.entity);
        return pageBody(await Promise.all(r.items.map((row) => spec.answer(ctx, row))), r.cursor);
      },
    },
    {
      ...base,
      operationId: `create${spec.singular}`,
      method: 'post',
      path: spec.path,
      summary: `Add a ${spec.noun}`,
      requestBody: () => requestSchema(spec, true),
      responses: (v) => ({ 201: ok(`The new ${spec.noun}.`, spec.schema(v)) }),
      async handle(ctx) {
        const row = await viaStore(() => business(ctx).create(ctx.identity.tenant, spec.entity, data(spec, ctx, true)), names);
        return { status: 201, body: await spec.answer(ctx, row) };
      },
    },
    {
      ...base,
      operationId: `get${spec.singular}`,
      method: 'get',
      path: one,
      summary: `One ${spec.noun}`,
      parameters: [ID_PARAM],
      responses: (v) => ({ 200: ok(`The ${spec.noun}.`, spec.schema(v)) }),
      async handle(ctx) {
        const id = idParam(ctx, 'id');
        const row = await viaStore(() => business(ctx).read(ctx.identity.tenant, spec.entity, id));
        return { body: await spec.answer(ctx, row) };
      },
    },
    {
      ...base,
      operationId: `update${spec.singular}`,
      method: 'patch',
      path: one,
      summary: `Change a ${spec.noun}`,
      description: 'Only the given fields change; null clears an optional one.',
      parameters: [ID_PARAM],
      requestBody: () => requestSchema(spec, false),
      responses: (v) => ({ 200: ok(`The ${spec.noun} as changed.`, spec.schema(v)) }),
      async handle(ctx) {
        const patch = data(spec, ctx, false);
        const id = idParam(ctx, 'id');
        const row = await viaStore(() => business(ctx).update(ctx.identity.tenant, spec.entity, id, patch), names);
        return { body: await spec.answer(ctx, row) };
      },
    },
    {
      ...base,
      operationId: `delete${spec.singular}`,
      method: 'delete',
      path: one,
      summary: `Delete a ${spec.noun}`,
      parameters: [ID_PARAM],
      responses: () => ({ 204: { description: 'Deleted.' } }),
      async handle(ctx) {
        const id = idParam(ctx, 'id');
        await viaStore(() => business(ctx).delete(ctx.identity.tenant, spec.entity, id));
        return { status: 204 };
      },
    },
  ];
}
