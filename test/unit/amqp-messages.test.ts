/** What conflux-amqp-out sends (ids, routing keys, bodies) and what conflux-amqp-in decodes. */
import { strict as assert } from 'node:assert';
import { decodeIncoming, prepareOutgoing } from '../../nodes/core/amqp/messages';
import { checkCustomer, DEFAULT_TOPOLOGY, deadQueueName, queueArguments, queueName } from '../../nodes/core/amqp/topology';
import { connectUrl, redact } from '../../nodes/core/amqp/connection';
import { createEvent } from '../../nodes/core/events/event';
import { CodecError } from '../../nodes/core/errors';

const T = 1_665_505_287;
const reading = { payload: [{ n: '951FF00000340/5368/temperature', t: T, u: 'Cel', v: 24.6 }], device: { tenant: 'acme', id: '951FF00000340' } };

describe('AMQP messages', () => {
  it('a reading becomes an eapi_measurement_new message with the seed body, routing key and a stable id', () => {
    const [p] = prepareOutgoing(reading, 'acme', 'eapi');
    assert.equal(p.message.routingKey, 'acme.eapi_measurement_new');
    assert.equal(p.message.type, 'eapi_measurement_new');
    assert.deepEqual(JSON.parse(p.message.body), {
      type: 'eapi_measurement_new',
      data: { deviceId: '951FF00000340', sensorId: 5368, value: 24.6, unit: '°C', unitType: 'temperature', timeStamp: '2022-10-11T16:21:27+00:00' },
    });
    assert.equal(prepareOutgoing(reading, 'acme', 'eapi')[0].messageId, p.messageId, 'the same reading, the same id');
    assert.notEqual(prepareOutgoing(reading, 'other', 'eapi')[0].messageId, p.messageId, 'another customer, another id');
    const later = { ...reading, payload: [{ ...reading.payload[0], t: T + 1 }] };
    assert.notEqual(prepareOutgoing(later, 'acme', 'eapi')[0].messageId, p.messageId);
  });

  it('an event goes as its JSON under <customer>.event.<type>, with its own id', () => {
    const event = createEvent({ type: 'device.connected', tenant: 'acme', subject: 'd1', data: { transport: 'tcp' }, occurredAt: T * 1000 });
    for (const msg of [{ payload: event }, { event }]) {
      const [p] = prepareOutgoing(msg, 'acme', 'eapi');
      assert.equal(p.messageId, event.id);
      assert.equal(p.message.routingKey, 'acme.event.device.connected');
      assert.deepEqual(JSON.parse(p.message.body), event);
    }
    const [r] = prepareOutgoing(reading, 'acme', 'event');
    assert.equal(r.message.routingKey, 'acme.event.reading.received');
    assert.equal(JSON.parse(r.message.body).data.records[0].v, 24.6);
  });

  it('refuses what is neither a reading nor an event, and records without an eapi form', () => {
    assert.throws(() => prepareOutgoing({ payload: 'text' }, 'acme', 'eapi'), /neither canonical records nor a platform event/);
    assert.throws(() => prepareOutgoing({ payload: [{ n: 'd/1/x', t: T, vd: 'AAEC' }] }, 'acme', 'eapi'), CodecError);
  });

  it('decodes eapi, SenML JSON and JSON bodies', () => {
    const [p] = prepareOutgoing(reading, 'acme', 'eapi');
    const eapi = decodeIncoming(Buffer.from(p.message.body), 'eapi');
    assert.deepEqual(eapi.payload, reading.payload);
    assert.equal(eapi.deviceId, '951FF00000340');
    const senml = decodeIncoming(Buffer.from(JSON.stringify([{ bn: 'd1/', bt: T, n: 'x', v: 1 }])), 'senml');
    assert.deepEqual(senml.payload, [{ n: 'd1/x', t: T, v: 1 }]);
    assert.deepEqual(decodeIncoming(Buffer.from('{"a":1}'), 'json').payload, { a: 1 });
    assert.throws(() => decodeIncoming(Buffer.from('{"type":"eapi_nonsense","data":{}}'), 'eapi'), CodecError);
  });

  it('names queues, checks customers and builds connection URLs', () => {
    assert.equal(queueName(DEFAULT_TOPOLOGY, 'acme'), 'customer.acme');
    assert.equal(deadQueueName(DEFAULT_TOPOLOGY, 'acme'), 'customer.acme.dead');
    assert.deepEqual(queueArguments(DEFAULT_TOPOLOGY), { 'x-message-ttl': 259_200_000, 'x-dead-letter-exchange': 'conflux.dlx' });
    assert.equal(checkCustomer('acme_1-x'), 'acme_1-x');
    for (const bad of ['', 'a.b', 'a#', 'a*', 'x'.repeat(101), 3]) assert.throws(() => checkCustomer(bad), /routing key word/);
    assert.equal(
      connectUrl('amqps://u:p@broker:5671/old?x=1', { username: 'me', password: 'p@ss', vhost: 'prod', heartbeat: 10 }),
      'amqps://me:p%40ss@broker:5671/prod?x=1&heartbeat=10',
    );
    assert.throws(() => connectUrl('http://broker', {}), /not an AMQP URL/);
    assert.equal(redact('amqp://guest:secret@h:1/'), 'amqp://guest:***@h:1/');
  });
});
