/**
 * The platform's events in Node-RED, from real devices on loopback sockets (the reference TCP
 * client and an MQTT device on the embedded broker, the business store on the embedded PGlite):
 * a conflux-event node in platform mode sees device.connected / device.disconnected, command
 * answered and timed out, and device created / updated / deleted made through conflux-business.
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import type { SqlClient } from '../../nodes/core/db/sql';
import type { PlatformEvent } from '../../nodes/core/events/event';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { MqttDevice } from '../../tools/device-client/mqtt';
import { connect, type TcpDeviceClient } from '../../tools/device-client/tcp';
import { catchNode, helper } from '../support/node-red';
import { eventually, retry } from '../support/wait';
import businessNode = require('../../nodes/storage/business');
import commandNode = require('../../nodes/devices/command');
import eventNode = require('../../nodes/events/event');
import gatewayNode = require('../../nodes/devices/gateway');
import mqttInNode = require('../../nodes/devices/mqtt-in');
import tcpInNode = require('../../nodes/devices/tcp-in');
import postgresNode = require('../../nodes/storage/postgres');

type Msg = Record<string, any>;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

interface Site {
  tcpPort: number;
  mqttPort: number;
  sql: SqlClient;
  /** Every event the platform listener passed on, in order. */
  events: PlatformEvent[];
  /** The first event of this type (and subject) from now or already seen. */
  event(type: string, subject?: string): Promise<PlatformEvent>;
}

async function start(): Promise<Site> {
  const tcpPort = await freePort();
  const mqttPort = await freePort();
  await helper.load([postgresNode, gatewayNode, tcpInNode, mqttInNode, commandNode, businessNode, eventNode, catchNode], [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url: '' },
    { id: 'gw', type: 'conflux-gateway', database: 'db', idleTimeout: '60' },
    { id: 'tcp', type: 'conflux-tcp-in', z: 'tab', gateway: 'gw', host: '127.0.0.1', port: String(tcpPort), wires: [[]] },
    { id: 'mq', type: 'conflux-mqtt-in', z: 'tab', gateway: 'gw', mode: 'broker', host: '127.0.0.1', port: String(mqttPort), wires: [[]] },
    { id: 'cmd', type: 'conflux-command', z: 'tab', gateway: 'gw', timeout: '30', queue: false, wires: [[]] },
    { id: 'biz', type: 'conflux-business', z: 'tab', database: 'db', entity: 'devices', wires: [['bizOut']] },
    { id: 'listener', type: 'conflux-event', z: 'tab', mode: 'platform', patterns: 'device.*, command.*', wires: [['heard']] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'heard', type: 'helper', z: 'tab' },
    { id: 'bizOut', type: 'helper', z: 'tab' },
    { id: 'caught', type: 'helper', z: 'tab' },
  ] as never);
  const events: PlatformEvent[] = [];
  helper.getNode('heard').on('input', (msg: Msg) => events.push(msg.payload as PlatformEvent));
  const sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
  const store = createBusinessStore(sql);
  for (const serial of ['SN-T', 'SN-M']) {
    const d = await store.create('default', 'devices', { serial });
    await store.create('default', 'device_keys', { device_id: d.id, key: `key-${serial}`, iterations: 4096 });
  }
  const event = (type: string, subject?: string) =>
    eventually(
      () => `a ${type} event${subject ? ` about ${subject}` : ''} (seen: ${events.map((e) => `${e.type} ${e.subject}`).join(', ') || 'none'})`,
      () => events.find((e) => e.type === type && (subject === undefined || e.subject === subject)),
    );
  return { tcpPort, mqttPort, sql, events, event };
}

