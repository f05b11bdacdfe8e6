/**
 * The REST API under fuzz (nodes/core/api/server.ts with the standard resources, docs/api.md), in
 * process over the fuzz store: requests for every operation and a few paths that are none, with
 * hostile path parameters (NUL, bad percent-encoding, huge numbers), query parameters (limits,
 * cursors, times), Accept and Content-Type headers, keys (good, read-only, another tenant's,
 * malformed), and JSON bodies mutated, deeply nested, with names differing only in case. Each
 * answer is 2xx, or a 4xx problem document with a detail; never a 500, never a stack trace; and
 * GET /devices still answers after every hundred inputs.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { ApiServer, type ApiRequest } from '../../nodes/core/api/server';
import { STANDARD_OPERATIONS } from '../../nodes/core/api/resources';
import { authenticateApiKey, type ApiKeyIdentity } from '../../nodes/core/auth/api-key-store';
import { platformCatalogue } from '../../nodes/core/events/catalogue';
import { createSqlLongTerm } from '../../nodes/core/stores/long-term-sql';
import { createMemoryShortTerm } from '../../nodes/core/stores/short-term-memory';
import { createSqlTimeSeries } from '../../nodes/core/stores/time-series-sql';
import { assertHttpAnswer, budget, fuzz } from './fuzz';
import { decodeEapi } from '../../nodes/core/codecs/eapi';
import { deepJson, EAPI, mutated } from './inputs';
import { fuzzStore } from './store';

const MAX_BODY = 16 * 1024;

/** Bodies of the operations that take one, as a client would send them. */
const BODIES = [
  '{"url":"https://example.com/hook","events":["reading.received"],"description":"x"}',
  '{"url":"http://127.0.0.1:1/x","events":["*"],"secret":"whsec_dGVzdA==","enabled":false}',
  '{"name":"t","host":"ftp.example.com","port":21,"user":"u","password":"p","directory":"/in"}',
  '{"enabled":true,"Enabled":false}',
  '{"name":"k","scopes":["read"]}',
  '{"name":"app","url":"https://a.example"}',
  '{"username":"u","password":"p"}',
  '{"settings":{"a":1}}',
  '[]',
  'null',
  '{}',
];

const PARAMS = [
  'AP-1',
  'AP-1',
  'SN-1',
  'SN-2',
  'GX-1',
  '1',
  '2',
  '0',
  '-1',
  '999999999999999999999',
  '1e3',
  '%00',
  '%ZZ',
  '%E9',
  'a%2Fb',
  'é',
  'x'.repeat(2000),
  '..',
  'null',
];
const QUERIES = [
  '',
  'limit=10',
  'limit=0',
  'limit=-1',
  'limit=1e9',
  'limit=abc',
  'limit=1&limit=2',
  'LIMIT=5',
  'cursor=abc',
  'cursor=eyJ4IjoxfQ',
  'cursor=%00',
  'from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z',
  'from=yesterday',
  'from=1767607200',
  'to=99999999999999',
  'interval=hour',
  'interval=fortnight',
  'origin=platform',
  'origin=%FF',
  'a=%',
];
const ACCEPTS = ['application/json', 'text/html', 'application/json;q=0', '*/*', 'application/*;q=0.5', 'a,b,,;q=x', 'application/problem+json'];

const OTHER_PATHS = ['/', '/nothing', '/openapi.json', '/devices/AP-1/nothing', '/DEVICES', '/devices/'];

/** Mostly undefined (keep the valid request's part), sometimes a hostile replacement. */
const sometimes = <T>(hostile: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: hostile });

