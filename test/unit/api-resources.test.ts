/**
 * The standard resources as the framework and the OpenAPI builder will take them: unique
 * operation ids and (method, path) pairs, path parameters declared, request schemas with
 * lower-case property names (the framework lower-cases input), every schema compiling under
 * JSON Schema 2020-12, v2 answers a superset of v1's, and the readings' cursor.
 */
import * as assert from 'node:assert/strict';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { JsonSchema } from '../../nodes/core/api/operation';
import { ApiError } from '../../nodes/core/api/operation';
import { STANDARD_OPERATIONS } from '../../nodes/core/api/resources';
import { serialParam, timeParam } from '../../nodes/core/api/resources/common';
import { decodePosition, encodePosition, itemsOf } from '../../nodes/core/api/resources/readings-model';

function propertyNames(schema: unknown, out: string[] = []): string[] {
  if (schema === null || typeof schema !== 'object') return out;
  const s = schema as Record<string, unknown>;
  if (s.properties && typeof s.properties === 'object') out.push(...Object.keys(s.properties));
  for (const v of Object.values(s)) if (typeof v === 'object') propertyNames(v, out);
  return out;
}

describe('REST API standard resources (contract)', () => {
  it('has unique operation ids and routes, with every path parameter declared', () => {
    const ids = STANDARD_OPERATIONS.map((o) => o.operationId);
    assert.equal(new Set(ids).size, ids.length);
    const routes = STANDARD_OPERATIONS.map((o) => `${o.method} ${o.path}`);
    assert.equal(new Set(routes).size, routes.length);
    for (const op of STANDARD_OPERATIONS) {
      const inPath = [...op.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const declared = (op.parameters ?? [])
        .filter((p) => p.in === 'path')
        .map((p) => p.name)
        .sort();
      assert.deepEqual(declared, inPath, op.operationId);
      assert.deepEqual([...op.versions], [1, 2], op.operationId);
    }
  });

  it('names request properties in lower case and compiles every schema (2020-12)', () => {
    const ajv = new Ajv2020({ strict: false });
    addFormats(ajv);
    for (const op of STANDARD_OPERATIONS) {
      for (const v of op.versions) {
        const request = op.requestBody?.(v);
        if (request) {
          ajv.compile(request);
          for (const name of propertyNames(request)) assert.equal(name, name.toLowerCase(), `${op.operationId}: request property ${name}`);
        }
        for (const [status, spec] of Object.entries(op.responses(v)))
          if (spec.schema) assert.doesNotThrow(() => ajv.compile(spec.schema as JsonSchema), `${op.operationId} ${status}`);
      }
    }
  });

  it('keeps v1 frozen: every v1 property and requirement is in v2', () => {
    for (const op of STANDARD_OPERATIONS) {
      const [r1, r2] = [op.responses(1), op.responses(2)];
      assert.deepEqual(Object.keys(r1), Object.keys(r2), op.operationId);
      for (const status of Object.keys(r1)) {
        const p1 = propertyNames(r1[Number(status)].schema);
        const p2 = new Set(propertyNames(r2[Number(status)].schema));
        for (const p of p1) assert.ok(p2.has(p), `${op.operationId} ${status}: v2 lacks ${p}`);
      }
    }
  });

  it('builds seed 004 items from records and round-trips its cursor, refusing others', () => {
    const block = [
      { n: 'D1/7/deviation/limit', t: 10, vb: true },
      { n: 'D1/7/deviation/limit/limitzone', t: 10, vs: 'H2' },
      { n: 'D1/7/deviation/limit/reason', t: 10, vs: 'upper_limit_alarm' },
      { n: 'D1/7/temperature', t: 10, v: 3.5, u: 'Cel' },
    ];
    assert.deepEqual(itemsOf('deviations', block, false), [
      {
        sensorId: 7,
        deviceId: 'D1',
        timeStamp: '1970-01-01T00:00:10+00:00',
        historyType: 'enter',
        deviationType: 'limit',
        reason: 'upper_limit_alarm',
        limitzone: 'H2',
      },
    ]);
    assert.deepEqual(itemsOf('measurements', block, true), [
      {
        sensorId: 7,
        deviceId: 'D1',
        timeStamp: '1970-01-01T00:00:10+00:00',
        value: 3.5,
        unit: '°C',
        unitType: 'temperature',
        name: 'D1/7/temperature',
        senmlUnit: 'Cel',
      },
    ]);
    assert.deepEqual(itemsOf('geodata', block, false), []);
    const p = { t: 1.5e9 + 0.123456, block: 'D1/7', skip: 2 };
    assert.deepEqual(decodePosition('geodata', encodePosition('geodata', p)), p);
    assert.throws(
      () => decodePosition('measurements', encodePosition('geodata', p)),
      (e: unknown) => e instanceof ApiError && e.param === 'cursor',
    );
    assert.throws(
      () => decodePosition('geodata', 'bm90IGEgY3Vyc29y'),
      (e: unknown) => e instanceof ApiError && e.kind === 'invalid-request',
    );
  });
});

/**
 * Found by `npm run fuzz` (test/fuzz/api.fuzz.ts): these reached the database and came back as 500s
 * (`/devices/%00`: PostgreSQL text holds no NUL; `to=99999999999999`: a Date past the year 9999 is
 * invalid). Each is now the client's 400, naming the parameter.
 */
describe('REST API parameters the stores cannot take', () => {
  const ctx = (params: Record<string, string>, query: Record<string, string> = {}) =>
    ({ params, query, identity: { tenant: 'acme', id: 1, user_id: null, scopes: [] } }) as unknown as Parameters<typeof serialParam>[0];
  const refused = (fn: () => unknown, param: string) =>
    assert.throws(fn, (err: unknown) => err instanceof ApiError && err.kind === 'invalid-request' && err.param === param);

  it('a serial holding NUL', () => {
    refused(() => serialParam(ctx({ serial: 'SN\u00001' })), 'serial');
    assert.equal(serialParam(ctx({ serial: 'SN-1' })), 'SN-1');
  });

  it('a time past the year 9999, as seconds or ISO 8601', () => {
    refused(() => timeParam(ctx({}, { to: '99999999999999' }), 'to'), 'to');
    refused(() => timeParam(ctx({}, { from: '253402300801' }), 'from'), 'from');
    assert.equal(timeParam(ctx({}, { to: '1767607200' }), 'to'), 1767607200);
    assert.equal(timeParam(ctx({}, { to: '9999-12-31T23:59:59Z' }), 'to'), 253402300799);
  });
});
