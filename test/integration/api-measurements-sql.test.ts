/**
 * The measurements the SQL tier's database serialises itself (measurements-sql.ts) against the
 * general reader (readings-model.ts, any tier): the same items, in the same order, on every page
 * size, for a device and a sensor, v1 and v2, with and without a time range — on PostgreSQL and PGlite.
 */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { measurementsPage } from '../../nodes/core/api/resources/measurements-sql';
import { readPage } from '../../nodes/core/api/resources/readings-model';
import { ApiError } from '../../nodes/core/api/operation';
import { createSqlTimeSeries } from '../../nodes/core/stores/time-series-sql';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import type { TimeSeriesStore } from '../../nodes/core/stores/types';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';

const T0 = 1_793_577_600; // 2026-11-02T00:00:00Z
const SENSORS = ['5368', '007', '12345678901234567', 'abc'];
// 'µW,:-' holds the compact rows' delimiters and a character of two bytes (measurements-page.ts).
const UNITS: Array<string | undefined> = ['Cel', 'K', 'degF', '%RH', '%', undefined, 'W', 'µW,:-'];

/** Measurements of every sensor and unit, fractions of a second and shared times, among records that are no measurement. */
function records(): ResolvedRecord[] {
  const out: ResolvedRecord[] = [];
  for (let i = 0; i < 40; i++) {
    const t = T0 + Math.floor(i / 3) * 60 + (i % 3 === 1 ? 0.25 : i % 3 === 2 ? 0.0005 : 0);
    const sensor = SENSORS[i % SENSORS.length];
    const u = UNITS[i % UNITS.length];
    out.push({ n: `SN-1/${sensor}/temperature`, t, v: 20 + i / 10 + (i % 5 === 0 ? 0.30000000000000004 : 0), ...(u ? { u } : {}) });
    if (i % 4 === 0) out.push({ n: `SN-1/${sensor}/humidity`, t, v: 40 + i, u: '%RH' });
    if (i % 6 === 0) out.push({ n: `SN-1/${sensor}/latitude`, t, v: 47.1, u: 'lat' }, { n: `SN-1/${sensor}/longitude`, t, v: 9.5, u: 'lon' });
    if (i % 7 === 0) out.push({ n: `SN-1/${sensor}/accuracy`, t, v: 12, u: 'm' }, { n: `SN-1/${sensor}/LoggerStatusChange`, t, vs: 'Start' });
    if (i % 9 === 0) out.push({ n: `SN-1/${sensor}/deviation/limit`, t, vb: true }, { n: `SN-1/${sensor}/temperature/max`, t, v: 30, u: 'Cel' });
  }
  out.push({ n: 'SN-2/5368/temperature', t: T0, v: 1, u: 'Cel' }); // another device
  // Times on other days, and before 1970, as Node writes them out from the database's milliseconds.
  out.push(
    { n: 'SN-1/5368/temperature', t: -1000.5, v: 1, u: 'Cel' },
    { n: 'SN-1/5368/temperature', t: -1000.0006, v: 3, u: 'Cel' },
    { n: 'SN-1/5368/temperature', t: T0 + 3 * 86_400 + 0.999, v: 2, u: 'Cel' },
  );
  return out;
}

type Query = Omit<Parameters<typeof measurementsPage>[1], 'of'> & { prefix: string };

/** The prefix's device or sensor, as the API's routes name them. */
const ofPrefix = (prefix: string) => {
  const [serial, sensorId] = prefix.split('/');
  return sensorId ? { sensorId } : { serial };
};

async function viaSql(db: SqlClient, { prefix, ...q }: Query): Promise<unknown[]> {
  const items: unknown[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const json = await measurementsPage(db, { ...q, of: ofPrefix(prefix), cursor });
    assert.ok(json !== undefined, `${prefix} is found`);
    const page = JSON.parse(json.toString('utf8')) as { items: unknown[]; cursor?: string };
    assert.ok(page.items.length <= q.limit);
    items.push(...page.items);
    if (!page.cursor) return items;
    cursor = page.cursor;
  }
  throw new Error('no end of pages');
}

