/**
 * The REST API's framework-free core without a database: input rules (case-insensitive names,
 * Accept, key headers, parameters), the OpenAPI builder, custom endpoint parsing and answers, and
 * the server's answers that come before a key is looked up (404, 405, 503, 406, 401).
 */
import { strict as assert } from 'node:assert';
import SwaggerParser from '@apidevtools/swagger-parser';
import { customOperation, parseEndpoint, responseCollector } from '../../nodes/core/api/endpoint';
import { acceptsJson, apiKeyOf, checkParameters, InputError, lowerCaseKeys, parseJsonBody, queryOf } from '../../nodes/core/api/input';
import { buildOpenApi, withVersion } from '../../nodes/core/api/openapi';
import { ApiError, type ApiOperation, type ApiParameter } from '../../nodes/core/api/operation';
import { STANDARD_OPERATIONS } from '../../nodes/core/api/resources';
import { ApiServer, type ApiServerOptions } from '../../nodes/core/api/server';
import { BodyValidator } from '../../nodes/core/api/validate';
import { versionString } from '../../nodes/core/api/versions';

const CATALOGUE = STANDARD_OPERATIONS.find((op) => op.operationId === 'listEventTypes')!;

const thrown = (fn: () => unknown): InputError => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof InputError, String(err));
    return err;
  }
  assert.fail('nothing was thrown');
};

