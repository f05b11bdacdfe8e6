/**
 * The SQL long-term store (hour and day rollups) on PostgreSQL 15 and PGlite: count, min, max,
 * sum, avg and last within a batch and across batches, late records, UTC buckets across
 * midnight, non-numeric records, duplicates inside one batch, queries and pagination; the fold
 * inside another store's transaction (addRollups), which commits or rolls back with it.
 */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { addRollups, createSqlLongTerm } from '../../nodes/core/stores/long-term-sql';
import type { LongTermStore, Reading, Rollup, RollupSize } from '../../nodes/core/stores/types';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { ENGINES, withMigratedDatabase } from '../support/engines';

/** 2023-11-14T00:00:00Z: a UTC midnight. */
const MIDNIGHT = Date.UTC(2023, 10, 14) / 1000;
const HOUR = 3_600;
const DAY = 86_400;

const at = (tenant: string, n: string, t: number, value: Partial<ResolvedRecord> = {}): Reading => ({ tenant, record: { n, t, ...value } });
const v = (tenant: string, n: string, t: number, value: number) => at(tenant, n, t, { v: value });

/** The statistics of a rollup, without its identity. */
const stats = (r: Rollup | undefined) => r && { count: r.count, min: r.min, max: r.max, sum: r.sum, avg: r.avg, last: r.last, lastT: r.lastT };

