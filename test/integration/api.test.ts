/**
 * The REST API as a third party meets it: conflux-api with conflux-rest-api and a
 * conflux-api-endpoint on Node-RED's HTTP server (served on 127.0.0.1 by this test), a fresh
 * database on the real PostgreSQL, and real HTTP requests through test/support/api-client.ts,
 * which checks every answer against the OpenAPI document the API serves.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { apiKeyPrefix } from '../../nodes/core/auth/api-key';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import { ApiClient, type ApiAnswer } from '../support/api-client';
import { helper } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import redisNode = require('../../nodes/storage/redis');
import apiNode = require('../../nodes/api/api');
import restApiNode = require('../../nodes/api/rest-api');
import apiEndpointNode = require('../../nodes/api/api-endpoint');

const httpNodes = require('@node-red/nodes/core/network/21-httpin.js') as (RED: NodeAPI) => void;
const changeNode = require('@node-red/nodes/core/function/15-change.js') as (RED: NodeAPI) => void;

type Msg = Record<string, any>;

let httpApp: http.RequestListener | undefined;
function api(RED: NodeAPI): void {
  httpApp = RED.httpNode as unknown as http.RequestListener;
  apiNode(RED);
}

/** The endpoint's flow: answers by the order id (an answer, a 404, a body that is not JSON). */
function testNodes(RED: NodeAPI): void {
  RED.nodes.registerType('test-orders', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (msg: Msg, send, done) => {
      const id = msg.req.params.id as string;
      if (id === 'missing') Object.assign(msg, { statusCode: 404, payload: { detail: `no order ${id}` } });
      else if (id === 'broken') msg.payload = 'this is not JSON';
      else msg.payload = { id, received: msg.payload, query: msg.req.query, tenant: msg.api.tenant, major: msg.api.version };
      send(msg);
      done();
    });
  });
}

const NODES = [postgresNode, api, restApiNode, apiEndpointNode, httpNodes, testNodes];

const ORDER_SCHEMA = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string' }, nested: { type: 'object', properties: { innervalue: { type: 'integer' } } } },
};
const ANSWER_SCHEMA = {
  type: 'object',
  required: ['id', 'received', 'tenant', 'major'],
  properties: { id: { type: 'string' }, received: { type: 'object' }, query: { type: 'object' }, tenant: { type: 'string' }, major: { type: 'integer' } },
};

/** Quotas small enough to use up in a test: 8 requests per 3 s per key. */
const QUOTA = { requests: 8, periodSeconds: 3 };

interface Site {
  origin: string;
  server: http.Server;
  sql: SqlClient;
  client: ApiClient;
}

async function start(apiConfig: Msg = {}): Promise<Site> {
  const url = await freshDatabase();
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url },
    {
      id: 'api',
      type: 'conflux-api',
      // No database chosen: the API reads the flows' conflux-postgres, as the storage tiers do.
      maxBodyKiB: '1',
      quotaRequests: String(QUOTA.requests),
      quotaPeriod: String(QUOTA.periodSeconds),
      pageDefault: '5',
      pageMax: '50',
      ...apiConfig,
    },
    { id: 'rest', type: 'conflux-rest-api', z: 'tab', api: 'api' },
    {
      id: 'orders',
      type: 'conflux-api-endpoint',
      z: 'tab',
      api: 'api',
      method: 'post',
      path: '/orders/{id}',
      versions: '1,2',
      action: 'read',
      summary: 'Places an order',
      query: 'priority',
      requestSchema: JSON.stringify(ORDER_SCHEMA),
      responseSchema: JSON.stringify(ANSWER_SCHEMA),
      wires: [['flow']],
    },
    { id: 'flow', type: 'test-orders', z: 'tab', wires: [['respond']] },
    { id: 'respond', type: 'http response', z: 'tab' },
    // A flow that never answers, and an endpoint on a path the standard resources have.
    { id: 'silent', type: 'conflux-api-endpoint', z: 'tab', api: 'api', method: 'get', path: '/silent', timeout: '1', wires: [[]] },
    { id: 'clash', type: 'conflux-api-endpoint', z: 'tab', api: 'api', method: 'get', path: '/event-types', wires: [[]] },
  ];
  await helper.load(NODES, flow as never);
  const sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
  await createTenant(sql, { id: 'acme', name: 'Acme' });
  await createTenant(sql, { id: 'other', name: 'Other' });
  const server = http.createServer(httpApp!);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { origin, server, sql, client: await ApiClient.connect(origin, '/api') };
}

