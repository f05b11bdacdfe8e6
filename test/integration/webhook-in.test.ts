/**
 * conflux-webhook-in as a third party meets it: the node on Node-RED's HTTP server (served on
 * 127.0.0.1 by this test, as test/integration/http-in.test.ts does), a real database (a fresh
 * one on the test PostgreSQL, and the embedded PGlite for the main path), requests from a real
 * HTTP client, signatures made by the reference `standardwebhooks` library.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { Client } from 'pg';
import { Webhook } from 'standardwebhooks';
import { encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import type { SqlClient } from '../../nodes/core/db/sql';
import { pruneReceipts } from '../../nodes/core/webhooks/in-inbox';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import { catchNode, helper } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import webhookInNode = require('../../nodes/webhooks/webhook-in');

type Msg = Record<string, any>;
const SECRET = `whsec_${Buffer.from('integration secret for webhook-in').toString('base64')}`;
const ROTATED = `whsec_${Buffer.from('the next secret, while rotating!!').toString('base64')}`;
const PATH = '/hooks/partner';

let httpApp: http.RequestListener | undefined;
function webhookIn(RED: NodeAPI): void {
  httpApp = RED.httpNode as unknown as http.RequestListener;
  webhookInNode(RED);
}

/** Done callbacks of messages a `test-hold` node received and has not completed. */
const held: Array<(err?: Error) => void> = [];
/** Webhook ids the `test-fail-once` node has failed once. */
const failed = new Set<string>();
function testNodes(RED: NodeAPI): void {
  RED.nodes.registerType('test-hold', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (_msg, _send, done) => void held.push(done));
  });
  RED.nodes.registerType('test-fail-once', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (msg, send, done) => {
      const id = (msg as Msg).webhook.id as string;
      if (failed.has(id)) {
        send(msg);
        return done();
      }
      failed.add(id);
      done(new Error('the first try fails'));
    });
  });
}

const NODES = [postgresNode, webhookIn, testNodes, catchNode];

interface Site {
  origin: string;
  server: http.Server;
  sql: SqlClient;
  /** Messages that reached the `out` helper node, in order. */
  got: Msg[];
  keys: { webhooks: string; devices: string };
}
let site: Site | undefined;

async function start(options: { url: string; node?: Msg; credentials?: Msg; wires?: string[] }): Promise<Site> {
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url: options.url },
    {
      id: 'wh',
      type: 'conflux-webhook-in',
      z: 'tab',
      database: 'db',
      path: PATH,
      auth: 'signature',
      tenant: 'acme',
      wires: [options.wires ?? ['out']],
      ...options.node,
    },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'hold', type: 'test-hold', z: 'tab' },
    { id: 'failOnce', type: 'test-fail-once', z: 'tab', wires: [['out']] },
  ];
  await helper.load(NODES, flow as never, { wh: options.credentials ?? { secrets: `${ROTATED} ${SECRET}` } } as never);
  const got: Msg[] = [];
  helper.getNode('out').on('input', (msg: Msg) => got.push(msg));
  const sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
  let keys = { webhooks: '', devices: '' };
  // A second load on the same database (a redeploy) finds its tenant and keys there already.
  if ((await sql.query("SELECT 1 FROM tenants WHERE id = 'acme'")).rowCount === 0) {
    await createTenant(sql, { id: 'acme', name: 'Acme' });
    const store = createBusinessStore(sql);
    keys = {
      webhooks: (await store.create('acme', 'api_keys', { name: 'partner', scopes: ['webhooks'] })).key as string,
      devices: (await store.create('acme', 'api_keys', { name: 'devices only', scopes: ['devices'] })).key as string,
    };
  }
  const server = http.createServer(httpApp!);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  site = { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, sql, got, keys };
  return site;
}

interface Answer {
  status: number;
  headers: Headers;
  body: Msg;
}

