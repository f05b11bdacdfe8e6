/**
 * Commands, central system → device (issue 4, item 6), in Node-RED with real sockets on
 * loopback: conflux-command over a TCP device (the reference client) and an MQTT device on the
 * embedded broker; answered, timed out (to Catch), queued while offline then delivered, the
 * queue bound and expiry; and the HTTP endpoint (200, 504, 202, 404, 401, 400).
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import * as net from 'node:net';
import type { NodeAPI } from 'node-red';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { MqttDevice } from '../../tools/device-client/mqtt';
import { connect, type CommandHandler, type TcpDeviceClient } from '../../tools/device-client/tcp';
import { catchNode, helper } from '../support/node-red';
import { elapse, retry, until } from '../support/wait';
import commandNode = require('../../nodes/devices/command');
import gatewayNode = require('../../nodes/devices/gateway');
import mqttInNode = require('../../nodes/devices/mqtt-in');
import tcpInNode = require('../../nodes/devices/tcp-in');
import postgresNode = require('../../nodes/storage/postgres');

type Msg = Record<string, any>;

/** RED.httpNode of the last load, captured as the node module registers. */
let httpApp: http.RequestListener | undefined;
function command(RED: NodeAPI): void {
  httpApp = RED.httpNode as unknown as http.RequestListener;
  commandNode(RED);
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

function next(id: string): Promise<Msg> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}

interface Site {
  tcpPort: number;
  mqttPort: number;
  origin: string;
  server: http.Server;
  sql: SqlClient;
  apiKey: string;
  otherKey: string;
}

async function start(options: { command?: Msg; gateway?: Msg } = {}): Promise<Site> {
  const tcpPort = await freePort();
  const mqttPort = await freePort();
  await helper.load([postgresNode, gatewayNode, tcpInNode, mqttInNode, command, catchNode], [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url: '' },
    { id: 'gw', type: 'conflux-gateway', database: 'db', idleTimeout: '60', ...options.gateway },
    { id: 'tcp', type: 'conflux-tcp-in', z: 'tab', gateway: 'gw', host: '127.0.0.1', port: String(tcpPort), wires: [[]] },
    { id: 'mq', type: 'conflux-mqtt-in', z: 'tab', gateway: 'gw', mode: 'broker', host: '127.0.0.1', port: String(mqttPort), wires: [[]] },
    {
      id: 'cmd',
      type: 'conflux-command',
      z: 'tab',
      gateway: 'gw',
      timeout: '2',
      queue: true,
      expiry: '3600',
      path: '/central/devices',
      wires: [['out']],
      ...options.command,
    },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'caught', type: 'helper', z: 'tab' },
  ] as helper.TestFlows);
  const sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
  const store = createBusinessStore(sql);
  for (const serial of ['SN-T', 'SN-M']) {
    const d = await store.create('default', 'devices', { serial });
    await store.create('default', 'device_keys', { device_id: d.id, key: `key-${serial}`, iterations: 4096 });
  }
  await sql.query(`INSERT INTO tenants (id, name) VALUES ('other', 'Other') ON CONFLICT DO NOTHING`);
  await store.create('other', 'devices', { serial: 'SN-OTHER' });
  const apiKey = (await store.create('default', 'api_keys', { name: 'central' })).key as string;
  const otherKey = (await store.create('other', 'api_keys', { name: 'central' })).key as string;
  const server = http.createServer(httpApp!);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return { tcpPort, mqttPort, origin, server, sql, apiKey, otherKey };
}

async function tcpDevice(site: Site, serial = 'SN-T', onCommand?: CommandHandler): Promise<TcpDeviceClient> {
  return retry(`${serial} to log in`, () => connect({ port: site.tcpPort, serial, key: `key-${serial}`, onCommand }));
}

async function mqttDevice(site: Site): Promise<MqttDevice> {
  return retry('SN-M to connect', () => MqttDevice.connect({ url: `mqtt://127.0.0.1:${site.mqttPort}`, serial: 'SN-M', key: 'key-SN-M', reconnectPeriod: 0 }));
}

