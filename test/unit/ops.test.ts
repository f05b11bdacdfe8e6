/** The operator dashboard's pure parts (nodes/core/ops): requests checked, queues named, rates measured. */
import { strict as assert } from 'node:assert';
import { RateMeter } from '../../nodes/core/ops/counters';
import { parseDeadLetterId } from '../../nodes/core/ops/dead-letters';
import { connectorOf } from '../../nodes/core/ops/mailboxes';
import { OpsInputError, parseSeriesRequest } from '../../nodes/core/ops/readings';

describe('operator dashboard (nodes/core/ops): requests and counts', () => {
  it('names the connector of each queue as its nodes name them', () => {
    assert.deepEqual(['webhooks', 'webhook:/in/partner', 'amqp:1a2b', 'ftp:3c4d', 'xmpp:proxy@example.org', 'partner', 'default'].map(connectorOf), [
      'webhooks',
      'webhooks',
      'amqp',
      'ftp',
      'xmpp',
      'mailbox',
      'mailbox',
    ]);
  });

  it('a series request defaults to the last 24 hours, takes ISO times, and names the bad field', () => {
    assert.deepEqual(parseSeriesRequest({ sensor: 'd/t' }, 100_000), { sensor: 'd/t', from: 100_000 - 86_400, to: 100_000 });
    assert.deepEqual(parseSeriesRequest('d/t', 100_000), { sensor: 'd/t', from: 100_000 - 86_400, to: 100_000 });
    assert.deepEqual(parseSeriesRequest({ sensor: 'd/t', from: '2026-01-01T00:00:00Z', to: 1_767_229_200, rollup: 'day' }, 0), {
      sensor: 'd/t',
      from: 1_767_225_600,
      to: 1_767_229_200,
      rollup: 'day',
    });
    assert.equal(parseSeriesRequest({ sensor: 'd/t', rollup: 'none' }, 10).rollup, undefined);
    assert.throws(() => parseSeriesRequest({ sensor: 'd/t', from: 'yesterday' }, 0), /payload\.from/);
    assert.throws(() => parseSeriesRequest({ sensor: 'd/t', from: 20, to: 10 }, 0), /before/);
    assert.throws(() => parseSeriesRequest([], 0), OpsInputError);
  });

  it('a dead letter id is a positive integer, as {id}, a number or text', () => {
    assert.equal(parseDeadLetterId({ id: 7 }), '7');
    assert.equal(parseDeadLetterId('12'), '12');
    assert.equal(parseDeadLetterId(9n), '9');
    for (const bad of [0, -1, 1.5, '1e3', '', null, {}, { id: 'x' }, '99999999999999999999'])
      assert.throws(() => parseDeadLetterId(bad), OpsInputError, String(bad));
  });

  it('measures a per-second rate between samples, 0 at first and after a restart of the count', () => {
    const meter = new RateMeter();
    assert.equal(meter.sample(100, 1_000), 0);
    assert.equal(meter.sample(130, 3_000), 15);
    assert.equal(meter.sample(10, 5_000), 0, 'the count went back');
    assert.equal(meter.sample(10, 5_000), 0, 'no time passed');
  });
});