async function post(s: Site, body: string | Buffer, headers: Record<string, string> = {}, method = 'POST'): Promise<Answer> {
  const res = await fetch(`${s.origin}${PATH}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: method === 'GET' ? undefined : typeof body === 'string' ? body : new Uint8Array(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === '' ? {} : (JSON.parse(text) as Msg) };
}

function signed(body: string, id: string, secret = SECRET, at = new Date()): Record<string, string> {
  return { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign(id, at, body) };
}

function assertProblem(answer: Answer, status: number, detail?: RegExp): void {
  assert.equal(answer.status, status, JSON.stringify(answer.body));
  assert.equal(answer.headers.get('content-type'), 'application/problem+json');
  assert.equal(answer.body.status, status);
  assert.match(answer.body.type, /^https:\/\/conflux\.dev\/problems\//);
  assert.doesNotMatch(JSON.stringify(answer.body), /\bat .*\.js:\d+/, 'no stack trace');
  if (detail) assert.match(answer.body.detail, detail);
}

const inbox = async (s: Site, id: string) =>
  Number((await s.sql.query<{ n: string }>('SELECT count(*) AS n FROM inbox WHERE message_id = $1', [id])).rows[0].n);
const arrived = (s: Site, id: string) => s.got.filter((m) => m.webhook.id === id).length;

const event = (n: number) => JSON.stringify({ id: `evt_${n}`, type: 'vehicle.processed', subject: `WVW${n}`, occurredAt: '2025-06-15T12:00:00Z', data: { n } });

describe('conflux-webhook-in', function () {
  this.timeout(60_000);
  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(async () => {
    for (const done of held.splice(0)) done();
    await helper.unload();
    if (site) {
      site.server.closeAllConnections();
      await new Promise((resolve) => site!.server.close(resolve));
      site = undefined;
    }
  });

  for (const [engine, url] of [
    ['PostgreSQL', () => freshDatabase()],
    ['the embedded database', () => Promise.resolve('')],
  ] as const) {
    it(`accepts a signed event into the inbox and hands it to the flow, acked once done (${engine})`, async () => {
      const s = await start({ url: await url() });
      const body = event(1);
      const answer = await post(s, body, { ...signed(body, 'msg_1'), 'x-partner-event': 'vehicle' });
      assert.equal(answer.status, 202, JSON.stringify(answer.body));
      assert.deepEqual(answer.body, { id: 'msg_1', status: 'stored' });
      await until('the event to reach the flow', () => arrived(s, 'msg_1') === 1);
      const msg = s.got[0];
      assert.equal(JSON.stringify(msg.payload), body, 'the JSON as sent, its keys in their order');
      assert.equal(msg.event.type, 'vehicle.processed');
      assert.equal(msg.event.tenant, 'acme');
      assert.equal(msg.tenant, 'acme');
      assert.equal(msg.source.transport, 'webhook');
      assert.equal(msg.headers['x-partner-event'], 'vehicle');
      assert.equal(msg.headers['webhook-signature'], undefined);
      assert.deepEqual([msg.webhook.id, msg.webhook.attempts], ['msg_1', 1]);
      await until('the inbox row to be acked', async () => (await inbox(s, 'msg_1')) === 0);
    });
  }

  it('Standard Webhooks: refuses a tampered body, an unknown secret and a timestamp over 5 minutes old; a rotated secret works', async () => {
    const s = await start({ url: await freshDatabase() });
    const body = event(2);
    assertProblem(await post(s, body.replace('WVW2', 'WVW3'), signed(body, 'msg_t')), 401, /no v1 signature/);
    const stranger = `whsec_${Buffer.from('a secret this node does not know').toString('base64')}`;
    assertProblem(await post(s, body, signed(body, 'msg_u', stranger)), 401);
    assertProblem(await post(s, body, signed(body, 'msg_o', SECRET, new Date(Date.now() - 6 * 60_000))), 401, /more than 5 minutes old/);
    assertProblem(await post(s, body, { 'webhook-id': 'msg_n' }), 401, /webhook-signature/);
    assert.equal((await post(s, body, signed(body, 'msg_r', ROTATED))).status, 202);
    await until('the accepted event', () => arrived(s, 'msg_r') === 1);
    assert.equal(s.got.length, 1, 'nothing refused reached the flow');
    assert.equal(Number((await s.sql.query<{ n: string }>('SELECT count(*) AS n FROM webhook_receipts')).rows[0].n), 1);
  });

  it('HTTP basic: the right user and password only; a body without webhook-id gets a stable id', async () => {
    const s = await start({ url: await freshDatabase(), node: { auth: 'basic' }, credentials: { user: 'partner', password: 's3cret' } });
    const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`partner:${password}`).toString('base64')}` });
    const wrong = await post(s, '{"a": 1}', basic('guess'));
    assertProblem(wrong, 401, /wrong user or password/);
    assert.match(wrong.headers.get('www-authenticate') ?? '', /^Basic /);
    assertProblem(await post(s, '{"a": 1}'), 401);
    const first = await post(s, '{"a": 1}', basic('s3cret'));
    assert.equal(first.status, 202);
    assert.match(first.body.id, /^sha256:/);
    const again = await post(s, '{"a": 1}', basic('s3cret'));
    assert.deepEqual([again.status, again.body], [200, { id: first.body.id, status: 'duplicate' }]);
    await until('the event to reach the flow', () => arrived(s, first.body.id) === 1);
  });

  it('API key: a key with the webhooks scope stores for its tenant; another scope is 403, an unknown key 401', async () => {
    const s = await start({ url: await freshDatabase(), node: { auth: 'api-key', tenant: '' } });
    const ok = await post(s, event(4), { 'x-api-key': s.keys.webhooks, 'webhook-id': 'k1' });
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    assert.equal((await post(s, event(5), { authorization: `Bearer ${s.keys.webhooks}`, 'webhook-id': 'k2' })).status, 202);
    assertProblem(await post(s, event(6), { 'x-api-key': s.keys.devices, 'webhook-id': 'k3' }), 403, /webhooks/);
    assertProblem(await post(s, event(7), { 'x-api-key': `${s.keys.webhooks.slice(0, -2)}xx`, 'webhook-id': 'k4' }), 401);
    assertProblem(await post(s, event(8), { 'webhook-id': 'k5' }), 401, /X-API-Key/);
    await until('both accepted events', () => s.got.length === 2);
    assert.deepEqual(
      s.got.map((m) => [m.webhook.id, m.tenant]),
      [
        ['k1', 'acme'],
        ['k2', 'acme'],
      ],
    );
  });

  it('stores a repeated webhook-id once and hands it to the flow once, before and after the flow finished with it', async () => {
    const s = await start({ url: await freshDatabase() });
    const body = event(9);
    const answers = await Promise.all([1, 2, 3].map(() => post(s, body, signed(body, 'msg_dup'))));
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 200, 202]);
    await until('the event to be acked', async () => arrived(s, 'msg_dup') === 1 && (await inbox(s, 'msg_dup')) === 0);
    // The sender retries after the flow is done with it (its answer was lost): still the same event.
    const late = await post(s, body, signed(body, 'msg_dup'));
    assert.deepEqual([late.status, late.body.status], [200, 'duplicate']);
    // A later event reaches the flow after anything the repeat could have queued.
    assert.equal((await post(s, event(10), signed(event(10), 'msg_after'))).status, 202);
    await until('the later event', () => arrived(s, 'msg_after') === 1);
    assert.equal(arrived(s, 'msg_dup'), 1);
  });

  it('takes binary SenML CBOR with basic auth, decoded to records', async () => {
    const s = await start({ url: await freshDatabase(), node: { auth: 'basic', codec: 'senml' }, credentials: { user: 'partner', password: 's3cret' } });
    const records = [{ n: 'pump/temp', u: 'Cel', v: 21.5, t: 1_750_000_000 }];
    const answer = await post(s, Buffer.from(encodeSenmlCbor(records)), {
      authorization: `Basic ${Buffer.from('partner:s3cret').toString('base64')}`,
      'content-type': 'application/senml+cbor',
    });
    assert.equal(answer.status, 202, JSON.stringify(answer.body));
    await until('the records', () => arrived(s, answer.body.id) === 1);
    assert.deepEqual([s.got[0].payload, s.got[0].source.format], [records, 'senml+cbor']);
  });

  it('forgets webhook ids after the de-duplication window: a repeat is then a new event', async () => {
    const s = await start({ url: await freshDatabase() });
    assert.equal((await post(s, event(15), signed(event(15), 'old-id'))).status, 202);
    await until('the event to be acked', async () => arrived(s, 'old-id') === 1 && (await inbox(s, 'old-id')) === 0);
    await s.sql.query("UPDATE webhook_receipts SET received_at = now() - interval '8 days' WHERE message_id = 'old-id'");
    assert.equal(await pruneReceipts(s.sql, `webhook:${PATH}`, 7 * 86_400_000), 1);
    assert.equal(await pruneReceipts(s.sql, `webhook:${PATH}`, 7 * 86_400_000), 0);
    assert.equal((await post(s, event(15), signed(event(15), 'old-id'))).status, 202);
    await until('the event again', () => arrived(s, 'old-id') === 2);
  });

  it('answers 413 for a body over the limit, declared or chunked, and 415 for a type the codec does not take', async () => {
    const s = await start({ url: await freshDatabase(), node: { maxBodyKiB: '1' } });
    const big = JSON.stringify({ x: 'y'.repeat(1100) });
    assertProblem(await post(s, big, signed(big, 'big1')), 413);
    // Chunked: no Content-Length, the limit is found while reading.
    const chunked = await new Promise<Answer>((resolve, reject) => {
      const req = http.request(`${s.origin}${PATH}`, { method: 'POST', headers: { 'content-type': 'application/json', ...signed(big, 'big2') } }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, headers: new Headers(res.headers as Record<string, string>), body: JSON.parse(text) as Msg }));
      });
      req.on('error', reject);
      for (let i = 0; i < big.length; i += 100) req.write(big.slice(i, i + 100));
      req.end();
    });
    assertProblem(chunked, 413);
    assertProblem(await post(s, 'a,b', { ...signed('a,b', 'csv'), 'content-type': 'text/csv' }), 415, /cannot carry json/);
    assertProblem(await post(s, '', {}, 'GET'), 405);
    assert.equal(Number((await s.sql.query<{ n: string }>('SELECT count(*) AS n FROM inbox')).rows[0].n), 0);
  });

  it('refuses a body the codec cannot decode with its reason, stores nothing, and takes the next good one', async () => {
    const s = await start({ url: await freshDatabase(), node: { codec: 'senml' } });
    const bad = '[{"n": "pump/temp", "v": "warm"}]';
    const refused = await post(s, bad, { ...signed(bad, 'bad1'), 'content-type': 'application/senml+json' });
    assertProblem(refused, 400);
    assert.equal(refused.body.format, 'senml');
    assert.match(refused.body.detail, /record 0/);
    assert.equal(await inbox(s, 'bad1'), 0);
    const good = '[{"n": "pump/temp", "u": "Cel", "v": 21.5, "t": 1750000000}]';
    assert.equal((await post(s, good, { ...signed(good, 'good1'), 'content-type': 'application/senml+json' })).status, 202);
    await until('the good one', () => arrived(s, 'good1') === 1);
    assert.deepEqual(s.got[0].payload, [{ n: 'pump/temp', u: 'Cel', v: 21.5, t: 1_750_000_000 }]);
    assert.equal(s.got[0].source.format, 'senml+json');
    // Bad once is not bad forever: the same id, now with a body that decodes, is accepted.
    assert.equal((await post(s, good, { ...signed(good, 'bad1'), 'content-type': 'application/senml+json' })).status, 202);
  });

  it('answers 2xx only once the inbox holds the event, and acks it only when the flow has finished', async () => {
    const s = await start({ url: await freshDatabase(), wires: ['hold'] });
    const body = event(11);
    assert.equal((await post(s, body, signed(body, 'held1'))).status, 202);
    assert.equal(await inbox(s, 'held1'), 1, 'in the inbox when the 202 came');
    await until('the flow to hold the event', () => held.length === 1);
    assert.equal(await inbox(s, 'held1'), 1, 'still in the inbox while the flow holds it');
    held.shift()!();
    await until('the ack after the flow finished', async () => (await inbox(s, 'held1')) === 0);
  });

  it('gives the events in the flow back to the inbox when the node stops, and hands them out again after a redeploy', async () => {
    const url = await freshDatabase();
    const s = await start({ url, wires: ['hold'] });
    assert.equal((await post(s, event(14), signed(event(14), 'redeploy'))).status, 202);
    await until('the flow to hold the event', () => held.length === 1);
    await helper.unload(); // stops the flow while the event is in it
    held.splice(0);
    s.server.closeAllConnections();
    await new Promise((resolve) => s.server.close(resolve));
    site = undefined;
    const check = new Client({ connectionString: url });
    await check.connect();
    try {
      const { rows } = await check.query<{ claimed_by: string | null; attempts: number }>('SELECT claimed_by, attempts FROM inbox WHERE message_id = $1', [
        'redeploy',
      ]);
      assert.deepEqual(rows, [{ claimed_by: null, attempts: 1 }], 'back in the inbox, not leased');
    } finally {
      await check.end();
    }
    const again = await start({ url, wires: ['out'] });
    await until('the event to come again after the redeploy', () => arrived(again, 'redeploy') === 1);
    assert.equal(again.got[0].webhook.attempts, 2);
  });

  it('hands an event a node failed out again, with attempts 2', async () => {
    const s = await start({ url: await freshDatabase(), wires: ['failOnce'] });
    assert.equal((await post(s, event(12), signed(event(12), 'flaky'))).status, 202);
    await until('the second try to pass', () => arrived(s, 'flaky') === 1);
    assert.equal(s.got[0].webhook.attempts, 2);
    await until('the ack', async () => (await inbox(s, 'flaky')) === 0);
  });

  for (const mode of ['signature', 'api-key'] as const) {
    it(`answers 503 while the database is down, acknowledging nothing, and accepts again once it is back (${mode})`, async () => {
      const url = await freshDatabase();
      const s = await start({ url, node: { auth: mode } });
      const auth = (body: string, id: string) => (mode === 'signature' ? signed(body, id) : { 'x-api-key': s.keys.webhooks, 'webhook-id': id });
      const name = new URL(url).pathname.slice(1);
      const admin = new Client({ connectionString: url.replace(`/${name}`, '/postgres') });
      await admin.connect();
      try {
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
        const body = event(13);
        const down = await post(s, body, auth(body, 'during-outage'));
        assertProblem(down, 503, mode === 'signature' ? /send it again later/ : /database is unavailable/);
        assert.equal(down.headers.get('retry-after'), '5');
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
        assert.equal(arrived(s, 'during-outage'), 0);
        const back = await post(s, body, auth(body, 'during-outage'));
        assert.deepEqual([back.status, back.body.status], [202, 'stored'], 'the refused event was not half-kept');
        await until('the event after the outage', () => arrived(s, 'during-outage') === 1);
      } finally {
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`).catch(() => undefined);
        await admin.end();
      }
    });
  }

  it('fuzz: any request is answered 2xx, or 4xx as problem+json, never 5xx; the endpoint then still works', async () => {
    const s = await start({ url: await freshDatabase(), node: { auth: 'basic', maxBodyKiB: '2' }, credentials: { user: 'partner', password: 's3cret' } });
    const good = `Basic ${Buffer.from('partner:s3cret').toString('base64')}`;
    const request = fc.record({
      method: fc.oneof({ arbitrary: fc.constant('POST'), weight: 8 }, fc.constantFrom('PUT', 'GET', 'DELETE')),
      auth: fc.oneof(
        { arbitrary: fc.constant(good), weight: 6 },
        fc.constant(undefined),
        fc.string({ maxLength: 40 }).map((x) => `Basic ${x}`),
        fc.string({ maxLength: 40 }),
      ),
      type: fc.oneof(
        { arbitrary: fc.constant('application/json'), weight: 6 },
        fc.constantFrom('application/cloudevents+json', 'text/plain', 'application/json; charset=latin1', ''),
        fc.string({ maxLength: 30 }),
      ),
      id: fc.option(fc.string({ maxLength: 300 }), { nil: undefined }),
      encoding: fc.option(fc.constantFrom('gzip', 'identity', 'br'), { nil: undefined, freq: 8 }),
      body: fc.oneof(
        { arbitrary: fc.json({ maxDepth: 4 }), weight: 4 },
        fc.string({ maxLength: 3000 }),
        fc.uint8Array({ maxLength: 3000 }).map((b) => new Uint8Array(b)),
      ),
    });
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = {};
        const printable = (v: string) => /^[\x20-\x7e]*$/.test(v);
        if (r.auth !== undefined && printable(r.auth)) headers.authorization = r.auth;
        if (printable(r.type)) headers['content-type'] = r.type;
        if (r.id !== undefined && printable(r.id)) headers['webhook-id'] = r.id;
        if (r.encoding) headers['content-encoding'] = r.encoding;
        const hasBody = r.method !== 'GET';
        const res = await fetch(`${s.origin}${PATH}`, { method: r.method, headers, body: hasBody ? r.body : undefined });
        const text = await res.text();
        if (res.status < 300) {
          assert.ok(res.status === 202 || res.status === 200, `status ${res.status}`);
          accepted++;
          return;
        }
        assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}: ${text}`);
        assert.equal(res.headers.get('content-type'), 'application/problem+json');
        assert.equal((JSON.parse(text) as Msg).status, res.status);
      }),
      { numRuns: 200 },
    );
    const after = await post(s, '{"after": "fuzz"}', { authorization: good, 'webhook-id': 'after-fuzz' });
    assert.equal(after.status, 202);
    await until('the event after the fuzz', () => arrived(s, 'after-fuzz') === 1);
    console.log(`      fuzz: 200 requests, ${accepted} accepted, the rest refused as problem+json`);
  });
});