async function viaModel(store: TimeSeriesStore, q: Query): Promise<unknown[]> {
  const items: unknown[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await readPage(store, { ...q, kind: 'measurements', cursor });
    items.push(...page.items);
    if (!page.cursor) return items;
    cursor = page.cursor;
  }
}

for (const engine of ENGINES) {
  describe(`measurements serialised by ${engine.name}`, function () {
    let db: SqlClient;
    let store: TimeSeriesStore;

    before(async function () {
      this.timeout(OPEN_TIMEOUT_MS);
      db = await engine.open();
      await migrate(db);
      await createTenant(db, { id: 'acme', name: 'Acme' });
      // The devices, and sinks whose ids are the sensor segments of the readings' names.
      const business = createBusinessStore(db);
      const device = await business.create('acme', 'devices', { serial: 'SN-1' });
      await business.create('acme', 'devices', { serial: 'SN-2' });
      const channel = await business.create('acme', 'channels', { device_id: device.id, number: 1 });
      for (const [position, id] of ['5368', '12345678901234567'].entries())
        await db.query('INSERT INTO sensors (id, tenant_id, device_id, channel_id, position) VALUES ($1, $2, $3, $4, $5)', [
          id,
          'acme',
          device.id,
          channel.id,
          position,
        ]);
      store = createSqlTimeSeries(db);
      await store.append(records().map((record) => ({ tenant: 'acme', record })));
    });
    after(async () => db?.close());

    it('are the general reader’s items, in its order, over every page size, prefix, version and range', async () => {
      const cases = [
        { prefix: 'SN-1/' },
        { prefix: 'SN-1/5368/' },
        { prefix: 'SN-1/12345678901234567/', from: T0 + 60, to: T0 + 300 },
        { prefix: 'SN-1/', from: T0 + 0.25, to: T0 + 600.0005 },
      ];
      let compared = 0;
      for (const c of cases)
        for (const v2 of [false, true])
          for (const limit of [1, 3, 1000]) {
            const q = { tenant: 'acme', limit, v2, ...c };
            const expected = await viaModel(store, q);
            assert.deepEqual(await viaSql(db, q), expected, JSON.stringify(q));
            compared += expected.length;
          }
      assert.ok(compared > 300, `compared ${compared} items`);
    });

    it('keeps seed 004’s forms: sensor ids, unit tokens, times', async () => {
      const page = JSON.parse((await measurementsPage(db, { tenant: 'acme', of: { serial: 'SN-1' }, limit: 1000, v2: true }))!.toString('utf8')) as {
        items: Record<string, unknown>[];
      };
      const tokens = new Map(page.items.map((i) => [i.senmlUnit ?? '(none)', i.unit]));
      assert.deepEqual(Object.fromEntries(tokens), { Cel: '°C', K: 'K', degF: '°F', '%RH': '%', '%': '%', '(none)': '', W: 'W', 'µW,:-': 'µW,:-' });
      const ids = new Set(page.items.map((i) => i.sensorId));
      assert.deepEqual([...ids].sort(), [7, 5368, '12345678901234567', 'abc'].sort());
      assert.ok(page.items.some((i) => i.timeStamp === '2026-11-02T00:00:00.250+00:00'));
      assert.ok(
        page.items.some((i) => i.timeStamp === '2026-11-02T00:00:00.001+00:00'),
        'half a millisecond rounds up',
      );
    });

    it('refuses a cursor of another query with a 400 naming it', async () => {
      await assert.rejects(
        measurementsPage(db, { tenant: 'acme', of: { serial: 'SN-1' }, limit: 5, v2: false, cursor: 'bm90LWEtY3Vyc29y' }),
        (err: unknown) => err instanceof ApiError && err.param === 'cursor',
      );
    });

    it('finds no device or sink of another tenant, nor an unknown one', async () => {
      await createTenant(db, { id: 'other', name: 'Other' });
      for (const of of [{ serial: 'SN-1' }, { sensorId: '5368' }])
        assert.equal(await measurementsPage(db, { tenant: 'other', of, limit: 5, v2: false }), undefined);
      for (const of of [{ serial: 'SN-9' }, { sensorId: '9999' }])
        assert.equal(await measurementsPage(db, { tenant: 'acme', of, limit: 5, v2: false }), undefined);
    });
  });
}