async function stop(site: Site | undefined): Promise<void> {
  await helper.unload();
  if (!site) return;
  site.server.closeAllConnections();
  await new Promise((resolve) => site.server.close(resolve));
}

/** A new key of tenant (each test its own, so each has its own quota). */
async function newKey(s: Site, fields: Msg = {}, tenant = 'acme'): Promise<string> {
  return (await createBusinessStore(s.sql).create(tenant, 'api_keys', { name: 'test', ...fields })).key as string;
}

/** The last status a node showed (the helper spies on every node's status, on the prototype). */
function statusOf(id: string): { fill?: string; text: string } {
  const node = helper.getNode(id);
  const spy = (node as unknown as { status: { args: Array<[{ fill?: string; text: string }]>; thisValues: unknown[] } }).status;
  const i = spy.thisValues.lastIndexOf(node);
  assert.ok(i >= 0, `node ${id} showed no status`);
  return spy.args[i][0];
}

function assertProblem(answer: ApiAnswer, status: number, detail?: RegExp): void {
  assert.equal(answer.status, status, answer.text);
  assert.equal(answer.headers.get('content-type'), 'application/problem+json');
  assert.equal(answer.body.status, status);
  assert.match(answer.body.type, /^https:\/\/conflux\.dev\/problems\//);
  assert.doesNotMatch(answer.text, /\bat .*\.[jt]s:\d+|Error:/, 'no stack trace');
  if (detail) assert.match(answer.body.detail, detail);
}

describe('conflux-api (REST API over real HTTP and PostgreSQL)', function () {
  this.timeout(60_000);
  let s: Site;
  before(async () => {
    await helper.startServer();
    s = await start();
  });
  after(async () => {
    await stop(s);
    await helper.stopServer();
  });

  it('serves an OpenAPI 3.1 document that validates, with both versions, both key schemes, the problem schema and the custom endpoint', () => {
    const doc = s.client.raw as Msg;
    assert.ok(doc.paths['/v1/event-types'].get && doc.paths['/v2/event-types'].get);
    assert.deepEqual(
      Object.values(doc.components.securitySchemes).map((x: any) => x.name ?? x.scheme),
      ['EAPI-ELCLV2', 'bearer'],
    );
    const custom = doc.paths['/v2/orders/{id}'].post;
    assert.equal(custom.summary, 'Places an order');
    assert.deepEqual(custom.requestBody.content['application/json'].schema, ORDER_SCHEMA);
    assert.equal(custom.responses['200'].content['application/json'].schema.properties.version.const, '2.1');
    assert.ok(doc.paths['/v1/orders/{id}'].post, 'the endpoint serves v1 too');
    assert.equal(doc.paths['/v2/event-types'].get.parameters.find((p: Msg) => p.name === 'limit').schema.maximum, 50, 'the configured max limit');
  });

  it('answers each version with its version in the body, with the key in EAPI-ELCLV2 or as a bearer token', async () => {
    const key = await newKey(s);
    const v1 = await s.client.get('/v1/event-types', { key });
    assert.equal(v1.status, 200, v1.text);
    assert.equal(v1.body.version, '1.0');
    const v2 = await s.client.get('/v2/event-types', { key, bearer: true });
    assert.equal(v2.status, 200, v2.text);
    assert.equal(v2.body.version, '2.1');
    assert.equal(v2.body.items.length, 5, 'the default page limit');
    assert.ok(v2.headers.get('x-correlation-id'));
  });

  it('sends RateLimit headers on every answer to a key, then 410 with the reset once the quota is used up, and serves again after the reset', async () => {
    const key = await newKey(s);
    let answer = await s.client.get('/v2/event-types', { key });
    const first = Number(answer.headers.get('ratelimit-remaining'));
    assert.equal(answer.headers.get('ratelimit-limit'), String(QUOTA.requests));
    assert.ok(first >= 0 && first < QUOTA.requests, `RateLimit-Remaining ${first}`);
    assert.ok(Number(answer.headers.get('ratelimit-reset')) <= QUOTA.periodSeconds);
    // An error after authentication counts and carries the headers too.
    assert.ok((await s.client.get('/v2/event-types?origin=nowhere', { key })).headers.get('ratelimit-remaining'));
    for (let i = 0; i < QUOTA.requests * 2 + 2 && answer.status !== 410; i++) answer = await s.client.get('/v2/event-types', { key });
    assertProblem(answer, 410, /quota of requests/);
    assert.equal(answer.body.version, '2.1');
    assert.equal(answer.headers.get('ratelimit-remaining'), '0');
    const reset = Date.parse(answer.body.reset);
    assert.ok(reset > Date.now() - 1000 && reset <= Date.now() + QUOTA.periodSeconds * 1000, answer.body.reset);
    assert.ok(Number(answer.headers.get('retry-after')) >= 1);
    await until('the quota to be renewed', async () => (await s.client.get('/v2/event-types', { key })).status === 200);
    assert.ok(Date.now() >= reset - 50, 'not before the reset it announced');
  });

  it('401 is the same for a missing, malformed, unknown, revoked and expired key; 403 for a key whose scopes do not allow the operation', async () => {
    const revoked = await newKey(s);
    assert.equal((await s.sql.query('UPDATE api_keys SET revoked_at = now() WHERE prefix = $1', [apiKeyPrefix(revoked)])).rowCount, 1);
    const expired = await newKey(s, { expires_at: new Date(Date.now() - 60_000).toISOString() });
    const unknown = (await newKey(s)).replace(/.$/, (c) => (c === 'a' ? 'b' : 'a'));
    const answers = [
      await s.client.get('/v2/event-types'),
      await s.client.get('/v2/event-types', { key: 'not-a-key' }),
      await s.client.get('/v2/event-types', { key: unknown }),
      await s.client.get('/v2/event-types', { key: revoked }),
      await s.client.get('/v2/event-types', { key: expired }),
    ];
    for (const a of answers) assertProblem(a, 401);
    assert.equal(new Set(answers.map((a) => a.text)).size, 1, 'one body for every bad key');
    assert.match(answers[0].headers.get('www-authenticate') ?? '', /^Bearer/);
    const webhooksOnly = await newKey(s, { scopes: ['webhooks'] });
    assertProblem(await s.client.get('/v2/event-types', { key: webhooksOnly }), 403, /scopes/);
  });

  it('400 names the bad parameter or body property; query names and body property names are case-insensitive', async () => {
    const key = await newKey(s);
    const bad = await s.client.get('/v2/event-types?ORIGIN=nowhere', { key });
    assertProblem(bad, 400, /origin/);
    assert.equal(bad.body.parameter, 'origin');
    const tooMany = await s.client.get('/v2/event-types?limit=51', { key });
    assertProblem(tooMany, 400, /at most 50/);
    assert.equal(tooMany.body.parameter, 'limit');
    const missing = await s.client.post('/v2/orders/o-1', { nested: { innerValue: 1 } }, { key });
    assertProblem(missing, 400, /name is required/);
    assert.equal(missing.body.parameter, 'name');
    const wrongType = await s.client.post('/v2/orders/o-1', { Name: 'x', NESTED: { InnerValue: 'one' } }, { key });
    assertProblem(wrongType, 400);
    assert.equal(wrongType.body.parameter, 'nested.innervalue');
    assertProblem(await s.client.post('/v2/orders/o-1', '{"name": ', { key }), 400, /not valid JSON/);

    const ok = await s.client.post('/v2/orders/o-1?PRIORITY=high', { NaMe: 'Widget', Nested: { InnerValue: 3 } }, { key });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.body, {
      id: 'o-1',
      received: { name: 'Widget', nested: { innervalue: 3 } },
      query: { priority: 'high' },
      tenant: 'acme',
      major: 2,
      version: '2.1',
    });
    const lower = await s.client.get('/v2/event-types?Origin=platform&LIMIT=50', { key });
    assert.equal(lower.status, 200);
    assert.ok(lower.body.items.length > 5 && lower.body.items.every((t: Msg) => t.origin === 'platform'));
  });

  it('404 for a path nothing serves and for what the flow does not know; 405 for a method the path lacks; 406 for an Accept without JSON', async () => {
    const key = await newKey(s);
    assertProblem(await s.client.get('/v2/nothing/here', { key }), 404);
    const unknown = await s.client.post('/v1/orders/missing', { name: 'x' }, { key });
    assertProblem(unknown, 404, /no order missing/);
    assert.equal(unknown.body.version, '1.0');
    assertProblem(await s.client.request('DELETE', '/v2/event-types', { key }), 405);
    const html = await s.client.get('/v2/event-types', { key, headers: { accept: 'text/html' } });
    assertProblem(html, 406);
    assert.equal((await s.client.get('/v2/event-types', { key, headers: { accept: 'text/html, application/*;q=0.5' } })).status, 200);
  });

  it("503 when the endpoint's flow does not answer in time; an endpoint on a path already served shows why on its status", async () => {
    const key = await newKey(s);
    assertProblem(await s.client.get('/v2/silent', { key }), 503, /did not answer within 1 s/);
    const status = statusOf('clash');
    assert.equal(status.fill, 'red');
    assert.match(status.text, /clashes with listEventTypes/);
  });

  it('413 for a body over the limit, 415 for a body that is not JSON', async () => {
    const key = await newKey(s);
    const big = await s.client.post('/v2/orders/o-3', { name: 'x'.repeat(2048) }, { key });
    assertProblem(big, 413);
    assert.equal(big.body.version, '2.1');
    assertProblem(await s.client.post('/v2/orders/o-3', 'name=x', { key, headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415);
  });

  it('500 carries a correlation id and no stack; the log has the error under that id', async () => {
    const key = await newKey(s);
    const answer = await s.client.post('/v2/orders/broken', { name: 'x' }, { key });
    assertProblem(answer, 500);
    const id = answer.body.correlationId as string;
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(answer.headers.get('x-correlation-id'), id);
    assert.doesNotMatch(answer.text, /not JSON/, 'the cause stays in the log');
    const logged = (helper.log() as unknown as { args: Array<[Msg]> }).args.map(([e]) => String(e.msg));
    assert.ok(
      logged.some((line) => line.includes(id) && line.includes('not JSON')),
      'the error is logged with its correlation id',
    );
  });
});

describe('conflux-api in maintenance mode', function () {
  this.timeout(60_000);
  let s: Site | undefined;
  before(() => helper.startServer());
  after(async () => {
    await stop(s);
    await helper.stopServer();
  });

  it('answers 503 with Retry-After to every operation; the OpenAPI document is still served', async () => {
    s = await start({ database: 'db', maintenance: true, retryAfter: '120' });
    const key = await newKey(s);
    for (const answer of [await s.client.get('/v2/event-types', { key }), await s.client.post('/v1/orders/o-2', { name: 'x' }, { key })]) {
      assertProblem(answer, 503, /maintenance/);
      assert.equal(answer.headers.get('retry-after'), '120');
      assert.equal(answer.body.retryAfter, 120);
    }
    assert.ok(s.client.validated >= 2);
  });
});

describe('the example flow (flows/rest-api.json)', function () {
  this.timeout(60_000);
  before(() => helper.startServer());
  after(() => helper.stopServer());

  it('serves the standard resources and its greeting endpoint, documented and checked against the document', async () => {
    const url = await freshDatabase();
    const file = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'flows', 'rest-api.json'), 'utf8');
    const flow = (JSON.parse(file.replace('${CONFLUX_POSTGRES_URL}', url).replace('${CONFLUX_REDIS_URL}', '')) as Msg[]).filter((n) => n.type !== 'comment');
    await helper.load([postgresNode, redisNode, api, restApiNode, apiEndpointNode, httpNodes, changeNode], flow as never);
    const db = flow.find((n) => n.type === 'conflux-postgres')!.id as string;
    const sql = await (helper.getNode(db) as unknown as { sql(): Promise<SqlClient> }).sql();
    await createTenant(sql, { id: 'acme', name: 'Acme' });
    const key = (await createBusinessStore(sql).create('acme', 'api_keys', { name: 'example' })).key as string;
    const server = http.createServer(httpApp!);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const client = await ApiClient.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, '/example-api');
      const hello = await client.get('/v2/greetings/Ada?LANG=de', { key });
      assert.deepEqual([hello.status, hello.body], [200, { greeting: 'Hallo Ada', tenant: 'acme', version: '2.1' }]);
      assert.equal((await client.get('/v1/event-types', { key, bearer: true })).body.version, '1.0');
      assert.equal(hello.headers.get('ratelimit-limit'), '10000');
    } finally {
      await helper.unload();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