describe('platform events from devices, commands and the business store', function () {
  this.timeout(30_000);
  const closers: Array<() => unknown> = [];

  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(async () => {
    for (const c of closers.splice(0)) await Promise.resolve(c()).catch(() => undefined);
    await helper.unload();
  });

  it('a TCP device connecting and disconnecting: device.connected, then device.disconnected of the same session', async () => {
    const site = await start();
    const device: TcpDeviceClient = await retry('SN-T to log in', () => connect({ port: site.tcpPort, serial: 'SN-T', key: 'key-SN-T' }));
    closers.push(() => device.close());
    const connected = await site.event('device.connected', 'SN-T');
    assert.equal(connected.tenant, 'default');
    assert.deepEqual(connected.data, { device: 'SN-T', transport: 'tcp' });
    await device.close();
    const gone = await site.event('device.disconnected', 'SN-T');
    const data = gone.data as { transport: string; connectedAt: string; durationMs: number; reason: string };
    assert.equal(data.transport, 'tcp');
    assert.equal(data.connectedAt, connected.occurredAt, 'names the session it ends');
    assert.equal(data.reason, 'the device closed the connection');
    assert.ok(data.durationMs >= 0);
    assert.notEqual(gone.id, connected.id);
    assert.equal(site.events.filter((e) => e.type === 'device.connected').length, 1, 'one connected per session');
  });

  it('an MQTT device connecting: device.connected over mqtt', async () => {
    const site = await start();
    const device = await retry('SN-M to connect', () =>
      MqttDevice.connect({ url: `mqtt://127.0.0.1:${site.mqttPort}`, serial: 'SN-M', key: 'key-SN-M', reconnectPeriod: 0 }),
    );
    closers.push(() => device.end());
    const connected = await site.event('device.connected', 'SN-M');
    assert.deepEqual(connected.data, { device: 'SN-M', transport: 'mqtt' });
    await device.end();
    assert.equal(((await site.event('device.disconnected', 'SN-M')).data as { transport: string }).transport, 'mqtt');
  });

  it('commands: an answer gives command.answered, a device that does not answer gives command.timed_out', async () => {
    const site = await start();
    const device = await retry('SN-T to log in', () => connect({ port: site.tcpPort, serial: 'SN-T', key: 'key-SN-T' }));
    closers.push(() => device.close());
    device.onCommand((c) => (c.name === 'reboot' ? { rebooted: true } : new Promise(() => undefined)));
    helper.getNode('cmd').receive({ device: { tenant: 'default', id: 'SN-T' }, command: 'reboot' } as never);
    const answered = await site.event('command.answered', 'SN-T');
    assert.deepEqual(
      { ...(answered.data as Msg), commandId: undefined },
      { device: 'SN-T', commandId: undefined, command: 'reboot', ok: true, result: { rebooted: true } },
    );

    helper.getNode('cmd').receive({ device: { tenant: 'default', id: 'SN-T' }, command: 'slow', timeout: 200 } as never);
    const timedOut = await site.event('command.timed_out', 'SN-T');
    const data = timedOut.data as Msg;
    assert.deepEqual(
      { ...data, commandId: undefined },
      { device: 'SN-T', commandId: undefined, command: 'slow', reason: 'timeout', queued: false, timeoutMs: 200 },
    );
    assert.notEqual(data.commandId, (answered.data as Msg).commandId);
  });

  it('devices created, updated and deleted through conflux-business: device.created, device.updated, device.deleted', async () => {
    const site = await start();
    const biz = helper.getNode('biz');
    const next = () => new Promise<Msg>((resolve) => helper.getNode('bizOut').once('input', resolve));
    let out = next();
    biz.receive({ action: 'create', tenant: 'default', payload: { serial: 'SN-NEW', name: 'new one' } } as never);
    const row = (await out).payload as Msg;
    const created = await site.event('device.created', 'SN-NEW');
    assert.equal((created.data as Msg).device.id, row.id);
    assert.equal((created.data as Msg).device.name, 'new one');

    out = next();
    biz.receive({ action: 'update', tenant: 'default', id: row.id, payload: { name: 'renamed' } } as never);
    await out;
    const updated = await site.event('device.updated', 'SN-NEW');
    assert.deepEqual((updated.data as Msg).changed, ['name']);
    assert.equal((updated.data as Msg).device.name, 'renamed');

    out = next();
    biz.receive({ action: 'delete', tenant: 'default', id: row.id } as never);
    await out;
    const deleted = await site.event('device.deleted', 'SN-NEW');
    assert.equal((deleted.data as Msg).device.serial, 'SN-NEW');
    assert.deepEqual(
      site.events.filter((e) => e.subject === 'SN-NEW').map((e) => e.type),
      ['device.created', 'device.updated', 'device.deleted'],
    );
  });
});