async function post(site: Site, serial: string, body: unknown, key: string | undefined = site.apiKey): Promise<{ status: number; type: string; body: Msg }> {
  const res = await fetch(`${site.origin}/central/devices/${serial}/commands`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { 'x-api-key': key } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as Msg };
}

async function rows(sql: SqlClient): Promise<Array<{ name: string; status: string; result: unknown; attempts: number }>> {
  return (
    await sql.query<{ name: string; status: string; result: unknown; attempts: number }>(
      'SELECT name, status, result, attempts FROM device_commands ORDER BY id',
    )
  ).rows;
}

describe('conflux-command: commands from the central system to devices', function () {
  this.timeout(30_000);
  let site: Site | undefined;
  const closers: Array<() => unknown> = [];

  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(async () => {
    for (const c of closers.splice(0)) await Promise.resolve(c()).catch(() => undefined);
    await helper.unload();
    if (site) await new Promise((resolve) => site!.server.close(resolve));
    site = undefined;
  });

  it('a TCP device answers a command: the result leaves on the output with the command id', async () => {
    site = await start();
    const device = await tcpDevice(site);
    closers.push(() => device.close());
    const seen: Msg[] = [];
    device.onCommand((c) => {
      seen.push(c);
      return { rebooted: true, delay: (c.params as Msg).delay };
    });
    const out = next('out');
    helper.getNode('cmd').receive({ device: { tenant: 'default', id: 'SN-T' }, command: { name: 'reboot', params: { delay: 5 } } } as never);
    const msg = await out;
    assert.deepEqual(msg.payload, { rebooted: true, delay: 5 });
    assert.equal(seen.length, 1);
    assert.equal(seen[0].name, 'reboot');
    assert.equal(msg.command.id, seen[0].id, 'the answer carries the correlation id the device got');
    assert.deepEqual(msg.device, { tenant: 'default', id: 'SN-T' });

    // The name-and-payload form, and a device refusing: to Catch with the device's reason.
    device.onCommand(() => {
      throw new Error('busy updating');
    });
    const caught = next('caught');
    helper.getNode('cmd').receive({ serial: 'SN-T', command: 'dim', payload: 40 } as never);
    const report = await caught;
    assert.match(report.error.message, /refused the command "dim": busy updating/);
    assert.equal(report.reason, 'refused');
  });

  it('a TCP device that does not answer: the command times out to Catch, and a late answer is refused', async () => {
    site = await start();
    const device = await tcpDevice(site);
    closers.push(() => device.close());
    let got: Msg | undefined;
    device.onCommand((c) => {
      got = c;
      return new Promise(() => undefined); // never answers
    });
    const caught = next('caught');
    const started = Date.now();
    helper.getNode('cmd').receive({ device: { tenant: 'default', id: 'SN-T' }, command: 'slow', timeout: 300 } as never);
    const report = await caught;
    assert.match(report.error.message, /did not answer the command "slow" within 300 ms/);
    assert.equal(report.reason, 'timeout');
    assert.ok(Date.now() - started >= 290);
    assert.ok(got);
    // Answering now: nothing waits for that id, the device is told so.
    const refused = new Promise<string>((resolve) => device.once('frame', (f: { type: number; payload: Buffer }) => resolve(f.payload.subarray(4).toString())));
    device.sendFrame(0x12, JSON.stringify({ id: got.id, result: 'late' }));
    assert.match(await refused, /no command with id .* waits/);
  });

  it('an MQTT device answers a command on cmdexe: the result leaves on the output', async () => {
    site = await start();
    const device = await mqttDevice(site);
    closers.push(() => device.client.end(true));
    await device.onCommand((c) => `ok ${c.value}`);
    const out = next('out');
    helper.getNode('cmd').receive({ device: { tenant: 'default', id: 'SN-M' }, command: 'ping', payload: 'now' } as never);
    const msg = await out;
    assert.equal(msg.payload, 'ok now');
    assert.equal(msg.command.name, 'ping');
  });

  it('a command for an offline TCP device is queued, then delivered and answered when it connects', async () => {
    site = await start();
    const out = next('out');
    helper.getNode('cmd').receive({ device: { tenant: 'default', id: 'SN-T' }, command: { name: 'config', params: { rate: 10 } } } as never);
    await until('the command is stored', async () => (await rows(site!.sql)).length > 0);
    assert.deepEqual(
      (await rows(site.sql)).map((r) => [r.name, r.status]),
      [['config', 'queued']],
    );
    const device = await tcpDevice(site, 'SN-T', (c) => ({ applied: (c.params as Msg).rate }));
    closers.push(() => device.close());
    const msg = await out;
    assert.deepEqual(msg.payload, { applied: 10 });
    await until('the answer recorded', async () => (await rows(site!.sql))[0].status === 'answered');
    const [row] = await rows(site.sql);
    assert.equal(row.status, 'answered');
    assert.deepEqual(row.result, { applied: 10 });
    assert.equal(row.attempts, 1);
  });

  it('a command for an offline MQTT device goes out when the device subscribes to its cmd topic', async () => {
    site = await start();
    const out = next('out');
    helper.getNode('cmd').receive({ device: { tenant: 'default', id: 'SN-M' }, command: 'led', payload: 'on' } as never);
    await until('the command is stored', async () => (await rows(site!.sql)).length > 0);
    const device = await mqttDevice(site);
    closers.push(() => device.client.end(true));
    await device.onCommand((c) => `led ${c.value}`);
    const msg = await out;
    assert.equal(msg.payload, 'led on');
  });

  it('bounds the queue per device and never delivers an expired command', async () => {
    site = await start({ gateway: { maxQueuedCommands: '2' }, command: { expiry: '1' } });
    const cmd = helper.getNode('cmd');
    const caught: Msg[] = [];
    helper.getNode('caught').on('input', (m: Msg) => caught.push(m));
    cmd.receive({ serial: 'SN-T', command: 'a' } as never);
    await until('a queued', async () => (await rows(site!.sql)).length === 1);
    cmd.receive({ serial: 'SN-T', command: 'b' } as never);
    await until('b queued', async () => (await rows(site!.sql)).length === 2);
    cmd.receive({ serial: 'SN-T', command: 'c' } as never);
    await until('the third command is refused', () => caught.length >= 1);
    assert.equal(caught[0].reason, 'queue-full');
    assert.match(caught[0].error.message, /queue of device "SN-T" is full \(2 waiting\)/);
    // After the expiry (1 s), both queued commands fail as expired and are never sent.
    await until('the queued commands expire', () => caught.length >= 3);
    assert.deepEqual(
      caught.slice(1).map((m) => m.reason),
      ['expired', 'expired'],
    );
    const commands: Msg[] = [];
    const device = await tcpDevice(site, 'SN-T', (c) => commands.push(c));
    closers.push(() => device.close());
    await elapse(300); // a negative check: an expired command would have arrived by now
    assert.deepEqual(commands, [], 'an expired command is not delivered');
    assert.deepEqual(
      (await rows(site.sql)).map((r) => r.status),
      ['expired', 'expired'],
    );
  });

  it('an expired command still in the store (a restart) is marked expired at reconnection, not sent', async () => {
    site = await start();
    const {
      rows: [dev],
    } = await site.sql.query<{ id: string }>(`SELECT id FROM devices WHERE serial = 'SN-T'`);
    await site.sql.query(
      `INSERT INTO device_commands (tenant_id, device_id, correlation_id, name, expires_at) VALUES
       ('default', $1, 'old-1', 'stale', now() - interval '1 minute'), ('default', $1, 'new-1', 'fresh', now() + interval '1 hour')`,
      [dev.id],
    );
    const commands: Msg[] = [];
    const device = await tcpDevice(site, 'SN-T', (c) => (commands.push(c), 'done'));
    closers.push(() => device.close());
    await until('the fresh command is delivered', () => commands.length >= 1);
    await elapse(100); // a negative check: the stale command would have followed by now
    assert.deepEqual(
      commands.map((c) => [c.id, c.name]),
      [['new-1', 'fresh']],
    );
    const all = (
      await site.sql.query<{ correlation_id: string; status: string; result: unknown }>(
        'SELECT correlation_id, status, result FROM device_commands ORDER BY id',
      )
    ).rows;
    assert.deepEqual(all, [
      { correlation_id: 'old-1', status: 'expired', result: null },
      { correlation_id: 'new-1', status: 'answered', result: 'done' },
    ]);
  });

  it('HTTP endpoint: 200 with the answer, 504 on timeout, 202 when queued, 404 unknown device, 401, 400', async () => {
    site = await start();
    const device = await tcpDevice(site);
    closers.push(() => device.close());
    device.onCommand((c) => (c.name === 'hang' ? new Promise(() => undefined) : { echo: c.params }));

    const ok = await post(site, 'SN-T', { name: 'echo', params: { a: 1 } });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body.result, { echo: { a: 1 } });
    assert.match(ok.body.id, /^[0-9a-f-]{36}$/);

    const late = await post(site, 'SN-T', { name: 'hang', timeoutMs: 200 });
    assert.equal(late.status, 504);
    assert.match(late.type, /application\/problem\+json/);
    assert.equal(late.body.type, 'https://conflux.dev/problems/command-timeout');
    assert.match(late.body.detail, /within 200 ms/);

    const queued = await post(site, 'SN-M', { name: 'led', params: 'on' });
    assert.equal(queued.status, 202);
    assert.equal(queued.body.status, 'queued');
    assert.ok(Date.parse(queued.body.expiresAt) > Date.now());
    const stored = (await site.sql.query<{ correlation_id: string; status: string }>(`SELECT correlation_id, status FROM device_commands`)).rows;
    assert.deepEqual(stored, [{ correlation_id: queued.body.id, status: 'queued' }]);

    const unknown = await post(site, 'SN-NOPE', { name: 'x' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.type, 'https://conflux.dev/problems/unknown-device');
    const foreign = await post(site, 'SN-OTHER', { name: 'x' });
    assert.equal(foreign.status, 404, "another tenant's device is unknown to this key");

    const none = await post(site, 'SN-T', { name: 'echo' }, '');
    assert.equal(none.status, 401);
    assert.match(none.body.detail, /X-API-Key/);
    assert.equal((await post(site, 'SN-T', { name: 'echo' }, 'cfx_wrong_key')).status, 401);
    assert.equal((await post(site, 'SN-OTHER', { name: 'x' }, site.otherKey)).status, 202, 'its own tenant may queue for it');

    const bad = await post(site, 'SN-T', { params: 1 });
    assert.equal(bad.status, 400);
    assert.match(bad.body.detail, /\{name, params, timeoutMs\?\}/);
    assert.equal((await post(site, 'SN-T', '{not json')).status, 400);

    // The queued command goes out when the MQTT device connects; its answer is recorded.
    const m = await mqttDevice(site);
    closers.push(() => m.client.end(true));
    await m.onCommand((c) => `led ${c.value}`);
    let r: { status: string; result: unknown } | undefined;
    await until(
      () => `the queued command answered (status ${r?.status})`,
      async () => {
        r = (
          await site!.sql.query<{ status: string; result: unknown }>(`SELECT status, result FROM device_commands WHERE correlation_id = $1`, [queued.body.id])
        ).rows[0];
        return r.status === 'answered';
      },
    );
    assert.equal(r!.result, 'led on');
  });

  it('removes its HTTP route on close', async () => {
    site = await start();
    await helper.unload();
    const res = await fetch(`${site.origin}/central/devices/SN-T/commands`, { method: 'POST', headers: { 'x-api-key': site.apiKey }, body: '{"name":"x"}' });
    assert.equal(res.status, 404);
    assert.doesNotMatch(res.headers.get('content-type') ?? '', /problem/);
  });
});
