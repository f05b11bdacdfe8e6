/**
 * The SQL time-series store on PostgreSQL 15 and PGlite: every value kind read back exactly,
 * microsecond times, tenants, names and prefixes, time bounds, keyset pagination, limits,
 * retention in chunks, COPY through a staging table on PostgreSQL, and a reading stored (and
 * rolled up) once, however often it is sent, also by concurrent writers.
 */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { openCopier, type Copier, type CopyFrom, type CopyTransaction } from '../../nodes/core/db/copy';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { createSqlTimeSeries } from '../../nodes/core/stores/time-series-sql';
import type { RangeQuery, Reading, TimeSeriesStore } from '../../nodes/core/stores/types';
import { postgresUrl } from '../support/servers';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';

const T0 = 1_700_000_000;

/** The URL of the database db is connected to (the engine opened a fresh one). */
async function urlOf(db: SqlClient): Promise<string> {
  const { rows } = await db.query<{ name: string }>('SELECT current_database() AS name');
  const url = new URL(postgresUrl());
  url.pathname = `/${rows[0].name}`;
  return url.toString();
}

/** A copier whose transactions count the COPYs in them and the rows the server reported copied; `alter` may change the data. */
function spy(copier: Copier, alter: (data: Iterable<string | Buffer>) => Iterable<string | Buffer> = (d) => d) {
  const wrapped = {
    calls: 0,
    rows: 0,
    transaction: <T>(fn: (tx: CopyTransaction) => Promise<T>): Promise<T> =>
      copier.transaction((tx) => {
        const copyFrom: CopyFrom = async (statement, data) => {
          wrapped.calls++;
          const rows = await tx.copyFrom(statement, alter(data));
          wrapped.rows += rows;
          return rows;
        };
        return fn({ ...tx, copyFrom });
      }),
  };
  return wrapped;
}

/** A SqlClient that counts the statements passed to query. */
function counting(db: SqlClient): SqlClient & { statements: string[] } {
  const statements: string[] = [];
  return { ...db, kind: db.kind, statements, query: (text, params) => (statements.push(text), db.query(text, params)) };
}

/** Every page of a query, following cursors; fails if a query returns more than limit items. */
async function allPages(store: TimeSeriesStore, query: RangeQuery): Promise<{ items: ResolvedRecord[]; pages: number }> {
  const items: ResolvedRecord[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await store.query({ ...query, cursor });
    assert.ok(page.items.length <= (query.limit ?? 1000));
    items.push(...page.items);
    cursor = page.cursor;
    pages++;
    assert.ok(pages < 10_000, 'pagination ends');
  } while (cursor);
  return { items, pages };
}

const at = (tenant: string, n: string, t: number, value: Partial<ResolvedRecord> = { v: 1 }): Reading => ({ tenant, record: { n, t, ...value } });

