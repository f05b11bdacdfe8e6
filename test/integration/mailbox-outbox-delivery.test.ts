/**
 * What the outbox offers a deliverer that paces itself (webhooks out): giving a message back
 * without counting an attempt (defer), a retry delay the peer chose (Retry-After), a retry
 * schedule, and messages stored already claimed by the worker that will send them.
 */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { Drainer } from '../../nodes/core/mailbox/drainer';
import { Mailbox, scheduledRetry, type ClaimedMessage } from '../../nodes/core/mailbox/mailbox';
import { ENGINES, withMigratedDatabase } from '../support/engines';
import { until } from '../support/wait';

for (const engine of ENGINES) {
  describe(`outbox delivery controls on ${engine.name}`, function () {
    let db: SqlClient;
    let box: Mailbox;
    let n = 0;
    let queue: string;
    withMigratedDatabase(engine, (opened) => {
      db = opened;
      box = new Mailbox(db, 'outbox');
    });
    beforeEach(() => void (queue = `q${++n}`));
    const claim = (worker = 'w', leaseMs = 60_000) => box.claim(queue, { limit: 10, leaseMs, worker });
    const row = async (messageId: string) =>
      (
        await db.query<{ attempts: number; claimed_by: string | null }>(`SELECT attempts, claimed_by FROM outbox WHERE queue = $1 AND message_id = $2`, [
          queue,
          messageId,
        ])
      ).rows[0];

    it('defer gives a message back without counting the attempt, after its delay', async () => {
      await box.enqueue('default', queue, [{ messageId: 'a', payload: 1 }]);
      const [m] = await claim();
      assert.equal(m.attempts, 1);
      assert.equal(await box.defer([m.id], 'someone else', 0), 0, 'only the holder can give it back');
      assert.equal(await box.defer([m.id], 'w', 60_000), 1);
      assert.deepEqual(await claim(), [], 'not before its delay');
      assert.deepEqual(await row('a'), { attempts: 0, claimed_by: null });
      await db.query(`UPDATE outbox SET available_at = now() WHERE queue = $1`, [queue]);
      const [again] = await claim();
      assert.equal(again.attempts, 1, 'still its first attempt');
    });

    it("nack with delayMs waits what the peer asked, not the policy's backoff; a schedule dead-letters after its last delay", async () => {
      await box.enqueue('default', queue, [{ messageId: 'b', payload: 1 }]);
      const policy = scheduledRetry([0, 0]);
      let [m] = await claim();
      const asked = await box.nack(m.id, 'w', '429', policy, { delayMs: 3_600_000 });
      assert.equal(asked.outcome, 'retry');
      assert.ok(asked.outcome === 'retry' && asked.delayMs === 3_600_000);
      assert.deepEqual(await claim(), []);
      await db.query(`UPDATE outbox SET available_at = now() WHERE queue = $1`, [queue]);
      [m] = await claim();
      assert.equal((await box.nack(m.id, 'w', 'x', policy)).outcome, 'retry');
      [m] = await claim();
      assert.equal(m.attempts, 3);
      assert.deepEqual(await box.nack(m.id, 'w', 'last', policy), { outcome: 'dead', attempts: 3 });
      const dead = await db.query<{ last_error: string }>(`SELECT last_error FROM dead_letters WHERE queue = $1`, [queue]);
      assert.deepEqual(dead.rows, [{ last_error: 'last' }]);
    });

    it('enqueueClaimed stores new messages already claimed by the worker; a drainer adopts them into its slots', async () => {
      await box.enqueue('default', queue, [{ messageId: 'c1', payload: 'old' }]);
      const got = await box.enqueueClaimed(
        'default',
        queue,
        [
          { messageId: 'c1', payload: 'again' },
          { messageId: 'c2', payload: { x: 1 } },
        ],
        { worker: 'w', leaseMs: 60_000 },
      );
      assert.deepEqual(
        got.map((m) => [m.messageId, m.payload, m.attempts]),
        [['c2', { x: 1 }, 1]],
        'c1 was already in the box',
      );
      assert.deepEqual(
        (await claim('other')).map((m) => m.messageId),
        ['c1'],
        'another worker does not get c2 while its lease holds',
      );
      const delivered: ClaimedMessage[] = [];
      const drainer = new Drainer(box, {
        queue,
        worker: 'w',
        capacity: 5,
        leaseMs: 60_000,
        pollMs: 20,
        retry: scheduledRetry([0]),
        deliver: (m) => delivered.push(m),
      });
      drainer.start();
      try {
        assert.equal(drainer.room, 5);
        drainer.adopt(got);
        assert.equal(drainer.room, 4);
        assert.deepEqual(delivered, got);
        await drainer.ack(got[0].id);
        await until('c2 acked', async () => (await row('c2')) === undefined);
        assert.equal(drainer.room, 5);
      } finally {
        await drainer.stop();
      }
      assert.equal(drainer.room, 0, 'a stopped drainer has no room');
    });
  });
}
