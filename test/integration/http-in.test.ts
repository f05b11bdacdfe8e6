/**
 * conflux-http-in as an integrator wires it: a gateway over the embedded database (and over the
 * real PostgreSQL), the node's routes on Node-RED's HTTP server, devices posting with the
 * reference client (tools/device-client/http.ts) and raw sockets on 127.0.0.1.
 *
 * node-red-node-test-helper gives nodes a fresh, unserved express app as RED.httpNode (and
 * helper.request() reaches only the admin app), so the test captures RED.httpNode when the node
 * module registers and serves it on its own HTTP server at 127.0.0.1, port 0.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { encodeSenmlXml } from '../../nodes/core/codecs/senml-xml';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import type { GatewayConfigNode } from '../../nodes/shared/config-nodes';
import { postReadings, requestUdpTokens, type HttpResult } from '../../tools/device-client/http';
import { catchNode, helper } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import { elapse, until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import gatewayNode = require('../../nodes/devices/gateway');
import httpInNode = require('../../nodes/devices/http-in');

type Msg = Record<string, any>;
const KEY = 'sensor-7 key';
const T = 1_750_000_000;

/** RED.httpNode of the last load, captured as the node module registers. */
let httpApp: http.RequestListener | undefined;
function httpIn(RED: NodeAPI): void {
  httpApp = RED.httpNode as unknown as http.RequestListener;
  httpInNode(RED);
}

/** Done callbacks of messages a `test-hold` node received and has not completed. */
const held: Array<(err?: Error) => void> = [];
function holdNode(RED: NodeAPI): void {
  RED.nodes.registerType('test-hold', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (_msg, _send, done) => {
      held.push(done);
    });
  });
}

const NODES = [postgresNode, gatewayNode, httpIn, holdNode, catchNode];

interface Setup {
  name: string;
  url(): Promise<string>;
}
const SETUPS: Setup[] = [
  { name: 'the embedded database', url: async () => '' },
  { name: 'PostgreSQL', url: () => freshDatabase() },
];

interface Site {
  /** http://127.0.0.1:<port> */
  origin: string;
  port: number;
  server: http.Server;
  apiKey: string;
  otherTenantKey: string;
}

let site: Site | undefined;

/** Loads the flow, serves RED.httpNode on 127.0.0.1:0, creates tenants, devices and keys. */
async function start(options: { url?: string; gateway?: Msg; node?: Msg; wires?: string[] } = {}): Promise<Site> {
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url: options.url ?? '' },
    { id: 'gw', type: 'conflux-gateway', database: 'db', maxFrameBytes: '2048', ...options.gateway },
    {
      id: 'listener',
      type: 'conflux-http-in',
      z: 'tab',
      gateway: 'gw',
      basePath: '/devices',
      maxInFlight: '1000',
      wires: [options.wires ?? ['out']],
      ...options.node,
    },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'hold', type: 'test-hold', z: 'tab' },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
  await helper.load(NODES, flow as never);
  const db = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
  await createTenant(db, { id: 'acme', name: 'Acme' });
  await createTenant(db, { id: 'globex', name: 'Globex' });
  const store = createBusinessStore(db);
  const dev = await store.create('acme', 'devices', { serial: 'sensor-7' });
  await store.create('acme', 'device_keys', { device_id: dev.id, key: KEY });
  await store.create('globex', 'devices', { serial: 'gx-1' });
  const apiKey = (await store.create('acme', 'api_keys', { name: 'gateway' })).key as string;
  const otherTenantKey = (await store.create('globex', 'api_keys', { name: 'gateway' })).key as string;
  const server = http.createServer(httpApp!);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  site = { origin: `http://127.0.0.1:${port}`, port, server, apiKey, otherTenantKey };
  return site;
}

const base = (s: Site) => `${s.origin}/devices`;

function nextMessage(id: string): Promise<Msg> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}

/** Posts as sensor-7 with its key and resolves with the answer and the message it produced. */
async function post(
  s: Site,
  format: Parameters<typeof postReadings>[0]['format'],
  body: Parameters<typeof postReadings>[0]['body'],
): Promise<{ result: HttpResult; msg: Msg }> {
  const arrived = nextMessage('out');
  const result = await postReadings({ base: base(s), serial: 'sensor-7', key: KEY, format, body });
  assert.equal(result.status, 202, JSON.stringify(result.problem));
  return { result, msg: await arrived };
}