describe('REST API core', () => {
  describe('input', () => {
    it('lower-cases property names at every depth, in arrays too, and refuses two names that differ only in case', () => {
      assert.deepEqual(lowerCaseKeys({ Serial: 'A', Data: [{ Value: 1, UNIT: 'C' }], Meta: { Deep: { X: null } } }), {
        serial: 'A',
        data: [{ value: 1, unit: 'C' }],
        meta: { deep: { x: null } },
      });
      assert.equal(thrown(() => lowerCaseKeys({ a: [{ Name: 1, name: 2 }] })).param, 'a[0].name');
      assert.equal(parseJsonBody(Buffer.alloc(0)), undefined);
      assert.match(thrown(() => parseJsonBody(Buffer.from('{'))).detail, /not valid JSON/);
      let deep: unknown = 1;
      for (let i = 0; i < 40; i++) deep = { x: deep };
      assert.match(thrown(() => lowerCaseKeys(deep)).detail, /nested deeper/);
    });

    it('Accept: absent, */*, application/* and JSON types are fine; text/html or q=0 is not', () => {
      for (const ok of [undefined, '', '*/*', 'application/*', 'application/json', 'text/html, application/json;q=0.1', 'application/problem+json'])
        assert.ok(acceptsJson(ok), String(ok));
      for (const no of ['text/html', 'application/xml', 'application/json;q=0', 'text/*']) assert.ok(!acceptsJson(no), no);
    });

    it('takes the key from the configured headers first, then Authorization: Bearer', () => {
      assert.equal(apiKeyOf({ 'eapi-elclv2': ' k1 ' }, ['EAPI-ELCLV2'], true), 'k1');
      assert.equal(apiKeyOf({ authorization: 'Bearer k2' }, ['EAPI-ELCLV2'], true), 'k2');
      assert.equal(apiKeyOf({ authorization: 'bearer k2' }, ['EAPI-ELCLV2'], true), 'k2');
      assert.equal(apiKeyOf({ authorization: 'Bearer k2' }, ['EAPI-ELCLV2'], false), undefined);
      assert.equal(apiKeyOf({ authorization: 'Basic eDp5' }, [], true), undefined);
      assert.equal(apiKeyOf({ 'x-key': 'k3' }, ['X-Key'], true), 'k3');
    });

    it('matches query names ignoring case, ignores unknown ones, refuses one given twice, and checks values against the schema', () => {
      const params: ApiParameter[] = [
        { name: 'from', in: 'query', required: true, description: '', schema: { type: 'string' } },
        { name: 'limit', in: 'query', description: '', schema: { type: 'integer', minimum: 1, maximum: 10 } },
        { name: 'kind', in: 'query', description: '', schema: { type: 'string', enum: ['a', 'b'] } },
      ];
      assert.deepEqual(queryOf('FROM=1&Limit=5&other=x', params), { from: '1', limit: '5' });
      assert.equal(thrown(() => queryOf('from=1&From=2', params)).param, 'from');
      assert.equal(thrown(() => checkParameters(params, { query: {}, params: {} })).param, 'from');
      assert.match(thrown(() => checkParameters(params, { query: { from: 'x', limit: '11' }, params: {} })).detail, /at most 10/);
      assert.match(thrown(() => checkParameters(params, { query: { from: 'x', limit: '1.5' }, params: {} })).detail, /an integer/);
      assert.match(thrown(() => checkParameters(params, { query: { from: 'x', kind: 'c' }, params: {} })).detail, /one of a, b/);
      checkParameters(params, { query: { from: 'x', limit: '10', kind: 'b' }, params: {} });
    });

    it('validates bodies with ajv and names the property at fault', () => {
      const v = new BodyValidator();
      const schema = {
        type: 'object',
        required: ['name'],
        properties: { name: { type: 'string' }, items: { type: 'array', items: { type: 'object', properties: { n: { type: 'integer' } } } } },
      };
      assert.equal(thrown(() => v.check('x', schema, {})).param, 'name');
      assert.equal(thrown(() => v.check('x', schema, { name: 'a', items: [{ n: 1 }, { n: 'two' }] })).param, 'items[1].n');
      assert.equal(thrown(() => v.check('x', schema, undefined)).param, 'body');
      v.check('x', schema, { name: 'a', items: [{ n: 1 }] });
    });
  });

  describe('versions and the OpenAPI document', () => {
    it('v1 is frozen at 1.0; v2 says its minor', () => {
      assert.equal(versionString(1), '1.0');
      assert.match(versionString(2), /^2\.\d+$/);
    });

    it('adds version to every body schema, merged into plain objects and through allOf otherwise', () => {
      const plain = withVersion({ type: 'object', required: ['a'], properties: { a: {} }, additionalProperties: false }, 2);
      assert.deepEqual(plain.required, ['a', 'version']);
      assert.equal((plain.properties as any).version.const, versionString(2));
      assert.ok(Array.isArray(withVersion({ oneOf: [{ type: 'object' }] }, 1).allOf));
    });

    it('builds a document swagger-parser validates, with both versions, both key schemes and custom endpoints', async () => {
      const custom = customOperation(
        'n1',
        parseEndpoint({ method: 'post', path: '/orders/{id}', versions: '1,2', requestSchema: '{"type":"object"}' }),
        async () => ({}),
      );
      const served = [...STANDARD_OPERATIONS, custom].flatMap((op) => op.versions.map((version) => ({ op, version, parameters: op.parameters ?? [] })));
      const doc = buildOpenApi(served, [1, 2], { base: '/api', keyHeaders: ['EAPI-ELCLV2'], bearer: true, quotas: true }) as any;
      await SwaggerParser.validate(structuredClone(doc));
      assert.ok(doc.paths['/v1/orders/{id}'].post && doc.paths['/v2/orders/{id}'].post && doc.paths['/v2/openapi.json'].get);
      assert.equal(doc.paths['/v2/event-types'].get.responses['410'].content['application/problem+json'].schema.$ref, '#/components/schemas/Problem');
      assert.deepEqual(Object.keys(doc.components.securitySchemes), ['apiKeyHeader', 'bearer']);
      const v1only = buildOpenApi(served, [1], { base: '/api', keyHeaders: ['EAPI-ELCLV2'], bearer: false, quotas: false }) as any;
      await SwaggerParser.validate(structuredClone(v1only));
      assert.ok(Object.keys(v1only.paths).every((p) => p.startsWith('/v1/')));
      assert.equal(v1only.paths['/v1/event-types'].get.responses['410'], undefined, 'no quota, no 410');
    });
  });

  describe('custom endpoints', () => {
    it('refuses bad fields with the reason', () => {
      assert.throws(() => parseEndpoint({ path: 'orders' }), /path/);
      assert.throws(() => parseEndpoint({ path: '/a b' }), /path/);
      assert.throws(() => parseEndpoint({ path: '/openapi.json' }), /API document/);
      assert.throws(() => parseEndpoint({ path: '/x', versions: '3' }), /versions/);
      assert.throws(() => parseEndpoint({ path: '/x', action: 'telemetry!' }), /key action/);
      assert.throws(() => parseEndpoint({ path: '/x', method: 'post', requestSchema: '{' }), /not JSON/);
      assert.throws(() => parseEndpoint({ path: '/x', method: 'post', requestSchema: '{"type": 5}' }), /not a valid JSON schema/);
      assert.throws(() => parseEndpoint({ path: '/x', requestSchema: '{"type":"object"}' }), /GET takes no request body/);
      assert.deepEqual(parseEndpoint({ path: '/x/{id}/', query: 'a, b' }).query, ['a', 'b']);
    });

    it('turns what the http response node writes into the answer: JSON objects, 4xx as API errors, anything else a fault', async () => {
      const send = (status: number, payload: unknown) => {
        const { res, answer } = responseCollector();
        (res._res as any).set({ 'X-Extra': '1', 'Content-Type': 'text/plain' }).status(status).send(payload);
        return answer;
      };
      assert.deepEqual(await send(201, '{"a":1}'), { status: 201, headers: { 'x-extra': '1' }, body: { a: 1 } });
      const { res, answer } = responseCollector();
      (res._res as any).status(200).jsonp({ b: 2 });
      assert.deepEqual((await answer).body, { b: 2 });
      await assert.rejects(send(404, { detail: 'no order 7' }), (e: ApiError) => e instanceof ApiError && e.kind === 'not-found' && e.detail === 'no order 7');
      await assert.rejects(send(400, { detail: 'bad', parameter: 'x' }), (e: ApiError) => e.kind === 'invalid-request' && e.param === 'x');
      await assert.rejects(send(200, 'plain text'), /not JSON/);
      await assert.rejects(send(200, '[1]'), /not a JSON object/);
      await assert.rejects(send(502, {}), /answered 502/);
    });
  });

  describe('server answers before a key is looked up', () => {
    const options = (extra: Partial<ApiServerOptions> = {}): ApiServerOptions => ({
      base: '/api',
      keyHeaders: ['EAPI-ELCLV2'],
      bearer: true,
      quota: { requests: 0, bytes: 0, periodSeconds: 60 },
      pageLimits: { default: 10, max: 100 },
      maxBodyBytes: 1024,
      db: () => Promise.reject(new Error('no database in this test')),
      stores: () => Promise.reject(new Error('no stores in this test')),
      onInternalError: () => undefined,
      ...extra,
    });
    const request = (method: string, url: string, headers: Record<string, string> = {}) => ({ method, url, headers, body: async () => Buffer.alloc(0) });
    const parse = (r: { body: string | Buffer }) => JSON.parse(String(r.body));

    it('404 for an unknown path or version, 405 with Allow, 406, 401 without a key; each a problem with the version and a correlation id', async () => {
      const server = new ApiServer(options());
      server.add('rest', STANDARD_OPERATIONS);
      const notFound = await server.handle(request('GET', '/api/v2/nope'));
      assert.equal(notFound.status, 404);
      assert.equal(parse(notFound).version, versionString(2));
      assert.equal((await server.handle(request('GET', '/api/v3/event-types'))).status, 404);
      const method = await server.handle(request('POST', '/api/v1/event-types'));
      assert.deepEqual([method.status, method.headers.allow, parse(method).version], [405, 'GET', '1.0']);
      assert.equal((await server.handle(request('GET', '/api/v2/event-types', { accept: 'text/csv' }))).status, 406);
      const noKey = await server.handle(request('GET', '/API/V2/Event-Types'));
      assert.equal(noKey.status, 401);
      assert.match(noKey.headers['x-correlation-id'], /^[0-9a-f-]{36}$/);
      const doc = await server.handle(request('GET', '/api/v2/openapi.json'));
      assert.equal(doc.status, 200);
      assert.equal(parse(doc).openapi, '3.1.0');
    });

    it('maintenance: 503 with Retry-After, switched on and off at run time', async () => {
      const server = new ApiServer(options({ maintenance: 30 }));
      server.add('rest', STANDARD_OPERATIONS);
      const down = await server.handle(request('GET', '/api/v2/event-types'));
      assert.deepEqual([down.status, down.headers['retry-after'], parse(down).retryAfter], [503, '30', 30]);
      server.setMaintenance(undefined);
      assert.equal((await server.handle(request('GET', '/api/v2/event-types'))).status, 401);
    });

    it('refuses an operation that clashes with one another node serves, and serves it once that node is gone', () => {
      const server = new ApiServer(options());
      server.add('rest', STANDARD_OPERATIONS);
      const clash: ApiOperation = { ...CATALOGUE, operationId: 'mine', path: '/Event-Types' };
      assert.throws(() => server.add('endpoint', [clash]), /clashes with listEventTypes/);
      server.remove('rest');
      server.add('endpoint', [clash]);
    });

    it('with a key: dispatches to the most literal route, adds the version, maps ApiError, hides a fault behind a correlation id, applies page limits', async () => {
      const errors: Array<[unknown, string]> = [];
      const server = new ApiServer(
        options({
          authenticate: async (key) => (key === 'good' ? { tenant: 'acme', id: 1, user_id: null, scopes: ['read'] } : undefined),
          stores: async () => ({}) as never,
          onInternalError: (err, id) => errors.push([err, id]),
        }),
      );
      const op = (operationId: string, path: string, handle: ApiOperation['handle']): ApiOperation => ({
        ...CATALOGUE,
        operationId,
        path,
        parameters: [{ name: 'limit', in: 'query', description: '', schema: { type: 'integer' } }],
        handle,
      });
      server.add('x', [
        op('bySerial', '/devices/{serial}', async (ctx) => {
          if (ctx.params.serial === 'gone') throw new ApiError('not-found', 'no device gone');
          if (ctx.params.serial === 'bad') throw new ApiError('invalid-request', 'from is not a time', 'from');
          if (ctx.params.serial === 'boom') throw new Error('secret internals at /srv/x.js:1');
          return { body: { route: 'bySerial', serial: ctx.params.serial, limit: ctx.query.limit } };
        }),
        op('search', '/devices/search', async () => ({ body: { route: 'search' } })),
      ]);
      const get = async (url: string) => {
        const r = await server.handle(request('GET', url, { 'eapi-elclv2': 'good' }));
        return { status: r.status, body: parse(r) };
      };
      assert.deepEqual(await get('/api/v2/devices/search'), { status: 200, body: { route: 'search', version: versionString(2) } });
      assert.deepEqual(await get('/api/v1/devices/a%2Fb?LIMIT=7'), { status: 200, body: { route: 'bySerial', serial: 'a/b', limit: '7', version: '1.0' } });
      assert.equal((await get('/api/v1/devices/x')).body.limit, '10', 'the default page limit');
      assert.deepEqual([(await get('/api/v1/devices/x?limit=101')).status, (await get('/api/v1/devices/x?limit=101')).body.parameter], [400, 'limit']);
      assert.deepEqual([(await get('/api/v2/devices/gone')).status, (await get('/api/v2/devices/gone')).body.detail], [404, 'no device gone']);
      assert.deepEqual([(await get('/api/v2/devices/bad')).status, (await get('/api/v2/devices/bad')).body.parameter], [400, 'from']);
      const boom = await get('/api/v2/devices/boom');
      assert.equal(boom.status, 500);
      assert.doesNotMatch(JSON.stringify(boom.body), /secret|srv/);
      assert.equal(errors.at(-1)![1], boom.body.correlationId);
      assert.equal((await server.handle(request('GET', '/api/v2/devices/x', { 'eapi-elclv2': 'bad' }))).status, 401);
    });

    it("reuses a known key's identity for identityCacheMs, never an unknown key's", async () => {
      let now = 0;
      const asked: string[] = [];
      const server = new ApiServer(
        options({
          now: () => now,
          identityCacheMs: 5_000,
          authenticate: async (key) => {
            asked.push(key);
            return key === 'good' ? { tenant: 'acme', id: 1, user_id: null, scopes: ['webhooks'] } : undefined;
          },
        }),
      );
      server.add('rest', STANDARD_OPERATIONS);
      const status = async (key: string) => (await server.handle(request('GET', '/api/v2/event-types', { 'eapi-elclv2': key }))).status;
      assert.deepEqual([await status('good'), await status('good'), await status('bad'), await status('bad')], [403, 403, 401, 401]);
      assert.deepEqual(asked, ['good', 'bad', 'bad']);
      now = 5_001;
      await status('good');
      assert.deepEqual(asked, ['good', 'bad', 'bad', 'good']);
    });
  });
});
