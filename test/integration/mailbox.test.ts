/** The mailboxes on PostgreSQL 15 and PGlite: de-duplication, leases, ack, nack with backoff, dead letters. */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { backoffDelay, Mailbox, type ClaimedMessage } from '../../nodes/core/mailbox/mailbox';
import { ENGINES, withMigratedDatabase } from '../support/engines';
import { eventually } from '../support/wait';

/** The first claim that gets something: a lease or a backoff must run out first. */
const claimed = (claim: () => Promise<ClaimedMessage[]>): Promise<ClaimedMessage[]> =>
  eventually('a message to become claimable', async () => {
    const got = await claim();
    return got.length > 0 ? got : undefined;
  });

const msgs = (ids: string[], extra: Record<string, unknown> = {}) => ids.map((id) => ({ messageId: id, payload: { id, ...extra } }));

describe('mailbox backoff', () => {
  it('doubles from the base delay and stops at the cap', () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 1_000, maxAttempts: 10 };
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 60, 5000].map((a) => backoffDelay(a, policy)),
      [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000],
    );
  });
  it('jitter draws below the delay, never above', () => {
    const policy = { baseDelayMs: 1_000, maxDelayMs: 1_000, maxAttempts: 3, jitter: 0.5 };
    assert.equal(
      backoffDelay(1, policy, () => 0),
      1_000,
    );
    assert.equal(
      backoffDelay(1, policy, () => 1),
      500,
    );
  });
});

