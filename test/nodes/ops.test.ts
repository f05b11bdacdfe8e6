/**
 * conflux-ops in Node-RED (node-red-node-test-helper) on the embedded defaults: readings stored
 * by the tier nodes come back as latest values and chart points, the gateway's demo device is
 * listed offline, a retry of an unknown dead letter changes nothing, and a bad request goes to a
 * Catch node with its reason.
 */
import { strict as assert } from 'node:assert';
import { catchNode, helper } from '../support/node-red';
import postgresNode = require('../../nodes/storage/postgres');
import redisNode = require('../../nodes/storage/redis');
import shortTermNode = require('../../nodes/storage/short-term');
import timeSeriesNode = require('../../nodes/storage/time-series');
import gatewayNode = require('../../nodes/devices/gateway');
import opsNode = require('../../nodes/ops/ops');

type Msg = Record<string, any>;
const T = Math.floor(Date.now() / 1000) - 600;

const FLOW = [
  { id: 'tab', type: 'tab' },
  { id: 'db', type: 'conflux-postgres', url: '' },
  { id: 'cache', type: 'conflux-redis', mode: 'single', url: '' },
  { id: 'gw', type: 'conflux-gateway', database: 'db', demoDevice: true },
  { id: 'st', type: 'conflux-short-term', z: 'tab', cache: 'cache', wires: [['ts'], []] },
  { id: 'ts', type: 'conflux-time-series', z: 'tab', engine: 'sql', database: 'db', wires: [['stored'], []] },
  { id: 'ops', type: 'conflux-ops', z: 'tab', database: 'db', gateway: 'gw', cache: 'cache', wires: [['answer']] },
  { id: 'catcher', type: 'catch', z: 'tab', scope: ['ops'], uncaught: false, wires: [['caught']] },
  { id: 'stored', type: 'helper', z: 'tab' },
  { id: 'answer', type: 'helper', z: 'tab' },
  { id: 'caught', type: 'helper', z: 'tab' },
] as helper.TestFlows;

function next(at: string, send: () => void): Promise<Msg> {
  return new Promise((resolve) => {
    helper.getNode(at).once('input', resolve);
    send();
  });
}

const ask = (topic: string, payload?: unknown) => next('answer', () => helper.getNode('ops').receive({ topic, payload } as never));

describe('conflux-ops node', function () {
  this.timeout(60_000);
  before(async () => {
    await helper.startServer();
    await helper.load([postgresNode, redisNode, shortTermNode, timeSeriesNode, gatewayNode, opsNode, catchNode], FLOW);
  });
  after(async () => {
    await helper.unload();
    await helper.stopServer();
  });

  it('answers latest values and chart points for readings the tier nodes stored', async () => {
    await next('stored', () =>
      helper.getNode('st').receive({
        payload: [
          { n: 'demo-0001/temperature', t: T, u: 'Cel', v: 21.5 },
          { n: 'demo-0001/temperature', t: T + 60, u: 'Cel', v: 22 },
        ],
        device: { tenant: 'default', id: 'demo-0001' },
      } as never),
    );
    const latest = await ask('latest');
    assert.deepEqual(latest.payload, [{ name: 'demo-0001/temperature', value: 22, unit: 'Cel', time: new Date((T + 60) * 1000).toISOString() }]);
    const series = await ask('series', { sensor: 'demo-0001/temperature' });
    assert.deepEqual(series.payload, [
      { x: T * 1000, y: 21.5, series: 'demo-0001/temperature' },
      { x: (T + 60) * 1000, y: 22, series: 'demo-0001/temperature' },
    ]);
    const sensors = await ask('sensors');
    assert.deepEqual(sensors.options, [{ value: 'demo-0001/temperature', label: 'demo-0001/temperature' }]);
  });

  it('lists the demo device offline, last seen at its newest reading', async () => {
    const devices = await ask('devices');
    const demo = (devices.payload as Msg[]).find((d) => d.serial === 'demo-0001');
    assert.equal(demo?.state, 'offline');
    assert.equal(demo?.lastSeen, new Date((T + 60) * 1000).toISOString());
    assert.equal(devices.summary.offline, 1);
  });

  it('a retry of a dead letter that is not there answers absent and lists the dead letters', async () => {
    const answer = await ask('retry', { id: 42 });
    assert.equal(answer.topic, 'dead-letters');
    assert.deepEqual(answer.payload, []);
    assert.deepEqual(answer.outcome, { action: 'retry', id: '42', outcome: 'absent' });
  });

  it('sends an unknown topic to a Catch node with the reason', async () => {
    const caught = await next('caught', () => helper.getNode('ops').receive({ topic: 'everything' } as never));
    assert.match(caught.error.message, /msg.topic must be one of devices, latest/);
  });
});
