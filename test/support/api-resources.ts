/**
 * Calling the standard resources' handlers as the framework will: a real ApiContext over a
 * migrated database and real stores, and every answer's body (with `version` added, as the
 * framework adds it) validated against the operation's own response schema with ajv, so the
 * OpenAPI document built from those schemas holds for what the handlers return.
 */
import * as assert from 'node:assert/strict';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { ApiKeyIdentity } from '../../nodes/core/auth/api-key-store';
import {
  ApiError,
  type ApiContext,
  type ApiErrorKind,
  type ApiOperation,
  type ApiStores,
  type ApiVersion,
  type JsonSchema,
} from '../../nodes/core/api/operation';
import { STANDARD_OPERATIONS } from '../../nodes/core/api/resources';

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const compiled = new Map<string, ReturnType<typeof ajv.compile>>();

/** The response schema as the framework will publish it: `version` added and required. */
export function withVersion(schema: JsonSchema): JsonSchema {
  return {
    ...schema,
    properties: { ...(schema.properties as Record<string, JsonSchema>), version: { type: 'string', pattern: '^[0-9]+\\.[0-9]+$' } },
    required: [...((schema.required as string[] | undefined) ?? []), 'version'],
  };
}

export function operation(id: string): ApiOperation {
  const op = STANDARD_OPERATIONS.find((o) => o.operationId === id);
  assert.ok(op, `no operation ${id}`);
  return op;
}

export interface Call {
  version?: ApiVersion;
  params?: Record<string, string>;
  query?: Record<string, string>;
  body?: unknown;
  identity: ApiKeyIdentity;
  pageLimit?: number;
}

export interface Answer {
  status: number;
  body: Record<string, unknown> | undefined;
}

/** Runs the operation's handler; a body is checked against the operation's schema for its status. */
export async function call(stores: ApiStores, id: string, c: Call): Promise<Answer> {
  const op = operation(id);
  const version = c.version ?? 1;
  assert.ok(op.versions.includes(version));
  const ctx: ApiContext = {
    version,
    identity: c.identity,
    params: c.params ?? {},
    query: c.query ?? {},
    body: c.body,
    stores,
    correlationId: 'test',
    ...(c.pageLimit !== undefined ? { pageLimit: c.pageLimit } : {}),
  };
  const result = await op.handle(ctx);
  const status = result.status ?? 200;
  const spec = op.responses(version)[status];
  assert.ok(spec, `${id} v${version} answered ${status}, which its responses do not list`);
  // A handler may give its body serialised already (the SQL measurements): read it as a client would.
  if (result.json !== undefined) result.body = JSON.parse(result.json.toString()) as Record<string, unknown>;
  if (result.body === undefined) {
    assert.equal(spec.schema, undefined, `${id} v${version} ${status}: no body, but the schema expects one`);
    return { status, body: undefined };
  }
  assert.ok(spec.schema, `${id} v${version} ${status}: a body without a schema`);
  const body = { ...result.body, version: `${version}.0` };
  const key = `${id}/${version}/${status}`;
  let validate = compiled.get(key);
  if (!validate) compiled.set(key, (validate = ajv.compile(withVersion(spec.schema))));
  // Through JSON, as the client sees it (Dates and undefined would not survive).
  const wire = JSON.parse(JSON.stringify(body)) as Record<string, unknown>;
  assert.ok(validate(wire), `${key}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(wire).slice(0, 2000)}`);
  return { status, body: wire };
}

/** Asserts that the call fails with an ApiError of kind (and, for a 400, naming param). */
export async function fails(stores: ApiStores, id: string, c: Call, kind: ApiErrorKind, param?: string): Promise<ApiError> {
  let caught: unknown;
  try {
    await call(stores, id, c);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ApiError, `expected an ApiError ${kind}, got ${String(caught)}`);
  assert.equal(caught.kind, kind, caught.detail);
  if (param !== undefined) assert.equal(caught.param, param, caught.detail);
  return caught;
}

/** Every page of a list, following cursors; each page at most limit items. */
export async function allPages(stores: ApiStores, id: string, c: Call, limit: number): Promise<{ items: Record<string, unknown>[]; pages: number }> {
  const items: Record<string, unknown>[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const { body } = await call(stores, id, { ...c, query: { ...c.query, limit: String(limit), ...(cursor ? { cursor } : {}) } });
    const page = body!.items as Record<string, unknown>[];
    assert.ok(page.length <= limit, `a page of ${page.length} items over the limit ${limit}`);
    items.push(...page);
    cursor = body!.cursor as string | undefined;
    assert.ok(++pages < 10_000, 'the cursor never ends');
  } while (cursor);
  return { items, pages };
}
