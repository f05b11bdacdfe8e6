import { strict as assert } from 'node:assert';
import { catchNode, helper, nextMessage } from '../support/node-red';
import { multipleMeasurements, resolvedMultipleMeasurements } from '../fixtures/rfc8428-multiple';
import senmlNode = require('../../nodes/convert/senml');

const flow = (props: Record<string, unknown> = {}) => [
  { id: 'tab', type: 'tab' },
  { id: 'senml', type: 'conflux-senml', z: 'tab', name: '', mode: 'auto', format: 'auto', wires: [['out']], ...props },
  { id: 'out', type: 'helper', z: 'tab' },
  { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
  { id: 'caught', type: 'helper', z: 'tab' },
];

describe('conflux-senml node', () => {
  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(() => helper.unload());

  it('with default settings turns the RFC multiple-measurement example into its resolved records', async () => {
    await helper.load([senmlNode, catchNode], flow());
    const out = nextMessage('out');
    helper.getNode('senml').receive({ payload: multipleMeasurements });
    const msg = await out;
    assert.deepEqual(msg.payload, resolvedMultipleMeasurements);
    assert.equal(msg.source.format, 'senml+json');
    assert.equal(typeof msg.source.receivedAt, 'number');
  });

  it('decodes JSON text, XML text and CBOR bytes alike', async () => {
    await helper.load([senmlNode, catchNode], flow());
    const node = helper.getNode('senml');
    const inputs = [
      '[{"n":"dev1/temp","u":"Cel","t":1.7e9,"v":21.5}]',
      '<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="dev1/temp" u="Cel" t="1.7e9" v="21.5"/></sensml>',
      // [{0: "dev1/temp", 1: "Cel", 6: 1.7e9, 2: 21.5}] written by hand, so the test does not lean on our encoder
      Buffer.from('81a40069646576312f74656d70016343656c061a6553f10002f94d60', 'hex'),
    ];
    for (const payload of inputs) {
      const out = nextMessage('out');
      node.receive({ payload });
      assert.deepEqual((await out).payload, [{ n: 'dev1/temp', u: 'Cel', t: 1.7e9, v: 21.5 }]);
    }
  });

  it('encodes a canonical message into the chosen format', async () => {
    await helper.load([senmlNode, catchNode], flow({ format: 'xml' }));
    const out = nextMessage('out');
    helper.getNode('senml').receive({
      payload: [{ n: 'dev1/open', t: 1.7e9, vb: true }],
      source: { transport: 'mqtt', format: 'ultralight', receivedAt: 1 },
    });
    const xml = (await out).payload;
    assert.equal(typeof xml, 'string');
    assert.match(xml, /<senml [^>]*n="dev1\/open"/);
    assert.match(xml, /vb="true"/);
  });

  it('sends a bad payload to the Catch node with the record and field, and goes on with the next', async () => {
    await helper.load([senmlNode, catchNode], flow());
    const caught = nextMessage('caught');
    const node = helper.getNode('senml');
    node.receive({
      payload: [
        { n: 'ok', v: 1 },
        { n: 'bad', v: 'x' },
      ],
    });
    const err = await caught;
    assert.match(err.error.message, /record 1: field "v"/);
    const out = nextMessage('out');
    node.receive({ payload: '[{"n":"ok","t":1.7e9,"v":1}]' });
    assert.deepEqual((await out).payload, [{ n: 'ok', t: 1.7e9, v: 1 }]);
  });
});
