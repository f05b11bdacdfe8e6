/**
 * Requests, device → central system (issue 4, item 7), in Node-RED with real sockets on
 * loopback: a TCP device's REQUEST is forwarded to a test HTTP server playing the central system
 * (webhook POST with the API key) and its reply comes back as the RESPONSE with the same id;
 * the central system down, slow or failing, a private address refused, no central system.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import * as net from 'node:net';
import type { SqlClient } from '../../nodes/core/db/sql';
import { isPrivateAddress } from '../../nodes/core/devices/requests';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { connect, DeviceRefusedError, type TcpDeviceClient } from '../../tools/device-client/tcp';
import { helper } from '../support/node-red';
import { freePort } from '../support/ports';
import { retry } from '../support/wait';
import gatewayNode = require('../../nodes/devices/gateway');
import tcpInNode = require('../../nodes/devices/tcp-in');
import postgresNode = require('../../nodes/storage/postgres');

type Msg = Record<string, any>;
interface Central {
  url: string;
  calls: Array<{ headers: http.IncomingHttpHeaders; body: Msg; path: string }>;
  close(): Promise<void>;
}

/** The central system: answers each webhook with `respond`. */
async function central(respond: (body: Msg, res: http.ServerResponse) => void): Promise<Central> {
  const calls: Central['calls'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Msg;
      calls.push({ headers: req.headers, body, path: req.url ?? '' });
      respond(body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hooks/device-requests`,
    calls,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

async function start(gateway: Msg, apiKey = 'central-secret'): Promise<TcpDeviceClient> {
  const port = await freePort();
  await helper.load(
    [postgresNode, gatewayNode, tcpInNode],
    [
      { id: 'tab', type: 'tab' },
      { id: 'db', type: 'conflux-postgres', url: '' },
      { id: 'gw', type: 'conflux-gateway', database: 'db', idleTimeout: '60', ...gateway },
      { id: 'tcp', type: 'conflux-tcp-in', z: 'tab', gateway: 'gw', host: '127.0.0.1', port: String(port), wires: [[]] },
    ] as helper.TestFlows,
    { gw: { centralApiKey: apiKey } } as never,
  );
  const sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
  const store = createBusinessStore(sql);
  const d = await store.create('default', 'devices', { serial: 'SN-R' });
  await store.create('default', 'device_keys', { device_id: d.id, key: 'key-r', iterations: 4096 });
  // the listener opens its port once the flow has started
  return retry('the device to log in', () => connect({ port, serial: 'SN-R', key: 'key-r' }));
}

describe('device requests forwarded to the central system', function () {
  this.timeout(30_000);
  const closers: Array<() => unknown> = [];

  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(async () => {
    for (const c of closers.splice(0)) await Promise.resolve(c()).catch(() => undefined);
    await helper.unload();
  });

  it("forwards a REQUEST as a webhook with the API key; the central system's reply comes back with the same id", async () => {
    const c = await central((body, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ rate: 5, for: body.device.id }));
    });
    closers.push(() => c.close());
    const device = await start({ centralUrl: c.url, allowPrivateCentral: true });
    closers.push(() => device.close());
    const answer = await device.request({ id: 'r-1', want: 'config' });
    assert.deepEqual(answer, { id: 'r-1', result: { rate: 5, for: 'SN-R' } });
    assert.equal(c.calls.length, 1);
    assert.equal(c.calls[0].path, '/hooks/device-requests');
    assert.equal(c.calls[0].headers['x-api-key'], 'central-secret');
    assert.match(String(c.calls[0].headers['content-type']), /application\/json/);
    assert.deepEqual(c.calls[0].body, { id: 'r-1', device: { tenant: 'default', id: 'SN-R' }, body: { want: 'config' } });

    // Several at once, each answered under its own id.
    const many = await Promise.all([1, 2, 3].map((n) => device.request({ id: `m-${n}`, n })));
    assert.deepEqual(
      many.map((a) => a.id),
      ['m-1', 'm-2', 'm-3'],
    );
  });

  it('the central system down, slow or failing: the device gets an error with the reason', async () => {
    const c = await central((body, res) => {
      if (body.body.kind === 'slow') return; // never answers
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('database on fire');
    });
    closers.push(() => c.close());
    const device = await start({ centralUrl: c.url, allowPrivateCentral: true, centralTimeout: '1' });
    closers.push(() => device.close());

    const failed = await device.request({ id: 'f-1', kind: 'boom' });
    assert.deepEqual(failed, { id: 'f-1', error: 'the central system answered HTTP 500: database on fire' });

    const started = Date.now();
    const slow = await device.request({ id: 's-1', kind: 'slow' }, 5_000);
    assert.equal(slow.id, 's-1');
    assert.equal(slow.error, 'the central system did not answer within 1000 ms');
    assert.ok(Date.now() - started >= 950);

    await c.close();
    const down = await device.request({ id: 'd-1', kind: 'any' });
    assert.equal(down.id, 'd-1');
    assert.match(String(down.error), /^the central system is unreachable \(ECONNREFUSED\)/);
    // The session goes on.
    assert.equal(await device.sendReadings('ascii', 't|1'), 4);
  });

  it('refuses a loopback central system unless allowed, and a request with no central system configured', async () => {
    const c = await central((_body, res) => res.end('{}'));
    closers.push(() => c.close());
    const device = await start({ centralUrl: c.url });
    closers.push(() => device.close());
    const refused = await device.request({ id: 'p-1' });
    assert.match(String(refused.error), /127\.0\.0\.1 is a private or loopback address/);
    assert.equal(c.calls.length, 0, 'nothing was sent');
    await device.close();
    await helper.unload();

    const bare = await start({});
    closers.push(() => bare.close());
    await assert.rejects(bare.request({ id: 'n-1' }), (err: Error) => err instanceof DeviceRefusedError && /no central system is configured/.test(err.message));
  });

  it('knows private addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '0.0.0.0']) {
      assert.equal(isPrivateAddress(a), true, a);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) assert.equal(isPrivateAddress(a), false, a);
  });
});
