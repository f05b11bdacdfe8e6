/**
 * conflux-schedule's claims in schedule_runs (migration 008) on the real PostgreSQL and on PGlite:
 * of many claims of one firing exactly one wins (on PostgreSQL from two connection pools, as two
 * instances would), a run going makes the next firing `busy` (and recorded skipped) until it is
 * finished or its lease runs out, and the newest firing is what a restart compares with.
 */
import { strict as assert } from 'node:assert';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { databaseLedger } from '../../nodes/core/schedule/ledger';
import { ENGINES, withMigratedDatabase } from '../support/engines';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';

const T0 = Date.parse('2025-01-01T00:00:00Z');

for (const engine of ENGINES) {
  describe(`schedule ledger on ${engine.name}`, () => {
    let db: SqlClient;
    withMigratedDatabase(engine, (opened) => (db = opened));
    const ledger = () => databaseLedger(() => Promise.resolve(db));

    it('lets exactly one of many concurrent claims of a firing run it', async () => {
      const ledgers = [ledger(), ledger(), ledger()];
      const outcomes = await Promise.all(Array.from({ length: 12 }, (_, i) => ledgers[i % 3].claim('one-claim', T0, `owner-${i}`, 60_000)));
      assert.equal(outcomes.filter((o) => o === 'claimed').length, 1);
      assert.equal(outcomes.filter((o) => o === 'taken').length, 11);
      const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM schedule_runs WHERE schedule_key = 'one-claim'");
      assert.equal(rows[0].n, 1);
    });

    it('answers busy while a run is going, records the firing skipped, and claims again once it finished', async () => {
      const l = ledger();
      assert.equal(await l.claim('overlap', T0, 'a', 60_000), 'claimed');
      assert.equal(await l.claim('overlap', T0 + 1000, 'b', 60_000), 'busy');
      assert.equal(await l.claim('overlap', T0 + 1000, 'c', 60_000), 'taken', 'a skipped firing is not run by anyone else');
      await l.finish('overlap', T0, 'done');
      assert.equal(await l.claim('overlap', T0 + 2000, 'b', 60_000), 'claimed');
      const { rows } = await db.query<{ t: Date; outcome: string }>(
        "SELECT fire_time AS t, outcome FROM schedule_runs WHERE schedule_key = 'overlap' ORDER BY 1",
      );
      assert.deepEqual(
        rows.map((r) => [r.t.getTime() - T0, r.outcome]),
        [
          [0, 'done'],
          [1000, 'skipped'],
          [2000, 'running'],
        ],
      );
      assert.equal(await l.lastFire('overlap'), T0 + 2000);
      assert.equal(await l.lastFire('never-fired'), undefined);
    });

    it('frees the schedule when the lease of a run that never finished runs out (an instance died)', async () => {
      const l = ledger();
      assert.equal(await l.claim('lease', T0, 'dead', 300), 'claimed');
      assert.equal(await l.claim('lease', T0 + 1000, 'live', 300), 'busy');
      // The lease is the subject: it runs out on the database's clock.
      let n = 2;
      await until('the lease to run out', async () => (await l.claim('lease', T0 + n++ * 1000, 'live', 300)) === 'claimed', 10_000);
    });
  });
}

describe('schedule ledger: two instances on one PostgreSQL', () => {
  it('gives each of many firings to exactly one of two pools', async () => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([openSql({ connectionString: url, poolSize: 4 }), openSql({ connectionString: url, poolSize: 4 })]);
    try {
      await Promise.all([migrate(a), migrate(b)]);
      const la = databaseLedger(() => Promise.resolve(a));
      const lb = databaseLedger(() => Promise.resolve(b));
      const won: string[] = [];
      for (let i = 0; i < 30; i++) {
        const fire = T0 + i * 1000;
        const [x, y] = await Promise.all([la.claim('pools', fire, 'a', 60_000), lb.claim('pools', fire, 'b', 60_000)]);
        assert.deepEqual([x, y].sort(), ['claimed', 'taken'], `firing ${i}: ${x} / ${y}`);
        won.push(x === 'claimed' ? 'a' : 'b');
        await (x === 'claimed' ? la : lb).finish('pools', fire, 'done');
      }
      console.log(`      30 firings: ${won.filter((w) => w === 'a').length} claimed by pool a, ${won.filter((w) => w === 'b').length} by pool b`);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