for (const engine of ENGINES) {
  describe(`long-term store on ${engine.name}`, function () {
    let db: SqlClient;
    let store: LongTermStore;
    let n = 0;
    let tenant: string;

    withMigratedDatabase(engine, (opened) => {
      db = opened;
      store = createSqlLongTerm(db);
    });
    beforeEach(() => void (tenant = `tenant${++n}`));

    const all = async (size: RollupSize, name = 'dev/t') => (await store.query({ tenant, size, name })).items;

    it('folds one batch into count, min, max, sum, avg and last', async () => {
      const t = MIDNIGHT + 10 * HOUR;
      const folded = await store.add([
        v(tenant, 'dev/t', t + 60, 20),
        v(tenant, 'dev/t', t + 600, 24),
        v(tenant, 'dev/t', t + 300, 16),
        v(tenant, 'dev/t', t + 120.5, 22),
      ]);
      assert.equal(folded, 4);
      const [hour] = await all('hour');
      assert.deepEqual(hour, { n: 'dev/t', size: 'hour', bucket: t, count: 4, min: 16, max: 24, sum: 82, avg: 20.5, last: 24, lastT: t + 600 });
      const [day] = await all('day');
      assert.deepEqual(day, { ...hour, size: 'day', bucket: MIDNIGHT });
    });

    it('adds later batches to the same buckets', async () => {
      const t = MIDNIGHT + 5 * HOUR;
      await store.add([v(tenant, 'dev/t', t + 10, 5), v(tenant, 'dev/t', t + 20, 7)]);
      await store.add([v(tenant, 'dev/t', t + 30, 1), v(tenant, 'dev/t', t + 40, 11)]);
      await store.add([v(tenant, 'dev/t', t + 50, 6)]);
      const [hour] = await all('hour');
      assert.deepEqual(stats(hour), { count: 5, min: 1, max: 11, sum: 30, avg: 6, last: 6, lastT: t + 50 });
      assert.equal((await all('day'))[0].count, 5);
    });

    it('a late (older) record counts but does not replace last', async () => {
      const t = MIDNIGHT + 7 * HOUR;
      await store.add([v(tenant, 'dev/t', t + 100, 10)]);
      await store.add([v(tenant, 'dev/t', t + 50, 99)]); // arrives later, measured earlier
      const [hour] = await all('hour');
      assert.deepEqual(stats(hour), { count: 2, min: 10, max: 99, sum: 109, avg: 54.5, last: 10, lastT: t + 100 });
      // Within one batch too: last is the latest by time, not by position.
      await store.add([v(tenant, 'dev/u', t + 300, 3), v(tenant, 'dev/u', t + 200, 2)]);
      assert.deepEqual(stats((await all('hour', 'dev/u'))[0]), { count: 2, min: 2, max: 3, sum: 5, avg: 2.5, last: 3, lastT: t + 300 });
      // A newer one does replace it, to the microsecond.
      await store.add([v(tenant, 'dev/t', t + 100.000001, 12)]);
      assert.deepEqual(stats((await all('hour'))[0]), { count: 3, min: 10, max: 99, sum: 121, avg: 121 / 3, last: 12, lastT: t + 100.000001 });
    });

    it('buckets by UTC hour and day across midnight', async () => {
      const readings = [
        v(tenant, 'dev/t', MIDNIGHT - 1_800, 1), // 23:30 the day before
        v(tenant, 'dev/t', MIDNIGHT - 0.000001, 2), // 23:59:59.999999
        v(tenant, 'dev/t', MIDNIGHT, 3), // 00:00 exactly: the new day's first bucket
        v(tenant, 'dev/t', MIDNIGHT + 1_800, 4), // 00:30
        v(tenant, 'dev/t', MIDNIGHT + HOUR + 1, 5), // 01:00:01
      ];
      assert.equal(await store.add(readings), 5);
      const hours = await all('hour');
      assert.deepEqual(
        hours.map((r) => [r.bucket, r.count, r.sum]),
        [
          [MIDNIGHT - HOUR, 2, 3],
          [MIDNIGHT, 2, 7],
          [MIDNIGHT + HOUR, 1, 5],
        ],
      );
      const days = await all('day');
      assert.deepEqual(
        days.map((r) => [r.bucket, r.count, r.sum, r.last]),
        [
          [MIDNIGHT - DAY, 2, 3, 2],
          [MIDNIGHT, 3, 12, 5],
        ],
      );
      // The same buckets as date_trunc in UTC.
      const { rows } = await db.query<{ hour: number; day: number }>(
        `SELECT extract(epoch FROM date_trunc('hour', to_timestamp($1) AT TIME ZONE 'UTC'))::float8 AS hour,
                extract(epoch FROM date_trunc('day', to_timestamp($1) AT TIME ZONE 'UTC'))::float8 AS day`,
        [MIDNIGHT - 1],
      );
      assert.deepEqual(rows[0], { hour: MIDNIGHT - HOUR, day: MIDNIGHT - DAY });
    });

    it('ignores string, boolean, data and sum-only records', async () => {
      const t = MIDNIGHT + HOUR;
      const folded = await store.add([
        at(tenant, 'dev/s', t, { vs: '12' }),
        at(tenant, 'dev/b', t, { vb: true }),
        at(tenant, 'dev/d', t, { vd: 'AQID' }),
        at(tenant, 'dev/sum', t, { s: 5 }),
        at(tenant, 'dev/nan', t, { v: NaN }),
        v(tenant, 'dev/t', t, 1.5),
      ]);
      assert.equal(folded, 1);
      const { items } = await store.query({ tenant, size: 'hour', prefix: '' });
      assert.deepEqual(
        items.map((r) => r.n),
        ['dev/t'],
      );
      assert.equal(await store.add([at(tenant, 'dev/s', t, { vs: 'x' })]), 0);
      assert.equal(await store.add([]), 0);
    });

    it('pre-aggregates duplicates of one bucket inside a batch (one upsert touches each row once)', async () => {
      const t = MIDNIGHT + 3 * HOUR;
      // 1,000 readings of one name in one hour, plus the same name in another tenant.
      const readings = Array.from({ length: 1_000 }, (_, i) => v(tenant, 'dev/t', t + i, i));
      readings.push(v(`${tenant}-b`, 'dev/t', t, 1_000));
      assert.equal(await store.add(readings), 1_001);
      assert.deepEqual(stats((await all('hour'))[0]), { count: 1_000, min: 0, max: 999, sum: 499_500, avg: 499.5, last: 999, lastT: t + 999 });
      assert.equal((await all('day'))[0].count, 1_000);
      assert.equal((await store.query({ tenant: `${tenant}-b`, size: 'hour', name: 'dev/t' })).items[0].count, 1);
      // The upsert needed that: without pre-aggregation the engine refuses to touch a row twice.
      const twice = `INSERT INTO rollups (tenant_id, name, size, bucket, count) VALUES ($1, 'dup', 'hour', to_timestamp(0), 1), ($1, 'dup', 'hour', to_timestamp(0), 1)
                     ON CONFLICT (tenant_id, name, size, bucket) DO UPDATE SET count = rollups.count + excluded.count`;
      await assert.rejects(db.query(twice, [tenant]), (err: { code?: string }) => err.code === '21000');
    });

    it('folds inside a transaction: rolled back with it, committed with it', async () => {
      const t = MIDNIGHT + 7 * HOUR;
      await assert.rejects(
        db.transaction(async (tx) => {
          assert.equal(await addRollups(tx, [v(tenant, 'dev/t', t, 5)]), 1);
          throw new Error('the readings failed');
        }),
        /the readings failed/,
      );
      assert.deepEqual(await all('hour'), [], 'nothing counted for a failed write');
      await db.transaction((tx) => addRollups(tx, [v(tenant, 'dev/t', t, 5), at(tenant, 'dev/t', t + 1, { vs: 'x' })]));
      assert.equal((await all('hour'))[0].count, 1);
    });

    it('counts what it is given: the same reading added twice counts twice (only the time-series store knows what is new)', async () => {
      const t = MIDNIGHT + 8 * HOUR;
      await store.add([v(tenant, 'dev/t', t, 5)]);
      await store.add([v(tenant, 'dev/t', t, 5)]);
      assert.equal((await all('hour'))[0].count, 2);
    });

    it('two concurrent batches over the same buckets both count', async () => {
      const t = MIDNIGHT + 9 * HOUR;
      const names = Array.from({ length: 20 }, (_, i) => `dev/${i}`);
      const batch = (value: number) => names.flatMap((name) => [v(tenant, name, t + value, value), v(tenant, name, t + DAY + value, value)]);
      await Promise.all([1, 2, 3, 4].map((k) => store.add(batch(k))));
      const { items } = await store.query({ tenant, size: 'hour', prefix: 'dev/' });
      assert.equal(items.length, 40);
      assert.ok(
        items.every((r) => r.count === 4 && r.sum === 10 && r.last === 4),
        JSON.stringify(items[0]),
      );
    });

    it('queries one size by name or literal prefix, in [from, to), in (bucket, n) order, per tenant', async () => {
      const names = ['a_b/t', 'axb/t', 'a%b/t', 'a/t', 'b/t'];
      const readings: Reading[] = [];
      for (let h = 0; h < 6; h++) names.forEach((name, i) => readings.push(v(tenant, name, MIDNIGHT + h * HOUR + i, h)));
      readings.push(v(`${tenant}-other`, 'a_b/t', MIDNIGHT, 100));
      await store.add(readings);
      const q = async (query: Record<string, unknown>) =>
        (await store.query({ tenant, size: 'hour', ...query } as never)).items.map((r) => `${r.n}@${(r.bucket - MIDNIGHT) / HOUR}`);
      assert.deepEqual(await q({ name: 'a_b/t', from: MIDNIGHT + HOUR, to: MIDNIGHT + 3 * HOUR }), ['a_b/t@1', 'a_b/t@2']);
      assert.deepEqual(await q({ prefix: 'a_', to: MIDNIGHT + 2 * HOUR }), ['a_b/t@0', 'a_b/t@1']);
      assert.deepEqual(await q({ prefix: 'a%', from: MIDNIGHT + 5 * HOUR }), ['a%b/t@5']);
      assert.deepEqual(await q({ prefix: 'a', from: MIDNIGHT + 4 * HOUR + 1, to: MIDNIGHT + 6 * HOUR }), ['a%b/t@5', 'a/t@5', 'a_b/t@5', 'axb/t@5']);
      assert.deepEqual(await q({ prefix: '', from: MIDNIGHT + 5 * HOUR }), ['a%b/t@5', 'a/t@5', 'a_b/t@5', 'axb/t@5', 'b/t@5']);
      const day = await store.query({ tenant, size: 'day', prefix: '' });
      assert.deepEqual(
        day.items.map((r) => [r.n, r.count]),
        [
          ['a%b/t', 6],
          ['a/t', 6],
          ['a_b/t', 6],
          ['axb/t', 6],
          ['b/t', 6],
        ],
      );
      assert.deepEqual(
        (await store.query({ tenant: `${tenant}-other`, size: 'hour', prefix: '' })).items.map((r) => r.sum),
        [100],
      );

      // Pagination over all 30 hour rollups, 4 at a time: each once, in (bucket, n) order.
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.query({ tenant, size: 'hour', prefix: '', limit: 4, cursor });
        assert.ok(page.items.length <= 4);
        seen.push(...page.items.map((r) => `${(r.bucket - MIDNIGHT) / HOUR}|${r.n}`));
        cursor = page.cursor;
      } while (cursor);
      const expected = [0, 1, 2, 3, 4, 5].flatMap((h) => [...names].sort().map((name) => `${h}|${name}`));
      assert.deepEqual(seen, expected);
      // And by name.
      const first = await store.query({ tenant, size: 'hour', name: 'b/t', limit: 5 });
      const rest = await store.query({ tenant, size: 'hour', name: 'b/t', limit: 5, cursor: first.cursor });
      assert.deepEqual([first.items.length, rest.items.length, rest.cursor], [5, 1, undefined]);

      for (const limit of [0, 10_001, 2.5]) await assert.rejects(store.query({ tenant, size: 'hour', prefix: '', limit }), RangeError);
      await assert.rejects(store.query({ tenant, size: 'week' as RollupSize, prefix: '' }), RangeError);
      await assert.rejects(store.query({ tenant, size: 'hour', prefix: '', cursor: 'garbage' }), RangeError);
      await assert.rejects(store.query({ tenant: '', size: 'hour', prefix: '' }), TypeError);
    });
  });
}
