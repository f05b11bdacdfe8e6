/** conflux-sen1, conflux-ultralight, conflux-eapi and conflux-map as an integrator wires them. */
import { strict as assert } from 'node:assert';
import { catchNode, helper, nextMessage } from '../support/node-red';
import sen1Node = require('../../nodes/convert/sen1');
import ultralightNode = require('../../nodes/convert/ultralight');
import eapiNode = require('../../nodes/convert/eapi');
import mapNode = require('../../nodes/convert/map');

const nodes = [sen1Node, ultralightNode, eapiNode, mapNode, catchNode];

function flow(type: string, props: Record<string, unknown> = {}) {
  return [
    { id: 'tab', type: 'tab' },
    { id: 'subject', type, z: 'tab', name: '', mode: 'auto', wires: [['out']], ...props },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
}

/** Sends one message and collects what leaves on the output until `count` messages arrived. */
function collect(count: number, payload: unknown, extra: Record<string, unknown> = {}): Promise<Record<string, any>[]> {
  const got: Record<string, any>[] = [];
  const done = new Promise<Record<string, any>[]>((resolve) => {
    helper.getNode('out').on('input', (msg: Record<string, any>) => {
      got.push(msg);
      if (got.length === count) resolve(got);
    });
  });
  helper.getNode('subject').receive({ payload, ...extra });
  return done;
}

const SEN1 =
  '<Sen1Message xmlns="http://xmpp.rocks"><username>alice</username><name>boiler/temperature</name><unite>Cel</unite>' +
  '<type>dt_numeric</type><applicationSrc>gms</applicationSrc><applicationDst>conflux</applicationDst><Sen1Datas>' +
  '<Sen1Data><value>21.5</value><timestamp>2024-03-01 10:00:00</timestamp></Sen1Data>' +
  '<Sen1Data><value>21.7</value><timestamp>2024-03-01 10:01:00</timestamp></Sen1Data></Sen1Datas></Sen1Message>';
const T = Date.UTC(2024, 2, 1, 10) / 1000;

describe('converter nodes', () => {
  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(() => helper.unload());

  it('conflux-sen1 decodes a Sen1Message and answers in kind from msg.sen1', async () => {
    await helper.load(nodes, flow('conflux-sen1'));
    const [decoded] = await collect(1, SEN1);
    assert.deepEqual(decoded.payload, [
      { n: 'boiler/temperature', t: T, u: 'Cel', v: 21.5 },
      { n: 'boiler/temperature', t: T + 60, u: 'Cel', v: 21.7 },
    ]);
    assert.equal(decoded.sen1.username, 'alice');
    assert.equal(decoded.source.format, 'sen1');

    const [encoded] = await collect(1, decoded.payload, { sen1: decoded.sen1 });
    assert.match(encoded.payload, /<username>alice<\/username>/);
    assert.match(encoded.payload, /<timestamp>2024-03-01 10:01:00<\/timestamp>/);
  });

  it('conflux-sen1 refuses to encode without a username, to the Catch node', async () => {
    await helper.load(nodes, flow('conflux-sen1'));
    const caught = nextMessage('caught');
    helper.getNode('subject').receive({ payload: [{ n: 'a', t: T, v: 1 }] });
    assert.match((await caught).error.message, /username/);
  });

  it('conflux-ultralight names records after msg.device.id and maps short attribute names', async () => {
    await helper.load(nodes, flow('conflux-ultralight', { deviceId: 'fallback', map: '{"t":"temperature"}' }));
    const [fromDevice] = await collect(1, 't|21.5|h|40', { device: { tenant: 'acme', id: 'sensor-7' } });
    assert.deepEqual(
      fromDevice.payload.map((r: { n: string; v: number }) => [r.n, r.v]),
      [
        ['sensor-7/temperature', 21.5],
        ['sensor-7/h', 40],
      ],
    );
    const [fallback] = await collect(1, Buffer.from('t|1'));
    assert.equal(fallback.payload[0].n, 'fallback/temperature');
    const [text] = await collect(1, [{ n: 'fallback/temperature', t: T, v: 22 }]);
    assert.equal(text.payload, '2024-03-01T10:00:00Z|t|22');
  });

  it('conflux-ultralight decodes a command result without a Device ID, since it names its device; measures still need one', async () => {
    await helper.load(nodes, flow('conflux-ultralight'));
    const [result] = await collect(1, 'weatherStation167@ping|Ping ok');
    assert.deepEqual(
      result.payload.map((r: { n: string; vs: string }) => [r.n, r.vs]),
      [['weatherStation167/ping_info', 'Ping ok']],
    );
    const caught = nextMessage('caught');
    helper.getNode('subject').receive({ payload: 't|1' });
    assert.match((await caught).error.message, /no device id/);
  });

  it('conflux-ultralight shows a bad attribute map on the node and fails each message with it', async () => {
    await helper.load(nodes, flow('conflux-ultralight', { map: '{not json' }));
    const caught = nextMessage('caught');
    helper.getNode('subject').receive({ payload: 't|1' });
    assert.match((await caught).error.message, /invalid configuration/);
  });

  it('conflux-eapi decodes a measurement and encodes records into one message per eapi message', async () => {
    await helper.load(nodes, flow('conflux-eapi'));
    const measurement = {
      type: 'eapi_measurement_new',
      data: { timeStamp: '2022-10-11T16:21:27+00:00', value: 24.6, unit: '°C', unitType: 'temperature', deviceId: '951FF00000340', sensorId: '5368' },
    };
    const [decoded] = await collect(1, JSON.stringify(measurement));
    assert.deepEqual(decoded.payload, [{ n: '951FF00000340/5368/temperature', t: Date.UTC(2022, 9, 11, 16, 21, 27) / 1000, u: 'Cel', v: 24.6 }]);
    const geo = { n: '951FF00000340/5369/latitude', t: decoded.payload[0].t, u: 'lat', v: 47.19999075 };
    const out = await collect(2, [...decoded.payload, geo, { ...geo, n: '951FF00000340/5369/longitude', u: 'lon', v: 9.50875282 }]);
    assert.deepEqual(
      out.map((m) => m.payload.type),
      ['eapi_measurement_new', 'eapi_geodata_new'],
    );
    assert.equal(out[0].payload.data.sensorId, 5368);
  });

  it('conflux-map runs the JSONata expression and resolves what it yields', async () => {
    const expression = '[readings.{"n": $$.device & "/" & k, "t": $$.at, "v": val}]';
    await helper.load(nodes, flow('conflux-map', { expression }));
    const [msg] = await collect(1, {
      device: 'pump-7',
      at: T,
      readings: [
        { k: 'pressure', val: 2.4 },
        { k: 'flow', val: 0.5 },
      ],
    });
    assert.deepEqual(msg.payload, [
      { n: 'pump-7/pressure', t: T, v: 2.4 },
      { n: 'pump-7/flow', t: T, v: 0.5 },
    ]);
    assert.equal(msg.source.format, 'json');
  });

  it('conflux-map reports an expression that does not compile, with its position', async () => {
    await helper.load(nodes, flow('conflux-map', { expression: '[readings.{' }));
    const caught = nextMessage('caught');
    helper.getNode('subject').receive({ payload: {} });
    assert.match((await caught).error.message, /invalid configuration: .*position/);
  });
});
