/**
 * API quotas on the real PostgreSQL: two counters on one database (two instances) share a key's
 * quota; bytes served count against the byte quota; windows are per key.
 */
import { strict as assert } from 'node:assert';
import type { SqlClient } from '../../nodes/core/db/sql';
import { QuotaCounter, type QuotaPolicy } from '../../nodes/core/api/quota';
import { ENGINES, withMigratedDatabase } from '../support/engines';

for (const engine of ENGINES) {
  describe(`API quotas (${engine.name})`, function () {
    this.timeout(30_000);
    let db: SqlClient;
    withMigratedDatabase(engine, (d) => (db = d));
    /** A clock the test moves: windows are fixed spans of time. */
    let now = Date.parse('2026-03-02T08:00:00Z');
    const policy: QuotaPolicy = { requests: 5, bytes: 1000, periodSeconds: 3600 };
    const counter = () =>
      new QuotaCounter(
        () => Promise.resolve(db),
        policy,
        () => now,
        60_000,
      );

    it('two instances count into one quota per key and window; the next window starts afresh', async () => {
      const [a, b] = [counter(), counter()];
      const key = { tenant: 'acme', id: 1 };
      const states = [];
      for (let i = 0; i < 6; i++) states.push(await (i % 2 ? a : b).charge(key, 0));
      assert.deepEqual(
        states.map((s) => [s.allowed, s.remaining]),
        [
          [true, 4],
          [true, 3],
          [true, 2],
          [true, 1],
          [true, 0],
          [false, 0],
        ],
      );
      assert.equal(states[5].exceeded, 'requests');
      assert.equal(states[5].resetAt, Date.parse('2026-03-02T09:00:00Z'));
      assert.equal((await a.charge({ tenant: 'acme', id: 2 }, 0)).allowed, true, 'another key has its own quota');
      now += 3600_000;
      assert.deepEqual([(await b.charge(key, 0)).remaining], [4]);
    });

    it('counts the bytes of answers (with the next request, or a flush) and refuses once they are used up', async () => {
      const c = counter();
      const key = { tenant: 'acme', id: 3 };
      assert.equal((await c.charge(key, 100)).allowed, true);
      c.addBytes(key, 600);
      assert.equal((await c.charge(key, 0)).allowed, true, '700 of 1000');
      c.addBytes(key, 300);
      await c.close();
      const s = await counter().charge(key, 0);
      assert.deepEqual([s.allowed, s.exceeded], [false, 'bytes']);
      const { rows } = await db.query<{ bytes: number }>('SELECT bytes FROM api_usage WHERE key_id = 3');
      assert.equal(Number(rows[0].bytes), 1000);
    });

    it('concurrent requests of one key share upserts and each gets its own place in the quota', async () => {
      const c = counter();
      const key = { tenant: 'acme', id: 4 };
      const states = await Promise.all(Array.from({ length: 12 }, () => c.charge(key, 0)));
      assert.equal(states.filter((s) => s.allowed).length, 5);
      assert.deepEqual(
        states.filter((s) => s.allowed).map((s) => s.remaining),
        [4, 3, 2, 1, 0],
      );
      const { rows } = await db.query<{ requests: number }>('SELECT requests FROM api_usage WHERE key_id = 4');
      assert.equal(Number(rows[0].requests), 12);
    });
  });
}