for (const engine of ENGINES) {
  describe(`mailbox on ${engine.name}`, function () {
    let db: SqlClient;
    let box: Mailbox;
    let n = 0;
    let queue: string;

    withMigratedDatabase(engine, (opened) => {
      db = opened;
      box = new Mailbox(db, 'outbox');
    });
    beforeEach(() => void (queue = `q${++n}`));

    it('rejects a box name other than inbox or outbox', () => {
      assert.throws(() => new Mailbox(db, 'readings' as 'inbox'), TypeError);
    });

    it('de-duplicates on (tenant, queue, message id), within a batch and across batches', async () => {
      assert.equal(await box.enqueue('default', queue, msgs(['a', 'b', 'a'])), 2);
      assert.equal(await box.enqueue('default', queue, msgs(['b', 'c'], { second: true })), 1);
      assert.equal(await box.enqueue('default', queue, []), 0);
      // The same id in another tenant or queue is another message.
      assert.equal(await box.enqueue('t2', queue, msgs(['a'])), 1);
      assert.equal(await box.enqueue('default', `${queue}-other`, msgs(['a'])), 1);
      assert.equal(await box.depth(queue), 4);
      assert.equal(await box.depth(queue, 'default'), 3);
      const claimed = await box.claim(queue, { limit: 10, leaseMs: 10_000, worker: 'w' });
      assert.deepEqual(
        claimed.map((m) => [m.tenantId, m.messageId]),
        [
          ['default', 'a'],
          ['default', 'b'],
          ['default', 'c'],
          ['t2', 'a'],
        ],
      );
      // The first copy of b stays: a duplicate never overwrites.
      assert.deepEqual(claimed[1].payload, { id: 'b' });
      assert.deepEqual(claimed[2].payload, { id: 'c', second: true });
      assert.ok(claimed.every((m) => m.attempts === 1 && m.lastError === null && m.queue === queue));
    });

    it('carries any JSON payload and headers intact', async () => {
      const payload = { s: 'quote " backslash \\ brace } comma , unicode ✓', n: [1.5, -2, null], nested: { t: true } };
      await box.enqueue('default', queue, [
        { messageId: 'x"{,}', payload, headers: { 'content-type': 'application/senml+json' } },
        { messageId: 'plain', payload: 'just a string' },
        { messageId: 'null', payload: null },
      ]);
      const [a, b, c] = await box.claim(queue, { limit: 5, leaseMs: 10_000, worker: 'w' });
      assert.deepEqual([a.messageId, a.payload, a.headers], ['x"{,}', payload, { 'content-type': 'application/senml+json' }]);
      assert.deepEqual([b.payload, b.headers, c.payload], ['just a string', {}, null]);
      await assert.rejects(box.enqueue('default', queue, [{ messageId: 'u', payload: undefined }]), TypeError);
      await assert.rejects(box.enqueue('default', queue, [{ messageId: '', payload: 1 }]), TypeError);
    });

    it('claims in id order, up to the limit, and never hands out a leased message', async () => {
      await box.enqueue('default', queue, msgs(['1', '2', '3', '4', '5']));
      const first = await box.claim(queue, { limit: 2, leaseMs: 10_000, worker: 'a' });
      const second = await box.claim(queue, { limit: 10, leaseMs: 10_000, worker: 'b' });
      assert.deepEqual(
        first.map((m) => m.messageId),
        ['1', '2'],
      );
      assert.deepEqual(
        second.map((m) => m.messageId),
        ['3', '4', '5'],
      );
      assert.deepEqual(await box.claim(queue, { limit: 10, leaseMs: 10_000, worker: 'c' }), []);
      assert.ok(first[0].leaseUntil instanceof Date && first[0].leaseUntil.getTime() > Date.now() + 5_000);
    });

    it('acks only what the worker still holds', async () => {
      await box.enqueue('default', queue, msgs(['1', '2']));
      const held = await box.claim(queue, { limit: 2, leaseMs: 10_000, worker: 'a' });
      assert.equal(
        await box.ack(
          held.map((m) => m.id),
          'b',
        ),
        0,
      );
      assert.equal(await box.depth(queue), 2);
      assert.equal(
        await box.ack(
          held.map((m) => m.id),
          'a',
        ),
        2,
      );
      assert.equal(
        await box.ack(
          held.map((m) => m.id),
          'a',
        ),
        0,
      );
      assert.equal(await box.depth(queue), 0);
    });

    it('makes a message claimable again when its lease expires, and the first holder loses it', async function () {
      this.timeout(10_000);
      await box.enqueue('default', queue, msgs(['m']));
      const [first] = await box.claim(queue, { limit: 1, leaseMs: 300, worker: 'a' });
      assert.deepEqual(await box.claim(queue, { limit: 1, leaseMs: 300, worker: 'b' }), []);
      const t0 = Date.now();
      const [again] = await claimed(() => box.claim(queue, { limit: 1, leaseMs: 10_000, worker: 'b' }));
      const waited = Date.now() - t0;
      assert.ok(again, 'reclaimed after the lease expired');
      assert.ok(waited >= 150, `reclaimed only after the lease ran out (${waited} ms)`);
      assert.equal(again.id, first.id);
      assert.equal(again.attempts, 2);
      // a's late ack and nack touch nothing now that b holds the message.
      assert.equal(await box.ack([first.id], 'a'), 0);
      assert.deepEqual(await box.nack(first.id, 'a', 'late', { baseDelayMs: 10, maxDelayMs: 10, maxAttempts: 1 }), { outcome: 'not-held' });
      assert.equal(await box.ack([again.id], 'b'), 1);
      assert.equal(await box.depth(queue), 0);
    });

    it('nack backs off exponentially, then moves the message to dead_letters after maxAttempts', async function () {
      this.timeout(15_000);
      const policy = { baseDelayMs: 200, maxDelayMs: 300, maxAttempts: 3 };
      await box.enqueue('default', queue, [{ messageId: 'poison', payload: { p: 1 }, headers: { h: 'x' } }]);
      const delays: number[] = [];
      for (let attempt = 1; attempt <= 3; attempt++) {
        const [m] = await claimed(() => box.claim(queue, { limit: 1, leaseMs: 10_000, worker: 'w' }));
        assert.ok(m, `claimed for attempt ${attempt}`);
        assert.equal(m.attempts, attempt);
        assert.equal(m.lastError, attempt === 1 ? null : `failure ${attempt - 1}`);
        const result = await box.nack(m.id, 'w', new Error(`failure ${attempt}`), policy);
        if (attempt < 3) {
          assert.equal(result.outcome, 'retry');
          if (result.outcome !== 'retry') return;
          delays.push(result.delayMs);
          // Waiting out the backoff: not claimable yet, and available_at lies the delay ahead.
          assert.deepEqual(await box.claim(queue, { limit: 1, leaseMs: 10_000, worker: 'w' }), []);
          const { rows } = await db.query<{ ahead: number; claimed_by: string | null; lease_until: Date | null }>(
            `SELECT (extract(epoch FROM available_at - now()) * 1000)::float8 AS ahead, claimed_by, lease_until FROM outbox WHERE id = $1`,
            [String(m.id)],
          );
          assert.ok(rows[0].ahead > 0 && rows[0].ahead <= result.delayMs, `available_at ${rows[0].ahead} ms ahead`);
          assert.deepEqual([rows[0].claimed_by, rows[0].lease_until], [null, null]);
        } else {
          assert.deepEqual(result, { outcome: 'dead', attempts: 3 });
        }
      }
      assert.deepEqual(delays, [200, 300]); // 200, 400 capped at 300
      assert.equal(await box.depth(queue), 0);
      const { rows } = await db.query(`SELECT box, tenant_id, queue, message_id, payload, headers, attempts, last_error FROM dead_letters WHERE queue = $1`, [
        queue,
      ]);
      assert.deepEqual(rows, [
        { box: 'outbox', tenant_id: 'default', queue, message_id: 'poison', payload: { p: 1 }, headers: { h: 'x' }, attempts: 3, last_error: 'failure 3' },
      ]);
    });

    it('inbox and outbox are separate boxes', async () => {
      const inbox = new Mailbox(db, 'inbox');
      await inbox.enqueue('default', queue, msgs(['i']));
      assert.equal(await box.depth(queue), 0);
      assert.equal(await inbox.depth(queue), 1);
      const [m] = await inbox.claim(queue, { limit: 1, leaseMs: 10_000, worker: 'w' });
      assert.equal((await inbox.nack(m.id, 'w', 'no', { baseDelayMs: 0, maxDelayMs: 0, maxAttempts: 1 })).outcome, 'dead');
      const { rows } = await db.query(`SELECT box FROM dead_letters WHERE queue = $1`, [queue]);
      assert.deepEqual(rows, [{ box: 'inbox' }]);
    });

    it('enqueues inside a caller transaction and rolls back with it (transactional outbox)', async () => {
      await assert.rejects(
        db.transaction(async (tx) => {
          await new Mailbox(tx, 'outbox').enqueue('default', queue, msgs(['t']));
          throw new Error('business change failed');
        }),
        /business change failed/,
      );
      assert.equal(await box.depth(queue), 0);
      await db.transaction(async (tx) => new Mailbox(tx, 'outbox').enqueue('default', queue, msgs(['t'])));
      assert.equal(await box.depth(queue), 1);
    });

    it('delays a message enqueued with delayMs', async function () {
      this.timeout(5_000);
      await box.enqueue('default', queue, msgs(['later']), { delayMs: 300 });
      assert.deepEqual(await box.claim(queue, { limit: 1, leaseMs: 1_000, worker: 'w' }), []);
      const got = await claimed(() => box.claim(queue, { limit: 1, leaseMs: 1_000, worker: 'w' }));
      assert.equal(got[0]?.messageId, 'later');
    });
  });
}
