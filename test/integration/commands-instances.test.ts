/**
 * Commands across two Node-RED instances on one PostgreSQL (issue 14, item 1), as a load balancer
 * would spread them: instance A runs in this process (node-red-node-test-helper) with a
 * conflux-command node; instance B is a Node-RED runtime in a child process
 * (test/support/red-runtime.ts) with its own gateway and conflux-tcp-in; a real TCP device (the
 * reference client) logs in to B. A command given to A's node reaches the device on B and the
 * device's answer leaves A's node; a refusal reaches A's Catch node; a command queued through A
 * while the device is offline goes out when it logs in to B; and when B is killed (SIGKILL) while
 * the device holds a command, A's node reports its timeout instead of hanging.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { NodeAPI } from 'node-red';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { connect, type TcpDeviceClient } from '../../tools/device-client/tcp';
import { catchNode, helper, nextMessage } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import { retry, until } from '../support/wait';
import { freePort } from '../support/ports';
import { type RedChild, startRedChild } from '../support/red-child';
import commandModule = require('../../nodes/devices/command');
import gatewayNode = require('../../nodes/devices/gateway');
import postgresNode = require('../../nodes/storage/postgres');

type Msg = Record<string, any>;

/** RED.httpNode of instance A, captured as the node module registers. */
let httpApp: http.RequestListener | undefined;
function commandNode(RED: NodeAPI): void {
  httpApp = RED.httpNode as unknown as http.RequestListener;
  commandModule(RED);
}

/** Instance B: a gateway and a TCP listener on the shared database. */
function flowB(url: string, port: number): unknown[] {
  return [
    { id: 'tab', type: 'tab', label: 'instance B' },
    { id: 'db', type: 'conflux-postgres', url },
    { id: 'gw', type: 'conflux-gateway', database: 'db', idleTimeout: '60' },
    { id: 'tcp', type: 'conflux-tcp-in', z: 'tab', gateway: 'gw', host: '127.0.0.1', port: String(port), wires: [[]] },
  ];
}

describe('conflux-command across two Node-RED instances on one PostgreSQL', function () {
  this.timeout(180_000);
  let dir: string;
  let sql: SqlClient;
  let b: RedChild;
  let portB: number;
  let apiKey: string;
  let server: http.Server | undefined;
  const devices: TcpDeviceClient[] = [];

  before(async function () {
    this.timeout(180_000);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-commands-two-'));
    const url = await freshDatabase();
    sql = await openSql({ connectionString: url, poolSize: 2 });
    await migrate(sql);
    const store = createBusinessStore(sql);
    for (const serial of ['SN-T', 'SN-Q']) {
      const d = await store.create('default', 'devices', { serial });
      await store.create('default', 'device_keys', { device_id: d.id, key: `key-${serial}`, iterations: 4096 });
    }
    apiKey = (await store.create('default', 'api_keys', { name: 'central' })).key as string;
    portB = await freePort();
    const flowFile = path.join(dir, 'flow-b.json');
    fs.writeFileSync(flowFile, JSON.stringify(flowB(url, portB)));
    b = startRedChild(flowFile);
    await helper.startServer();
    await helper.load([postgresNode, gatewayNode, commandNode, catchNode], [
      { id: 'tab', type: 'tab' },
      { id: 'db', type: 'conflux-postgres', url },
      { id: 'gw', type: 'conflux-gateway', database: 'db' },
      { id: 'cmd', type: 'conflux-command', z: 'tab', gateway: 'gw', timeout: '60', queue: true, expiry: '3600', path: '/central/devices', wires: [['out']] },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'out', type: 'helper', z: 'tab' },
      { id: 'caught', type: 'helper', z: 'tab' },
    ] as helper.TestFlows);
    server = http.createServer(httpApp!);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    await b.started;
  });

  after(async () => {
    for (const d of devices) await d.close().catch(() => undefined);
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await helper.unload();
    await helper.stopServer();
    if (b && b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGKILL');
    await b?.exited;
    await sql?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function device(serial: string, onCommand: (c: Msg) => unknown): Promise<TcpDeviceClient> {
    const d = await retry(`${serial} to log in to instance B`, () => connect({ port: portB, serial, key: `key-${serial}`, onCommand }));
    devices.push(d);
    return d;
  }

  async function heldByB(serial: string): Promise<boolean> {
    const { rows } = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM device_sessions WHERE serial = $1', [serial]);
    return rows[0].n === 1;
  }

  it("a command given to A reaches the device on B; the answer leaves A's node, a refusal reaches A's Catch", async () => {
    const seen: Msg[] = [];
    await device('SN-T', (c) => {
      seen.push(c);
      if (c.name === 'dim') throw new Error('busy updating');
      return { rebooted: true, delay: (c.params as Msg).delay };
    });
    await until(
      () => `instance B records the session\n${b.output()}`,
      () => heldByB('SN-T'),
    );

    const out = nextMessage('out');
    helper.getNode('cmd').receive({ device: { tenant: 'default', id: 'SN-T' }, command: { name: 'reboot', params: { delay: 5 } } } as never);
    const msg = await out;
    assert.deepEqual(msg.payload, { rebooted: true, delay: 5 });
    assert.equal(seen.length, 1);
    assert.equal(msg.command.id, seen[0].id, 'the answer carries the id the device got on B');

    const caught = nextMessage('caught');
    helper.getNode('cmd').receive({ serial: 'SN-T', command: 'dim', payload: 40 } as never);
    const report = await caught;
    assert.equal(report.reason, 'refused');
    assert.match(report.error.message, /refused the command "dim": busy updating/);
  });

  it("the central system's POST to A's REST endpoint gets the answer of the device on B (200)", async () => {
    const res = await fetch(`http://127.0.0.1:${(server!.address() as net.AddressInfo).port}/central/devices/SN-T/commands`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
      body: JSON.stringify({ name: 'reboot', params: { delay: 7 } }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as Msg;
    assert.deepEqual(body.result, { rebooted: true, delay: 7 });
  });

  it('a command queued through A goes out when the device logs in to B, and its answer leaves A', async () => {
    const out = nextMessage('out');
    helper.getNode('cmd').receive({ serial: 'SN-Q', command: { name: 'config', params: { rate: 10 } } } as never);
    await until(
      'the command is queued',
      async () => (await sql.query(`SELECT 1 FROM device_commands WHERE name = 'config' AND status = 'queued'`)).rowCount === 1,
    );
    await device('SN-Q', (c) => ({ applied: (c.params as Msg).rate }));
    const msg = await out;
    assert.deepEqual(msg.payload, { applied: 10 });
  });

  it("B killed while its device holds a command: A's node reports the timeout, it does not hang", async () => {
    let got: Msg | undefined;
    devices[0].onCommand((c) => {
      got = c;
      return new Promise(() => undefined); // never answers
    });
    const caught = nextMessage('caught');
    helper.getNode('cmd').receive({ serial: 'SN-T', command: 'slow', timeout: 4_000 } as never);
    await until('the device on B got the command', () => got !== undefined);
    b.child.kill('SIGKILL');
    await b.exited;
    const report = await caught;
    assert.equal(report.reason, 'timeout');
    assert.match(report.error.message, /did not answer the command "slow" within 4000 ms/);
  });
});
