/** conflux-mqtt-in's status: what an operator reads under the node in each mode. */
import * as assert from 'node:assert/strict';
import { brokerStatus, clientStatus, type Translate } from '../../nodes/core/protocol/mqtt-in-status';

const t: Translate = (key, subs) => (subs ? `${key.split('.').pop()}=${subs.n}` : (key.split('.').pop() ?? key));

describe('conflux-mqtt-in status', () => {
  it('broker mode: where it listens, a ring until a device is connected, yellow while readings wait', () => {
    assert.deepEqual(brokerStatus(t, '*:1883', false, 0, { accepted: 0, refused: 0, waiting: 0 }), {
      fill: 'green',
      shape: 'ring',
      text: '*:1883: devices=0, readings=0',
    });
    assert.deepEqual(brokerStatus(t, '127.0.0.1:8883', true, 1, { accepted: 5, refused: 2, waiting: 3 }), {
      fill: 'yellow',
      shape: 'dot',
      text: '127.0.0.1:8883 (TLS): device=1, readings=5, refused=2, waiting=3',
    });
  });

  it('client mode: the state with its reason, red when disconnected, cut to 120 characters', () => {
    const none = { accepted: 0, refused: 0, waiting: 0 };
    assert.deepEqual(clientStatus(t, 'connected', '', { accepted: 7, refused: 0, waiting: 0 }), { fill: 'green', shape: 'dot', text: 'connected, readings=7' });
    assert.equal(clientStatus(t, 'connected', '', { accepted: 7, refused: 0, waiting: 1 }).fill, 'yellow');
    assert.deepEqual(clientStatus(t, 'reconnecting', 'ECONNREFUSED', none), { fill: 'yellow', shape: 'ring', text: 'reconnecting (ECONNREFUSED), readings=0' });
    assert.equal(clientStatus(t, 'disconnected', 'not authorized', none).fill, 'red');
    assert.equal(clientStatus(t, 'closed', 'x'.repeat(300), none).text.length, 120);
  });
});