for (const engine of ENGINES) {
  describe(`time-series store on ${engine.name}`, function () {
    let db: SqlClient;
    let copier: Copier | undefined;
    let copy: ReturnType<typeof spy> | undefined;
    /** On PostgreSQL: every batch through COPY; on PGlite: the INSERT. */
    let store: TimeSeriesStore;
    /** The INSERT … unnest path on either engine. */
    let inserting: TimeSeriesStore;
    let n = 0;
    let tenant: string;

    before(async function () {
      this.timeout(OPEN_TIMEOUT_MS);
      db = await engine.open();
      await migrate(db);
      if (db.kind === 'postgres') {
        copier = openCopier({ connectionString: await urlOf(db) });
        copy = spy(copier);
      }
      store = createSqlTimeSeries(db, { copier: copy, copyMinRows: 1 });
      inserting = createSqlTimeSeries(db);
    });
    after(async () => {
      await copier?.close();
      await db?.close();
    });
    // Each test writes under its own tenant: tests do not see each other's rows.
    beforeEach(() => void (tenant = `tenant${++n}`));

    it('has the engine kind', () => {
      assert.equal(store.kind, engine.name === 'PostgreSQL' ? 'postgres' : 'pglite');
    });

    it('reads back every value kind exactly, through each write path', async () => {
      const records: ResolvedRecord[] = [
        { n: 'dev1/temp/t', t: T0, v: 21.5, u: 'Cel' },
        { n: 'dev1/temp/t', t: T0 + 1, v: -0.1 + 0.2, u: 'Cel', ut: 60 },
        { n: 'dev1/big/x', t: T0 + 2, v: 1.7976931348623157e308 },
        { n: 'dev1/tiny/x', t: T0 + 3, v: 5e-324, s: 12.25 },
        { n: 'dev1/log/msg', t: T0 + 4, vs: 'tab\there, newline\nthere, cr\r, backslash \\ quote " comma , brace {} ✓ 😀' },
        { n: 'dev1/log/empty', t: T0 + 5, vs: '' },
        { n: 'dev1/door/open', t: T0 + 6, vb: true },
        { n: 'dev1/door/open', t: T0 + 7, vb: false },
        { n: 'dev1/raw/blob', t: T0 + 8, vd: 'AQID_-8' },
        { n: 'dev1/energy/sum', t: T0 + 9, s: 1234.5, u: 'J' },
        { n: 'dev1/old/v', t: T0 + 10, v: 3, bver: 5 },
        { n: 'dev1/tab\tname\\x', t: T0 + 11, v: 4, u: 'u\\\t' },
        { n: 'dev1/log/long', t: T0 + 11.5, vs: 'ü✓😀'.repeat(30_000) }, // bigger than one 64 kB COPY chunk
      ];
      // Fractional seconds to the microsecond, and one below it that rounds.
      const times = [T0 + 12.123456, T0 + 13.000001, T0 + 14.9999995, 86_400.5, -1.25];
      times.forEach((t, i) => records.push({ n: 'dev1/time/t', t, v: i }));
      for (const [path, s, expectCopy] of [
        ['COPY or INSERT as configured', store, true],
        ['INSERT', inserting, false],
      ] as const) {
        const t = `${tenant}-${path.length}`;
        const before = copy?.calls ?? 0;
        const result = await s.append(records.map((record) => ({ tenant: t, record })));
        assert.deepEqual(result, { written: records.length, rejected: [] });
        if (copy) assert.equal(copy.calls - before, expectCopy ? 1 : 0, `${path}: COPY calls`);
        const { items } = await s.query({ tenant: t, prefix: '' });
        const expected = records.map((r) => ({ ...r, t: Math.round(r.t * 1e6) / 1e6 })).sort((a, b) => a.t - b.t || (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
        assert.deepEqual(items, expected, path);
        // Microseconds exactly: rounded on the way in, the same number on the way out.
        const times = items.filter((r) => r.n === 'dev1/time/t').map((r) => r.t);
        assert.deepEqual(times, [-1.25, 86_400.5, T0 + 12.123456, T0 + 13.000001, 1_700_000_015]);
        assert.ok(Object.is(items.find((r) => r.n === 'dev1/tiny/x')?.v, 5e-324));
      }
    });

    it('refuses for good what the table cannot hold, and writes the rest', async () => {
      const good = at(tenant, 'ok/v', T0, { v: 1 });
      const bad: [Reading, RegExp][] = [
        [at(tenant, 'two/values', T0, { v: 1, vs: 'x' }), /at most one/],
        [at(tenant, 'no/value', T0, { u: 'Cel' }), /needs one of/],
        [at(tenant, 'nul/text', T0, { vs: 'a\u0000b' }), /vs/],
        [at(tenant, 'nan', T0, { v: NaN }), /v must be/],
        [at(tenant, 'far/future', 1e12, { v: 1 }), /years/],
        [at('', 'no/tenant', T0, { v: 1 }), /tenant/],
        [at(tenant, '', T0, { v: 1 }), /n must be/],
        // Too long for an index entry: it would fail the whole batch.
        [at(tenant, 'x'.repeat(1_025), T0, { v: 1 }), /longer than 1024 bytes/],
        [at(tenant, 'é'.repeat(513), T0, { v: 1 }), /longer than 1024 bytes/],
        [at('t'.repeat(257), 'ok/v', T0, { v: 1 }), /tenant is longer/],
      ];
      for (const s of [store, inserting]) {
        const result = await s.append([bad[0][0], good, ...bad.slice(1).map(([r]) => r)]);
        assert.equal(result.written, s === store ? 1 : 0, 'the good reading is new the first time only');
        assert.deepEqual(
          result.rejected.map((r) => r.reading),
          bad.map(([r]) => r),
        );
        result.rejected.forEach((r, i) => assert.match(r.reason, bad[i][1]));
      }
      assert.deepEqual((await store.query({ tenant, prefix: '' })).items, [good.record]);
      assert.deepEqual(await store.append([]), { written: 0, rejected: [] });
    });

    it('keeps tenants apart', async () => {
      const other = `${tenant}-other`;
      await store.append([at(tenant, 'dev/t', T0, { v: 1 }), at(other, 'dev/t', T0, { v: 2 }), at(other, 'dev/u', T0, { v: 3 })]);
      assert.deepEqual(
        (await store.query({ tenant, name: 'dev/t' })).items.map((r) => r.v),
        [1],
      );
      assert.deepEqual(
        (await store.query({ tenant, prefix: '' })).items.map((r) => r.v),
        [1],
      );
      assert.deepEqual(
        (await store.query({ tenant: other, prefix: 'dev/' })).items.map((r) => r.v),
        [2, 3],
      );
      assert.deepEqual((await store.query({ tenant: `${tenant}-none`, prefix: '' })).items, []);
      await assert.rejects(store.query({ tenant: '', prefix: '' }), TypeError);
    });

    it('matches a name exactly and a prefix literally (%, _ and \\ are not wildcards)', async () => {
      const names = ['dev_1/t', 'devX1/t', 'dev%1/t', 'dev%%/t', 'dev\\1/t', 'dev/t', 'dev', 'de', 'dew/t', 'dev_1/t/x'];
      await store.append(names.map((name, i) => at(tenant, name, T0 + i, { v: i })));
      const names$ = async (q: Partial<RangeQuery>) => (await store.query({ tenant, ...q })).items.map((r) => r.n);
      assert.deepEqual(await names$({ name: 'dev_1/t' }), ['dev_1/t']);
      assert.deepEqual(await names$({ name: 'dev%' }), []);
      assert.deepEqual(await names$({ prefix: 'dev_' }), ['dev_1/t', 'dev_1/t/x']);
      assert.deepEqual(await names$({ prefix: 'dev%' }), ['dev%1/t', 'dev%%/t']);
      assert.deepEqual(await names$({ prefix: 'dev%%' }), ['dev%%/t']);
      assert.deepEqual(await names$({ prefix: 'dev\\' }), ['dev\\1/t']);
      assert.deepEqual(
        await names$({ prefix: 'dev' }),
        names.filter((x) => x.startsWith('dev')),
      );
      assert.deepEqual(await names$({ prefix: '' }), names);
      assert.deepEqual(await names$({ prefix: 'dev_1/t' }), ['dev_1/t', 'dev_1/t/x']);
      assert.deepEqual(await names$({ prefix: 'dev\u0000' }), []); // text the table cannot hold matches nothing
      await assert.rejects(store.query({ tenant, name: 'a', prefix: 'a' }), TypeError);
      await assert.rejects(store.query({ tenant }), TypeError);
    });

    it('takes from inclusive and to exclusive, to the microsecond', async () => {
      const times = [T0, T0 + 0.999999, T0 + 1, T0 + 1.000001, T0 + 2, T0 + 3];
      await store.append(times.map((t, i) => at(tenant, 'dev/t', t, { v: i })));
      const vs = async (from?: number, to?: number) => (await store.query({ tenant, name: 'dev/t', from, to })).items.map((r) => r.v);
      assert.deepEqual(await vs(T0 + 1, T0 + 2), [2, 3]);
      assert.deepEqual(await vs(T0 + 0.999999, T0 + 1.000001), [1, 2]);
      // Bounds round to the microsecond too (not truncate): 1.0000006 is 1.000001, 1.0000002 is 1.
      assert.deepEqual(await vs(T0 + 1.0000006, T0 + 2.0000006), [3, 4]);
      assert.deepEqual(await vs(T0 + 1.0000002, T0 + 2.0000002), [2, 3]);
      assert.deepEqual(await vs(T0 + 2), [4, 5]);
      assert.deepEqual(await vs(undefined, T0 + 1), [0, 1]);
      assert.deepEqual(await vs(T0 + 2, T0 + 2), []);
      assert.deepEqual(await vs(T0 + 3, T0 + 1), []);
      assert.deepEqual(await vs(-1e15, 1e15), [0, 1, 2, 3, 4, 5]); // far bounds: clamped, not an error
      assert.deepEqual(await vs(1e15), []);
      await assert.rejects(store.query({ tenant, name: 'dev/t', from: NaN }), RangeError);
    });

    it('stores each (name, t) once, keeping the first of a batch, and pages through each row exactly once, in (t, n) order', async function () {
      this.timeout(60_000);
      // 5 names × 100 times, each (name, t) sent 3 times in the batch; v numbers the readings.
      const readings: Reading[] = [];
      for (let copyNo = 0; copyNo < 3; copyNo++) {
        for (let ti = 0; ti < 100; ti++) {
          for (let ni = 0; ni < 5; ni++) readings.push(at(tenant, `dev${ni}/t`, T0 + ti * 0.5, { v: readings.length }));
        }
      }
      assert.equal((await store.append(readings)).written, 500);
      for (const [query, expected, limit] of [
        [{ prefix: 'dev' }, 500, 97],
        [{ prefix: '' }, 500, 10],
        [{ name: 'dev3/t' }, 100, 7],
        [{ name: 'dev3/t', from: T0 + 5, to: T0 + 10 }, 10, 3],
      ] as const) {
        const { items, pages } = await allPages(store, { tenant, ...query, limit });
        assert.equal(items.length, expected, JSON.stringify(query));
        // The first copy of each (name, t) is the one kept: v < 500.
        assert.ok(
          items.every((r) => (r.v as number) < 500),
          'the first of each key kept',
        );
        assert.equal(new Set(items.map((r) => `${r.n} ${r.t}`)).size, expected, 'no row twice');
        // A page says there is more only when there is: an exact multiple ends without an empty page.
        assert.equal(pages, Math.ceil(expected / limit));
        for (let i = 1; i < items.length; i++) {
          const [a, b] = [items[i - 1], items[i]];
          assert.ok(a.t < b.t || (a.t === b.t && a.n < b.n), `order at ${i}: ${JSON.stringify([a, b])}`);
        }
      }
      await assert.rejects(store.query({ tenant, prefix: '', cursor: 'not-a-cursor' }), RangeError);
      await assert.rejects(store.query({ tenant, prefix: '', cursor: Buffer.from('["u1",1,"x"]').toString('base64url') }), RangeError);
    });

    it("keeps one name's readings of several units at one time apart (RFC 8428 5.1.3), and pages through them", async () => {
      const records: ResolvedRecord[] = [];
      for (let i = 0; i < 4; i++) {
        records.push({ n: 'urn:dev:ow:10e2073a01080063', t: T0 + 60 * i, u: '%RH', v: 20 + i });
        records.push({ n: 'urn:dev:ow:10e2073a01080063', t: T0 + 60 * i, u: 'lon', v: 24.3 + i / 1e5 });
        records.push({ n: 'urn:dev:ow:10e2073a01080063', t: T0 + 60 * i, u: 'lat', v: 60.07 + i / 1e5 });
      }
      records.push({ n: 'urn:dev:ow:10e2073a01080063', t: T0 + 60, v: 1 }); // no unit: another reading again
      for (const s of [store, inserting]) {
        const result = await s.append(records.map((record) => ({ tenant, record })));
        assert.equal(result.written, s === store ? 13 : 0);
      }
      for (const query of [{ name: 'urn:dev:ow:10e2073a01080063' }, { prefix: 'urn:' }]) {
        const { items } = await allPages(store, { tenant, ...query, limit: 2 });
        assert.equal(items.length, 13, JSON.stringify(query));
        assert.equal(new Set(items.map((r) => `${r.t} ${r.u}`)).size, 13);
        assert.deepEqual(
          items.slice(3, 7).map((r) => r.u),
          [undefined, '%RH', 'lat', 'lon'],
          'in (t, n, unit) order, no unit first',
        );
      }
    });

    it('still reads a cursor issued before migration 004 (with a row id) and goes on after its (t, n)', async () => {
      await store.append([at(tenant, 'a/t', T0, { v: 0 }), at(tenant, 'b/t', T0, { v: 1 }), at(tenant, 'a/t', T0 + 1, { v: 2 })]);
      const old = (us: number, name: string, id: string) => Buffer.from(JSON.stringify(['r1', us, name, id])).toString('base64url');
      const after = async (q: Partial<RangeQuery>, cursor: string) => (await store.query({ tenant, ...q, cursor } as RangeQuery)).items.map((r) => r.v);
      assert.deepEqual(await after({ prefix: '' }, old(T0 * 1e6, 'a/t', '17')), [1, 2]);
      assert.deepEqual(await after({ name: 'a/t' }, old(T0 * 1e6, 'a/t', '17')), [2]);
      await assert.rejects(store.query({ tenant, prefix: '', cursor: old(T0 * 1e6, 'a/t', 'x1') }), RangeError);
      // The next page's cursor is the new kind: [t, n] only.
      const page = await store.query({ tenant, prefix: '', limit: 1 });
      assert.ok(page.cursor);
      assert.deepEqual(JSON.parse(Buffer.from(page.cursor, 'base64url').toString()), ['r2', T0 * 1e6, 'a/t', '']);
    });

    it('limits a page to 1..10000, 1000 by default', async () => {
      await inserting.append(Array.from({ length: 1_001 }, (_, i) => at(tenant, 'dev/t', T0 + i, { v: i })));
      const first = await store.query({ tenant, name: 'dev/t' });
      assert.equal(first.items.length, 1_000);
      assert.ok(first.cursor);
      const rest = await store.query({ tenant, name: 'dev/t', cursor: first.cursor, limit: 10_000 });
      assert.deepEqual(
        rest.items.map((r) => r.v),
        [1_000],
      );
      assert.equal(rest.cursor, undefined);
      assert.equal((await store.query({ tenant, name: 'dev/t', limit: 1 })).items.length, 1);
      for (const limit of [0, -1, 10_001, 1.5, NaN, Infinity]) {
        await assert.rejects(store.query({ tenant, name: 'dev/t', limit }), RangeError, `limit ${limit}`);
      }
    });

    it('dropBefore deletes older readings of every tenant in chunks and returns the count', async () => {
      // Retention is across tenants: this test's rows are older than any other test's (year 385).
      const old = -50_000_000_000;
      const other = `${tenant}-other`;
      await store.append([
        ...Array.from({ length: 10 }, (_, i) => at(i % 2 ? tenant : other, 'dev/t', old + i, { v: i })),
        at(tenant, 'dev/t', old + 100, { v: 100 }),
        at(tenant, 'dev/t', old + 101, { v: 101 }),
      ]);
      const counted = counting(db);
      const dropping = createSqlTimeSeries(counted, { dropChunk: 3 });
      assert.equal(await dropping.dropBefore(old + 100), 10);
      assert.equal(counted.statements.filter((s) => s.startsWith('DELETE')).length, 4, '3 + 3 + 3 + 1');
      assert.deepEqual(
        (await store.query({ tenant, name: 'dev/t' })).items.map((r) => r.v),
        [100, 101],
      );
      assert.deepEqual((await store.query({ tenant: other, name: 'dev/t' })).items, []);
      assert.equal(await dropping.dropBefore(old + 100), 0);
      assert.equal(await dropping.dropBefore(old + 100.5), 1);
      await assert.rejects(dropping.dropBefore(NaN), RangeError);
    });

    it('refuses calls once closed', async () => {
      const s = createSqlTimeSeries(db);
      await s.close();
      await assert.rejects(s.append([at(tenant, 'x', T0)]), /closed/);
      await assert.rejects(s.query({ tenant, prefix: '' }), /closed/);
      assert.equal((await db.query('SELECT 1 AS one')).rows.length, 1, 'the shared client stays open');
    });

    if (engine.name === 'PostgreSQL') {
      it('writes a 10,000-reading batch with one COPY, and a small batch with one INSERT', async function () {
        this.timeout(30_000);
        assert.ok(copier);
        const copying = spy(copier);
        const counted = counting(db);
        const s = createSqlTimeSeries(counted, { copier: copying }); // default copyMinRows
        const readings = Array.from({ length: 10_000 }, (_, i) => at(tenant, `dev${i % 10}/t`, T0 + i / 1000, { v: i, u: 'Cel' }));
        assert.deepEqual(await s.append(readings), { written: 10_000, rejected: [] });
        assert.equal(copying.calls, 1);
        assert.equal(copying.rows, 10_000);
        assert.deepEqual(counted.statements, [], 'no statement through the SqlClient');
        const { rows } = await db.query<{ n: number; sum: number }>('SELECT count(*) AS n, sum(v) AS sum FROM readings WHERE tenant_id = $1', [tenant]);
        assert.deepEqual(rows[0], { n: 10_000, sum: (9_999 * 10_000) / 2 });

        assert.equal((await s.append(readings.slice(0, 5).map((r) => at(tenant, r.record.n, r.record.t + 100)))).written, 5);
        assert.equal(copying.calls, 1, 'below copyMinRows: no COPY');
        assert.equal(counted.statements.length, 1);
        assert.match(counted.statements[0], /INSERT INTO readings/);
      });

      it('a failing COPY writes nothing of its batch, and the copier goes on', async () => {
        assert.ok(copier);
        // The good rows first, then bytes after the end marker: the batch is all or nothing.
        const breaking = spy(copier, (data) => [...data, Buffer.from('trailing garbage')]);
        const s = createSqlTimeSeries(db, { copier: breaking, copyMinRows: 1, rollups: true });
        await assert.rejects(s.append(Array.from({ length: 50 }, (_, i) => at(tenant, 'fine', T0 + i))), /after EOF marker/);
        assert.deepEqual((await store.query({ tenant, prefix: '' })).items, []);
        const fine = createSqlTimeSeries(db, { copier, copyMinRows: 1, rollups: true });
        for (let i = 0; i < 3; i++) assert.equal((await fine.append([at(tenant, 'fine', T0 + i)])).written, 1);
        assert.equal((await store.query({ tenant, prefix: '' })).items.length, 3);
        const { rows } = await db.query<{ n: number }>(`SELECT sum(count)::int8 AS n FROM rollups WHERE tenant_id = $1 AND size = 'hour'`, [tenant]);
        assert.equal(rows[0].n, 3, 'the failed batch rolled nothing up');
      });
    }
  });

  describe(`a reading stored once on ${engine.name}, however often it is sent`, function () {
    let db: SqlClient;
    const copiers: Copier[] = [];
    /** The write paths with rollups: COPY through the staging table (PostgreSQL) and the INSERT. */
    const paths: { name: string; store: TimeSeriesStore }[] = [];
    let n = 0;
    let tenant: string;

    before(async function () {
      this.timeout(OPEN_TIMEOUT_MS);
      db = await engine.open();
      await migrate(db);
      if (db.kind === 'postgres') {
        const url = await urlOf(db);
        copiers.push(openCopier({ connectionString: url }), openCopier({ connectionString: url }));
        paths.push({ name: 'COPY', store: createSqlTimeSeries(db, { copier: copiers[0], copyMinRows: 1, rollups: true }) });
      }
      paths.push({ name: 'INSERT', store: createSqlTimeSeries(db, { rollups: true }) });
    });
    after(async () => {
      for (const c of copiers) await c.close();
      await db?.close();
    });
    beforeEach(() => void (tenant = `once${++n}`));

    /** Readings stored, and what the hour and day rollups count, of the tenant. */
    async function totals(t = tenant) {
      const r = await db.query<{ n: number; sum: number | null }>('SELECT count(*)::int8 AS n, sum(v) AS sum FROM readings WHERE tenant_id = $1', [t]);
      const u = await db.query<{ size: string; n: number; sum: number | null }>(
        'SELECT size, sum(count)::int8 AS n, sum(sum) AS sum FROM rollups WHERE tenant_id = $1 GROUP BY size ORDER BY size',
        [t],
      );
      const of = (size: string) => u.rows.find((x) => x.size === size) ?? { n: 0, sum: null };
      return { readings: r.rows[0].n, sum: r.rows[0].sum, day: { n: of('day').n, sum: of('day').sum }, hour: { n: of('hour').n, sum: of('hour').sum } };
    }

    /** n numeric readings of 4 names over a few hours, v = 1..n. */
    const batch = (count: number, t = tenant, offset = 0) =>
      Array.from({ length: count }, (_, i) => at(t, `dev${(i + offset) % 4}/t`, T0 + (i + offset) * 97, { v: i + offset + 1 }));
    const sumTo = (k: number) => (k * (k + 1)) / 2;

    it('a batch sent twice is stored once and rolled up once, through each path', async () => {
      for (const { name, store } of paths) {
        const t = `${tenant}-${name}`;
        const readings = [...batch(200, t), at(t, 'dev0/state', T0, { vs: 'on' })];
        assert.equal((await store.append(readings)).written, 201, name);
        assert.deepEqual(await store.append(readings), { written: 0, rejected: [] }, `${name}: nothing new the second time`);
        const expected = { readings: 201, sum: sumTo(200), day: { n: 200, sum: sumTo(200) }, hour: { n: 200, sum: sumTo(200) } };
        assert.deepEqual(await totals(t), expected, name);
      }
    });

    it('a repeat inside a batch is stored and counted once, and the first of them is kept', async () => {
      for (const { name, store } of paths) {
        const t = `${tenant}-${name}`;
        const readings = [
          at(t, 'a/t', T0, { v: 1, u: 'Cel' }),
          at(t, 'a/t', T0 + 1, { v: 2, u: 'Cel' }),
          at(t, 'a/t', T0, { v: 10, u: 'Cel' }),
          at(t, 'a/t', T0 + 0.0000001, { v: 20, u: 'Cel' }), // T0 at the microsecond the table keeps: the same key
        ];
        assert.equal((await store.append(readings)).written, 2, name);
        assert.deepEqual(
          (await store.query({ tenant: t, name: 'a/t' })).items.map((r) => r.v),
          [1, 2],
          name,
        );
        assert.deepEqual(await totals(t), { readings: 2, sum: 3, day: { n: 2, sum: 3 }, hour: { n: 2, sum: 3 } }, name);
      }
    });

    it('after a crash between commit and acknowledgement, the batch sent again adds only what is new', async () => {
      for (const { name, store } of paths) {
        const t = `${tenant}-${name}`;
        const first = batch(150, t);
        assert.equal((await store.append(first)).written, 150);
        // The device never saw the acknowledgement: it sends the same readings, and more behind them.
        const again = [...first, ...batch(50, t, 150)];
        assert.deepEqual(await store.append(again), { written: 50, rejected: [] }, name);
        assert.deepEqual(await totals(t), { readings: 200, sum: sumTo(200), day: { n: 200, sum: sumTo(200) }, hour: { n: 200, sum: sumTo(200) } }, name);
      }
    });

    it('concurrent writers of overlapping batches do not deadlock and store and count each reading once', async function () {
      this.timeout(60_000);
      // On PostgreSQL three connections (two copiers and the pool); on PGlite the one connection.
      const writers = [...paths.map((p) => p.store)];
      if (copiers[1]) writers.push(createSqlTimeSeries(db, { copier: copiers[1], copyMinRows: 1, rollups: true }));
      const all = batch(600);
      for (let round = 0; round < 10; round++) {
        // Each writer takes the same keys in another order, plus some of its own: without one
        // insertion order, two transactions would each hold a key the other waits for.
        await Promise.all(
          writers.map((w, i) => {
            let mine = all.filter((_, k) => (k + round + i) % 3 !== 0);
            if (i % 3 === 1) mine.reverse();
            if (i % 3 === 2) mine = [...mine.slice(mine.length >> 1), ...mine.slice(0, mine.length >> 1)];
            return w.append(mine);
          }),
        );
      }
      assert.deepEqual(await totals(), { readings: 600, sum: sumTo(600), day: { n: 600, sum: sumTo(600) }, hour: { n: 600, sum: sumTo(600) } });
    });
  });
}