async function raw(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: Msg }> {
  const res = await fetch(url, { method: 'POST', ...init });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text.startsWith('{') ? JSON.parse(text) : { text } };
}

/** Sends `head` and `body` on a raw socket, never ending the body; resolves with what came back when the server closes. */
function rawSocket(port: number, head: string, body: Buffer[]): Promise<{ response: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let response = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ response, closed: false });
    }, 5_000);
    socket.on('data', (d) => (response += d.toString('latin1')));
    socket.on('error', (err) => (response ? undefined : reject(err)));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ response, closed: true });
    });
    socket.write(head);
    for (const b of body) socket.write(b);
  });
}

describe('conflux-http-in', function () {
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

  for (const setup of SETUPS) {
    describe(`on ${setup.name}`, () => {
      it('accepts SenML JSON, CBOR, XML, UltraLight and JSON as canonical records of the authenticated device', async () => {
        const s = await start({ url: await setup.url() });
        const records = [{ n: 'temp', u: 'Cel', v: 21.5, t: T }];
        const cases: Array<[Parameters<typeof postReadings>[0]['format'], Parameters<typeof postReadings>[0]['body'], string, string]> = [
          // A body naming another device stays under the sender's names: the device is the credentials'.
          ['senml+json', [{ bn: 'gx-1/', n: 'temp', u: 'Cel', v: 21.5, t: T }], 'senml+json', 'sensor-7/gx-1/temp'],
          ['senml+cbor', encodeSenmlCbor(records), 'senml+cbor', 'sensor-7/temp'],
          ['senml+xml', encodeSenmlXml(records), 'senml+xml', 'sensor-7/temp'],
          ['ultralight', 'temp|21.5', 'ultralight', 'sensor-7/temp'],
          ['json', records, 'senml+json', 'sensor-7/temp'],
          ['json', { temp: 21.5 }, 'attributes+json', 'sensor-7/temp'],
        ];
        for (const [format, body, wire, name] of cases) {
          const { result, msg } = await post(s, format, body);
          assert.equal(msg._msgid, result.id, 'the 202 id is msg._msgid');
          assert.deepEqual(msg.device, { tenant: 'acme', id: 'sensor-7' });
          assert.equal(msg.source.transport, 'http');
          assert.equal(msg.source.format, wire);
          assert.equal(typeof msg.source.receivedAt, 'number');
          assert.deepEqual(
            msg.payload.map((r: Msg) => [r.n, r.v]),
            [[name, 21.5]],
            `${format}: ${JSON.stringify(msg.payload)}`,
          );
        }
        // With a tenant's API key, with Basic, and on FIWARE's UltraLight route.
        let arrived = nextMessage('out');
        assert.equal((await postReadings({ base: base(s), serial: 'sensor-7', apiKey: s.apiKey, format: 'ultralight', body: 'h|40' })).status, 202);
        assert.deepEqual((await arrived).device, { tenant: 'acme', id: 'sensor-7' });
        arrived = nextMessage('out');
        assert.equal((await postReadings({ base: base(s), serial: 'sensor-7', key: KEY, scheme: 'basic', format: 'ultralight', body: 'h|41' })).status, 202);
        assert.equal((await arrived).payload[0].v, 41);
        arrived = nextMessage('out');
        const fiware = await raw(`${s.origin}/iot/d?k=${encodeURIComponent(s.apiKey)}&i=sensor-7`, {
          headers: { 'content-type': 'text/plain' },
          body: 't|20#h|42',
        });
        assert.equal(fiware.status, 202);
        assert.deepEqual(
          (await arrived).payload.map((r: Msg) => [r.n, r.v]),
          [
            ['sensor-7/t', 20],
            ['sensor-7/h', 42],
          ],
        );
      });

      it('refuses wrong credentials, foreign and unknown devices, bad bodies and media types with problem documents', async () => {
        const s = await start({ url: await setup.url() });
        const wrong = await postReadings({ base: base(s), serial: 'sensor-7', key: 'wrong', format: 'ultralight', body: 't|1' });
        assert.equal(wrong.status, 401);
        assert.equal(wrong.problem?.type, 'https://conflux.dev/problems/unauthorized');
        const res401 = await raw(`${base(s)}/sensor-7/telemetry`, { headers: { 'content-type': 'text/plain' }, body: 't|1' });
        assert.equal(res401.status, 401);
        assert.equal(res401.headers.get('content-type'), 'application/problem+json');
        assert.match(res401.headers.get('www-authenticate') ?? '', /^Bearer realm="conflux-devices".*Basic realm="conflux-devices"/);

        const foreign = await postReadings({ base: base(s), serial: 'sensor-7', apiKey: s.otherTenantKey, format: 'ultralight', body: 't|1' });
        assert.equal(foreign.status, 404, "another tenant's key does not see the device");
        assert.equal(foreign.problem?.type, 'https://conflux.dev/problems/unknown-device');
        const unknown = await postReadings({ base: base(s), serial: 'nobody', apiKey: s.apiKey, format: 'ultralight', body: 't|1' });
        assert.equal(unknown.status, 404);

        const media = await raw(`${base(s)}/sensor-7/telemetry`, {
          headers: { 'content-type': 'application/xml', authorization: `Bearer sensor-7:${KEY}` },
          body: '<a/>',
        });
        assert.equal(media.status, 415);
        assert.ok(media.body.accept.includes('application/senml+cbor'));
        const get = await fetch(`${base(s)}/sensor-7/telemetry`);
        assert.equal(get.status, 405);
        assert.equal(get.headers.get('allow'), 'POST');

        for (const [format, body, reason] of [
          ['json', '{"temp": 21.5', /not JSON/],
          ['ultralight', 'temp|', /ultralight/],
          ['senml+json', '[{"n": "temp", "v": "warm"}]', /senml/],
        ] as const) {
          const caught = nextMessage('caught');
          const bad = await postReadings({ base: base(s), serial: 'sensor-7', key: KEY, format, body });
          assert.equal(bad.status, 400);
          assert.equal(bad.problem?.type, 'https://conflux.dev/problems/invalid-body');
          assert.match(bad.problem?.detail ?? '', reason);
          const err = await caught;
          assert.match(err.error.message, reason, 'a Catch node sees the reason');
          assert.deepEqual(err.device, { tenant: 'acme', id: 'sensor-7' });
          // The next request from the same device goes through.
          await post(s, 'ultralight', 'temp|22');
        }
      });
    });
  }

  it('refuses an oversized body with 413 without reading it: declared, and chunked', async () => {
    const s = await start();
    const auth = `Authorization: Bearer sensor-7:${KEY}\r\n`;
    const t0 = Date.now();
    const declared = await rawSocket(
      s.port,
      `POST /devices/sensor-7/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n${auth}Content-Length: 50000000\r\n\r\n`,
      [Buffer.from('t|1|')],
    );
    assert.match(declared.response, /^HTTP\/1\.1 413 /);
    assert.match(declared.response, /content-type: application\/problem\+json/i);
    assert.match(declared.response, /"limit":2048/);
    assert.ok(declared.closed, 'the connection is closed: the rest of the body is never read');
    assert.ok(Date.now() - t0 < 4_000);

    const chunk = (b: Buffer) => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
    const chunked = await rawSocket(
      s.port,
      `POST /devices/sensor-7/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n${auth}Transfer-Encoding: chunked\r\n\r\n`,
      [chunk(Buffer.alloc(1500, 0x61)), chunk(Buffer.alloc(1500, 0x61))], // no last chunk: the body never ends
    );
    assert.match(chunked.response, /^HTTP\/1\.1 413 /);
    assert.ok(chunked.closed);
    // Refused before its body is read (415 here): the connection closes rather than drain the body.
    const refused = await rawSocket(
      s.port,
      `POST /devices/sensor-7/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n${auth}Content-Length: 1000\r\n\r\n`,
      [Buffer.alloc(10)],
    );
    assert.match(refused.response, /^HTTP\/1\.1 415 /);
    assert.ok(refused.closed);
    // The listener goes on.
    await post(s, 'ultralight', 't|1');
  });

  it('answers 429 with Retry-After past the tenant rate', async () => {
    const s = await start({ gateway: { ratePerTenant: '1' } });
    assert.equal((await postReadings({ base: base(s), serial: 'sensor-7', key: KEY, format: 'ultralight', body: 't|1' })).status, 202);
    const limited = await postReadings({ base: base(s), serial: 'sensor-7', key: KEY, format: 'ultralight', body: 't|2' });
    assert.equal(limited.status, 429);
    assert.equal(limited.retryAfter, 1);
    assert.equal(limited.problem?.type, 'https://conflux.dev/problems/rate-limited');
    await elapse(1_100); // the tenant's rate refills with time
    assert.equal((await postReadings({ base: base(s), serial: 'sensor-7', key: KEY, format: 'ultralight', body: 't|3' })).status, 202);
  });

  it('answers 202 only once the flow has finished with the reading, 503 not-stored with the reason when a node failed it', async () => {
    const s = await start({ wires: ['hold'] });
    const send = (v: number) => postReadings({ base: base(s), serial: 'sensor-7', key: KEY, format: 'ultralight', body: `t|${v}` });
    let answered = false;
    const first = send(1).then((r) => ((answered = true), r));
    await until('held', async () => held.length === 1);
    const second = send(2);
    await until('both held', async () => held.length === 2);
    await elapse(50); // a negative check: no answer in this window
    assert.equal(answered, false, 'no answer while the flow holds the reading');
    held.shift()!();
    assert.equal((await first).status, 202);
    held.shift()!(new Error('the time series is unreachable'));
    const refused = await second;
    assert.equal(refused.status, 503);
    assert.equal(refused.problem?.type, 'https://conflux.dev/problems/not-stored');
    assert.match(String(refused.problem?.detail), /the time series is unreachable/);
  });

  it('acknowledging on receipt answers 202 as soon as the reading is handed on', async () => {
    const s = await start({ node: { ack: 'receipt' }, wires: ['hold'] });
    const r = await postReadings({ base: base(s), serial: 'sensor-7', key: KEY, format: 'ultralight', body: 't|1' });
    assert.equal(r.status, 202);
    assert.equal(held.length, 1, 'the flow still holds it');
  });

  it('answers 503 with Retry-After while the flow holds Max in flight, and accepts again once it finishes one', async () => {
    const s = await start({ node: { maxInFlight: '2' }, wires: ['hold'] });
    const send = (v: number) => postReadings({ base: base(s), serial: 'sensor-7', key: KEY, format: 'ultralight', body: `t|${v}` });
    const first = send(1);
    const second = send(2);
    await until('both held', async () => held.length === 2);
    const busy = await send(3);
    assert.equal(busy.status, 503);
    assert.equal(busy.retryAfter, 1);
    assert.equal(busy.problem?.type, 'https://conflux.dev/problems/overloaded');
    assert.equal((await send(4)).status, 503, 'still busy: nothing finished');
    assert.equal(held.length, 2, 'nothing queued behind the flow');
    // The flow finishes one message: whichever reached it first (the two keys are checked in
    // parallel, off the event loop, so either may have).
    held.shift()!();
    assert.equal((await Promise.race([first, second])).status, 202);
    const fifth = send(5);
    await until('held again', async () => held.length === 2);
    assert.equal((await send(6)).status, 503, 'the bound holds again');
    for (const done of held.splice(0)) done();
    assert.deepEqual(
      (await Promise.all([first, second, fifth])).map((r) => r.status),
      [202, 202, 202],
    );
  });

  it('issues single-use UDP tokens to an authenticated device', async () => {
    const s = await start();
    const grant = await requestUdpTokens({ base: base(s), serial: 'sensor-7', key: KEY, count: 3 });
    assert.equal(grant.tokens.length, 3);
    assert.ok(grant.tokens.every((t) => t.length === 16));
    assert.ok(grant.expiresAt > Date.now());
    const gateway = helper.getNode('gw') as unknown as GatewayConfigNode;
    assert.equal((await gateway.tokens.spend('sensor-7', grant.tokens[0])).ok, true);
    assert.deepEqual(await gateway.tokens.spend('sensor-7', grant.tokens[0]), { ok: false, reason: 'replayed' }, 'single use');
    await assert.rejects(requestUdpTokens({ base: base(s), serial: 'sensor-7', key: 'wrong' }), /401/);
    await assert.rejects(requestUdpTokens({ base: base(s), serial: 'sensor-7', key: KEY, count: 101 }), /400/);
  });

  it('removes its routes when the flow stops: a request after unload is a 404', async () => {
    const s = await start();
    await post(s, 'ultralight', 't|1');
    await helper.unload();
    const after = await fetch(`${base(s)}/sensor-7/telemetry`, {
      method: 'POST',
      headers: { authorization: `Bearer sensor-7:${KEY}`, 'content-type': 'text/plain' },
      body: 't|2',
    });
    assert.equal(after.status, 404);
    assert.notEqual(after.headers.get('content-type'), 'application/problem+json', 'no conflux route answered');
    const fiware = await fetch(`${s.origin}/iot/d?i=sensor-7`, { method: 'POST', body: 't|2' });
    assert.equal(fiware.status, 404);
  });
});