/** A request for one of the operations (or a path that is none), with some of its parts made hostile. */
export function apiRequest(keys: string[]): fc.Arbitrary<ApiRequest & { text: string }> {
  return fc
    .record({
      op: fc.constantFrom(...STANDARD_OPERATIONS),
      method: sometimes(fc.constantFrom('GET', 'POST', 'PATCH', 'DELETE', 'PUT', 'HEAD', 'OPTIONS', 'TRACE', 'get', '')),
      version: sometimes(fc.constantFrom('v1', 'v3', 'V2', 'v0', 'v99999999999999999999', '')),
      base: sometimes(fc.constantFrom('/API', '/apix', '', '/api/')),
      path: sometimes(fc.constantFrom(...OTHER_PATHS)),
      param: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...PARAMS) }, fc.string({ maxLength: 12 }).map(encodeURIComponent)),
      query: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...QUERIES) }, fc.string({ maxLength: 20 })),
      key: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...keys) }, fc.constantFrom(undefined, '', 'cfx_nope', 'Bearer', '\u0000', 'k'.repeat(5000))),
      keyAs: fc.constantFrom('eapi-elclv2', 'authorization', 'x-api-key'),
      accept: sometimes(fc.constantFrom(...ACCEPTS)),
      type: fc.constantFrom(
        undefined,
        'application/json',
        'application/json',
        'application/json',
        'application/merge-patch+json',
        'text/plain',
        'application/json; charset=utf-16',
      ),
      body: fc.oneof({ weight: 6, arbitrary: mutated(BODIES) }, deepJson, fc.constant(Buffer.alloc(0)), fc.constant(Buffer.alloc(MAX_BODY + 1, 0x20))),
    })
    .map((r) => {
      const method = r.method ?? r.op.method.toUpperCase();
      const path = (r.path ?? r.op.path).replace(/\{[^}]+\}/g, r.param);
      const url = `${r.base ?? '/api'}/${r.version ?? `v${r.op.versions[r.op.versions.length - 1]}`}${path}${r.query ? `?${r.query}` : ''}`;
      const headers: Record<string, string> = {};
      if (r.key !== undefined) headers[r.keyAs] = r.keyAs === 'authorization' ? `Bearer ${r.key}` : r.key;
      if (r.accept !== undefined) headers.accept = r.accept;
      if (r.type !== undefined) headers['content-type'] = r.type;
      const body = r.body;
      return {
        method,
        url,
        headers,
        text: `${method} ${url}`,
        body: async () =>
          body.length > MAX_BODY
            ? // The node's bounded reader answers this (nodes/api/api.ts): the server passes it on.
              {
                status: 413,
                headers: { 'content-type': 'application/problem+json' },
                body: JSON.stringify({ type: 'https://conflux.dev/problems/body-too-large', title: 'The body is too large', status: 413, detail: 'too large' }),
              }
            : body,
      };
    });
}

describe('fuzz: REST API', function () {
  this.timeout(budget(3));
  let server: ApiServer;
  let keys: string[] = [];
  let apiKey = '';
  /** What reached the operator's log as a fault: every one is a bug. */
  const internal: string[] = [];

  before(async function () {
    this.timeout(60_000);
    const store = await fuzzStore();
    apiKey = store.api.key;
    keys = [apiKey, apiKey, store.api.readKey, store.otherKey];
    const { db } = store;
    const identity = await authenticateApiKey(db, apiKey);
    assert.ok(identity);
    const shortTerm = createMemoryShortTerm({ ttlSeconds: 3600, windowSize: 10, windowSeconds: 3600 });
    const timeSeries = createSqlTimeSeries(db);
    const longTerm = createSqlLongTerm(db);
    // Readings of AP-1 in every tier, so that data sets, latest values and rollups have pages to cut.
    const readings = decodeEapi(EAPI[0])
      .concat(decodeEapi(EAPI[1]), decodeEapi(EAPI[2]), decodeEapi(EAPI[3]))
      .flatMap((r) => [0, 60, 3600, 86_400].map((dt) => ({ tenant: 'api', record: { ...r, n: r.n.replace(/^[^/]+/, 'AP-1'), t: r.t + dt } })));
    await timeSeries.append(readings);
    await longTerm.add(readings);
    await shortTerm.write(readings);
    const stores = { db, timeSeries, longTerm, shortTerm, catalogue: () => platformCatalogue(), publishEvent: () => undefined };
    server = new ApiServer({
      base: '/api',
      keyHeaders: ['EAPI-ELCLV2', 'X-API-Key'],
      bearer: true,
      quota: { requests: 0, bytes: 0, periodSeconds: 86_400 },
      pageLimits: { default: 50, max: 500 },
      maxBodyBytes: MAX_BODY,
      identityCacheMs: 30_000,
      db: async () => db,
      stores: async () => stores,
      // The key with every scope stays valid whatever the fuzz deletes (DELETE /api-keys/{id}): the
      // run would otherwise spend most inputs on 401s. Every other key is looked up in the database.
      authenticate: async (key) => (key === apiKey ? (identity as ApiKeyIdentity) : authenticateApiKey(db, key)),
      onInternalError: (err, id, request) => {
        internal.push(`an internal error ${id} on ${request}: ${err instanceof Error ? err.stack : String(err)}`);
      },
    });
    server.add('fuzz', STANDARD_OPERATIONS);
  });

  after(() => server?.close());

  const listDevices = (): ApiRequest => ({ method: 'GET', url: '/api/v2/devices', headers: { 'x-api-key': apiKey }, body: async () => Buffer.alloc(0) });

  it('answers every request with 2xx or a 4xx problem with its detail, and goes on answering', async () => {
    let n = 0;
    await fuzz({
      target: 'endpoint REST API',
      arbitrary: apiRequest(keys),
      check: async (req, o) => {
        const r = await server.handle(req);
        assert.deepEqual(internal.splice(0), [], `${req.text}: a fault in the operator's log`);
        // 503 only as maintenance, which this server is not in.
        o.add(assertHttpAnswer(r, req.text));
        if (++n % 100 === 0) assert.equal((await server.handle(listDevices())).status, 200, 'GET /devices after the fuzz inputs');
      },
    });
  });
});
