/** The drain loop behind conflux-mailbox: bounded hand-out, batched acks, nacks, lost messages coming back. */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { Drainer } from '../../nodes/core/mailbox/drainer';
import { Mailbox, type ClaimedMessage } from '../../nodes/core/mailbox/mailbox';
import { ENGINES, withMigratedDatabase } from '../support/engines';
import { elapse, until } from '../support/wait';

const RETRY = { baseDelayMs: 10, maxDelayMs: 10, maxAttempts: 2 };

for (const engine of ENGINES) {
  describe(`mailbox drainer on ${engine.name}`, function () {
    let db: SqlClient;
    let box: Mailbox;
    let n = 0;
    let queue: string;
    const drainers: Drainer[] = [];

    withMigratedDatabase(engine, (opened) => {
      db = opened;
      box = new Mailbox(db, 'outbox');
    });
    beforeEach(() => void (queue = `d${++n}`));
    afterEach(async () => {
      await Promise.all(drainers.splice(0).map((d) => d.stop()));
    });

    function drainer(deliver: (m: ClaimedMessage) => void, extra: Partial<ConstructorParameters<typeof Drainer>[1]> = {}): Drainer {
      const d = new Drainer(box, { queue, worker: `w${n}`, capacity: 10, leaseMs: 60_000, pollMs: 20, retry: RETRY, deliver, ...extra });
      drainers.push(d);
      d.start();
      return d;
    }

    it('never has more than capacity messages out, and acked ones leave the box', async () => {
      await box.enqueue(
        'default',
        queue,
        Array.from({ length: 35 }, (_, i) => ({ messageId: `m${i}`, payload: i })),
      );
      const got: ClaimedMessage[] = [];
      const d = drainer((m) => got.push(m));
      await until('10 handed out', () => got.length === 10);
      await elapse(60); // a negative check: no eleventh is handed out
      assert.equal(got.length, 10, 'handed out more than its capacity');
      await until(
        () => `all 35 handed out and acked (${got.length}, ${d.inFlight} in flight)`,
        async () => {
          const out = got.filter((m) => !(m as ClaimedMessage & { acked?: boolean }).acked);
          await Promise.all(
            out.map((m) => {
              (m as ClaimedMessage & { acked?: boolean }).acked = true;
              return d.ack(m.id);
            }),
          );
          return got.length >= 35 && d.inFlight === 0;
        },
      );
      assert.deepEqual(
        got.map((m) => m.payload).sort((a, b) => Number(a) - Number(b)),
        Array.from({ length: 35 }, (_, i) => i),
      );
      await until('the box to be empty', async () => (await box.depth(queue)) === 0);
    });

    it('a deferred message is handed out again when it is due, not at the next poll', async () => {
      await box.enqueue('default', queue, [{ messageId: 'busy', payload: 'later' }]);
      const handedOut: number[] = [];
      const d = drainer(
        (m) => {
          handedOut.push(Date.now());
          if (handedOut.length === 1) void d.defer([m.id], 150);
          else void d.ack(m.id);
        },
        { pollMs: 600_000 },
      );
      await until('handed out a second time', () => handedOut.length === 2);
      const after = handedOut[1] - handedOut[0];
      assert.ok(after >= 140, `handed out again after ${after} ms, before the 150 ms it was deferred for`);
    });

    it('a nacked message comes back after its backoff, then goes to dead_letters', async () => {
      await box.enqueue('default', queue, [{ messageId: 'x', payload: 'fails' }]);
      const seen: number[] = [];
      const outcomes: string[] = [];
      const d = drainer((m) => {
        seen.push(m.attempts);
        void d.nack(m.id, new Error('peer said 500')).then((r) => outcomes.push(r.outcome));
      });
      await until('a retry, then a dead letter', () => outcomes.length === 2);
      assert.deepEqual(seen, [1, 2]);
      assert.deepEqual(outcomes, ['retry', 'dead']);
      const dead = await db.query<{ last_error: string }>('SELECT last_error FROM dead_letters WHERE queue = $1', [queue]);
      assert.deepEqual(
        dead.rows.map((r) => r.last_error),
        ['peer said 500'],
      );
    });

    it('a message never settled frees its slot and is handed out again when its lease ends', async () => {
      await box.enqueue('default', queue, [{ messageId: 'lost', payload: 1 }]);
      const seen: number[] = [];
      drainer((m) => seen.push(m.attempts), { capacity: 1, leaseMs: 150 });
      await until('the message handed out again after its lease', () => seen.length === 2);
      assert.deepEqual(seen, [1, 2]);
    });

    it('after stop it claims nothing more', async () => {
      const got: unknown[] = [];
      const d = drainer((m) => got.push(m.payload));
      await d.stop();
      await box.enqueue('default', queue, [{ messageId: 'late', payload: 1 }]);
      await elapse(100); // a negative check: a stopped drainer claims nothing in this window
      assert.deepEqual(got, []);
    });
  });
}
