/**
 * The REST API's read resources on PostgreSQL and PGlite, through their handlers with a real
 * ApiContext: devices and sensor sinks (a restart ends a sink and opens a new one), seed 004's
 * data sets by sensor and by device with time ranges, limits and cursors (every item once),
 * latest values and rollups, the event catalogue, tenancy (another tenant's serial or sensor is
 * a 404), bad parameters (a 400 naming them), a missing tier (503). Every answer is validated
 * against its operation's response schema (test/support/api-resources.ts).
 */
import * as assert from 'node:assert/strict';
import type { ApiStores } from '../../nodes/core/api/operation';
import type { ApiKeyIdentity } from '../../nodes/core/auth/api-key-store';
import { eapiToRecords, type EapiMessage } from '../../nodes/core/codecs/eapi';
import type { SqlClient } from '../../nodes/core/db/sql';
import { platformCatalogue } from '../../nodes/core/events/catalogue';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { createBusinessStore, createTenant, type BusinessStore } from '../../nodes/core/stores/business';
import { createSqlLongTerm } from '../../nodes/core/stores/long-term-sql';
import { createMemoryShortTerm } from '../../nodes/core/stores/short-term-memory';
import { createSqlTimeSeries } from '../../nodes/core/stores/time-series-sql';
import type { Reading } from '../../nodes/core/stores/types';
import { allPages, call, fails } from '../support/api-resources';
import { ENGINES, withMigratedDatabase } from '../support/engines';

const T0 = Date.parse('2024-05-01T00:00:00Z') / 1000;
const acme: ApiKeyIdentity = { tenant: 'acme', id: 1, user_id: null, scopes: [] };
const globex: ApiKeyIdentity = { tenant: 'globex', id: 2, user_id: null, scopes: [] };

for (const engine of ENGINES) {
  describe(`REST API read resources on ${engine.name}`, function () {
    let db: SqlClient;
    let stores: ApiStores;
    let business: BusinessStore;
    let oldSink: number;
    let newSink: number;
    let otherSink: number;
    let globexSink: number;

    withMigratedDatabase(engine, (opened) => (db = opened));

    before(async function () {
      this.timeout(30_000);
      business = createBusinessStore(db);
      await createTenant(db, { id: 'acme', name: 'Acme' });
      await createTenant(db, { id: 'globex', name: 'Globex' });
      const dev = await business.create('acme', 'devices', { serial: '951FF00000340', name: 'Logger', model: 'ecolog' });
      const ch1 = await business.create('acme', 'channels', { device_id: dev.id, number: 1, name: 'inside', interval_s: 60 });
      const ch2 = await business.create('acme', 'channels', { device_id: dev.id, number: 2 });
      oldSink = Number((await business.create('acme', 'sensors', { channel_id: ch1.id, kind: 'temperature', quantities: ['temperature'] })).id);
      otherSink = Number((await business.create('acme', 'sensors', { channel_id: ch2.id, kind: 'rH', quantities: ['relative_humidity'] })).id);
      const restarted = await business.restartDevice('acme', dev.id as number);
      newSink = Number(restarted[0]);
      for (let i = 0; i < 4; i++) await business.create('acme', 'devices', { serial: `SN-${i}` });
      const gdev = await business.create('globex', 'devices', { serial: 'GLOBEX-1' });
      const gch = await business.create('globex', 'channels', { device_id: gdev.id, number: 1 });
      globexSink = Number((await business.create('globex', 'sensors', { channel_id: gch.id })).id);

      const dev1 = '951FF00000340';
      const common = (sensorId: number, t: number) => ({ deviceId: dev1, sensorId, timeStamp: t });
      const msgs: EapiMessage[] = [];
      for (let i = 0; i < 50; i++) {
        msgs.push({ type: 'eapi_measurement_new', data: { ...common(newSink, T0 + i * 60), value: 20 + i / 10, unit: '°C', unitType: 'temperature' } });
        msgs.push({ type: 'eapi_measurement_new', data: { ...common(otherSink, T0 + i * 60), value: 40 + i, unit: '%', unitType: 'relative_humidity' } });
      }
      for (let i = 0; i < 5; i++) {
        msgs.push({ type: 'eapi_geodata_new', data: { ...common(newSink, T0 + i * 600), latitude: 47.19999075 + i, longitude: 9.50875282, accuracy: 2316 } });
      }
      msgs.push({ type: 'eapi_geodata_new', data: { ...common(newSink, T0 + 3000), latitude: 1, longitude: 2 } });
      msgs.push({
        type: 'eapi_occurrence_new',
        data: { ...common(newSink, T0 + 30), typeName: 'LoggerStatusChange', previousState: 'Start', newState: 'LogDelayed' },
      });
      msgs.push({ type: 'eapi_occurrence_new', data: { ...common(newSink, T0 + 90), typeName: 'LoggerStatusChange', newState: 'LogTransit' } });
      // Two deviations of one sensor at one time: one block, two items (a page may split them).
      msgs.push({
        type: 'eapi_deviation_enter',
        data: { ...common(newSink, T0 + 120), historyType: 'enter', deviationType: 'limit', reason: 'upper_limit_alarm', limitzone: 'H1' },
      });
      msgs.push({ type: 'eapi_deviation_enter', data: { ...common(newSink, T0 + 120), historyType: 'enter', deviationType: 'battery', reason: 'low' } });
      msgs.push({
        type: 'eapi_deviation_leave',
        data: { ...common(newSink, T0 + 180), historyType: 'leave', deviationType: 'limit', reason: 'upper_limit_alarm' },
      });
      const records: ResolvedRecord[] = msgs.flatMap(eapiToRecords);
      records.push({ n: `GLOBEX-1/${globexSink}/temperature`, t: T0, v: 1, u: 'Cel' });
      const readings: Reading[] = records.map((record) => ({ tenant: record.n.startsWith('GLOBEX') ? 'globex' : 'acme', record }));
      const timeSeries = createSqlTimeSeries(db);
      const longTerm = createSqlLongTerm(db);
      const shortTerm = createMemoryShortTerm({ ttlSeconds: 3600, windowSize: 10, windowSeconds: 3600 });
      await timeSeries.append(readings);
      await longTerm.add(readings);
      await shortTerm.write(readings);
      stores = { db, timeSeries, longTerm, shortTerm, catalogue: () => platformCatalogue() };
    });

    describe('devices', () => {
      it('lists the tenant’s devices page by page, each once, with their sensor sinks', async () => {
        for (const version of [1, 2] as const) {
          const { items, pages } = await allPages(stores, 'listDevices', { identity: acme, version }, 2);
          assert.deepEqual(
            items.map((d) => d.serialNumber),
            ['951FF00000340', 'SN-0', 'SN-1', 'SN-2', 'SN-3'],
          );
          assert.equal(pages, 3);
          assert.deepEqual(
            items[0].sensorIds,
            [oldSink, otherSink, newSink, newSink + 1].sort((a, b) => a - b),
          );
          assert.equal('attributes' in items[0], version === 2);
        }
        const { items } = await allPages(stores, 'listDevices', { identity: globex }, 10);
        assert.deepEqual(
          items.map((d) => d.serialNumber),
          ['GLOBEX-1'],
        );
      });

      it('v2 says when each device was last seen: its newest reading, or a later time a flow recorded; null if never', async () => {
        const serials = ['951FF00000340', 'SN-0', 'SN-1'];
        const lastSeen = async () => {
          const { items } = await allPages(stores, 'listDevices', { identity: acme, version: 2 }, 10);
          const one = await call(stores, 'getDevice', { identity: acme, version: 2, params: { serial: '951FF00000340' } });
          assert.equal(one.body!.lastSeenAt, items[0].lastSeenAt);
          return serials.map((serial) => items.find((d) => d.serialNumber === serial)!.lastSeenAt);
        };
        // The logger's newest reading is its last position, 50 minutes in; SN-0 and SN-1 sent nothing.
        assert.deepEqual(await lastSeen(), ['2024-05-01T00:50:00+00:00', null, null]);
        const sn1 = (await business.list('acme', 'devices', { filter: { serial: 'SN-1' } })).items[0];
        const logger = (await business.list('acme', 'devices', { filter: { serial: '951FF00000340' } })).items[0];
        await business.update('acme', 'devices', sn1.id as number, { last_seen_at: '2024-06-01T12:00:00Z' });
        await business.update('acme', 'devices', logger.id as number, { last_seen_at: '2024-04-01T00:00:00Z' }); // older than its readings
        assert.deepEqual(await lastSeen(), ['2024-05-01T00:50:00+00:00', null, '2024-06-01T12:00:00+00:00']);
        const v1 = await call(stores, 'getDevice', { identity: acme, version: 1, params: { serial: '951FF00000340' } });
        assert.equal('lastSeenAt' in v1.body!, false);
      });

      it('shows a device’s channels and sinks: after a restart the old sink has ended and a new one is open', async () => {
        const { body } = await call(stores, 'getDevice', { identity: acme, version: 2, params: { serial: '951FF00000340' } });
        const channels = body!.channels as Array<{ number: number; name: string | null; intervalSeconds: number | null; sensors: Record<string, unknown>[] }>;
        assert.deepEqual(
          channels.map((c) => [c.number, c.name, c.intervalSeconds]),
          [
            [1, 'inside', 60],
            [2, null, null],
          ],
        );
        const [ended, open] = channels[0].sensors;
        assert.equal(ended.sensorId, oldSink);
        assert.notEqual(ended.end, null);
        assert.equal(ended.active, false);
        assert.equal(open.sensorId, newSink);
        assert.equal(open.end, null);
        assert.equal(open.active, true);
        assert.ok(Date.parse(open.start as string) >= Date.parse(ended.end as string) - 1000);
        assert.match(ended.end as string, /\+00:00$/);
        const one = await call(stores, 'getSensor', { identity: acme, params: { sensorId: String(newSink) } });
        assert.equal(one.body!.deviceId, '951FF00000340');
        assert.equal(one.body!.channel, 1);
      });

      it('answers 404 for another tenant’s serial or sensor, and 400 for a malformed sensor id', async () => {
        await fails(stores, 'getDevice', { identity: acme, params: { serial: 'GLOBEX-1' } }, 'not-found');
        await fails(stores, 'getDevice', { identity: acme, params: { serial: 'nope' } }, 'not-found');
        await fails(stores, 'getSensor', { identity: acme, params: { sensorId: String(globexSink) } }, 'not-found');
        await fails(stores, 'listSensorMeasurements', { identity: acme, params: { sensorId: String(globexSink) } }, 'not-found');
        await fails(stores, 'listDeviceMeasurements', { identity: globex, params: { serial: '951FF00000340' } }, 'not-found');
        await fails(stores, 'getSensorLatest', { identity: globex, params: { sensorId: String(newSink) } }, 'not-found');
        await fails(stores, 'getSensor', { identity: acme, params: { sensorId: 'abc' } }, 'invalid-request', 'sensorId');
      });
    });

    describe('data sets', () => {
      const sensor = () => ({ sensorId: String(newSink) });

      it('pages measurements of a sensor: every point once, in time order, in seed 004’s fields', async () => {
        for (const limit of [1, 7, 50, 1000]) {
          const { items } = await allPages(stores, 'listSensorMeasurements', { identity: acme, params: sensor() }, limit);
          assert.equal(items.length, 50, `limit ${limit}`);
          assert.deepEqual(
            items.map((m) => Date.parse(m.timeStamp as string) / 1000),
            Array.from({ length: 50 }, (_, i) => T0 + i * 60),
          );
        }
        const { body } = await call(stores, 'listSensorMeasurements', { identity: acme, params: sensor(), query: { limit: '1' } });
        assert.deepEqual((body!.items as unknown[])[0], {
          sensorId: newSink,
          deviceId: '951FF00000340',
          timeStamp: '2024-05-01T00:00:00+00:00',
          value: 20,
          unit: '°C',
          unitType: 'temperature',
        });
        const v2 = await call(stores, 'listSensorMeasurements', { identity: acme, version: 2, params: sensor(), query: { limit: '1' } });
        const first = (v2.body!.items as Record<string, unknown>[])[0];
        assert.equal(first.name, `951FF00000340/${newSink}/temperature`);
        assert.equal(first.senmlUnit, 'Cel');
      });

      it('bounds by time: from inclusive, to exclusive, as ISO 8601 or seconds', async () => {
        const query = { from: '2024-05-01T00:10:00+00:00', to: String(T0 + 20 * 60) };
        const { items } = await allPages(stores, 'listSensorMeasurements', { identity: acme, params: sensor(), query }, 3);
        assert.deepEqual(
          items.map((m) => m.value),
          Array.from({ length: 10 }, (_, i) => 20 + (10 + i) / 10),
        );
        await fails(stores, 'listSensorMeasurements', { identity: acme, params: sensor(), query: { from: 'yesterday' } }, 'invalid-request', 'from');
        await fails(
          stores,
          'listSensorMeasurements',
          { identity: acme, params: sensor(), query: { from: String(T0 + 10), to: String(T0) } },
          'invalid-request',
          'to',
        );
      });

      it('reads a device’s measurements across its sensors, and nothing of the other kinds', async () => {
        const { items } = await allPages(stores, 'listDeviceMeasurements', { identity: acme, params: { serial: '951FF00000340' } }, 9);
        assert.equal(items.length, 100);
        assert.deepEqual(new Set(items.map((m) => m.unitType)), new Set(['temperature', 'relative_humidity']));
        assert.ok(items.filter((m) => m.unitType === 'relative_humidity').every((m) => m.unit === '%' && m.sensorId === otherSink));
      });

      it('reads geodata, occurrences and deviations whole, even when a page ends inside a block', async () => {
        const geo = await allPages(stores, 'listSensorGeodata', { identity: acme, params: sensor() }, 2);
        assert.equal(geo.items.length, 6);
        assert.deepEqual(geo.items[0], {
          sensorId: newSink,
          deviceId: '951FF00000340',
          timeStamp: '2024-05-01T00:00:00+00:00',
          latitude: 47.19999075,
          longitude: 9.50875282,
          accuracy: 2316,
        });
        assert.equal('accuracy' in geo.items[5], false);

        const occ = await allPages(stores, 'listDeviceOccurrences', { identity: acme, params: { serial: '951FF00000340' } }, 1);
        assert.deepEqual(
          occ.items.map((o) => [o.typeName, o.previousState, o.newState]),
          [
            ['LoggerStatusChange', 'Start', 'LogDelayed'],
            ['LoggerStatusChange', undefined, 'LogTransit'],
          ],
        );

        for (const version of [1, 2] as const) {
          const dev = await allPages(stores, 'listSensorDeviations', { identity: acme, version, params: sensor() }, 1);
          assert.equal(dev.pages, 3);
          assert.deepEqual(
            dev.items.map((d) => [d.timeStamp, d.historyType, d.deviationType, d.reason, d.limitzone]),
            [
              ['2024-05-01T00:02:00+00:00', 'enter', 'battery', 'low', undefined],
              ['2024-05-01T00:02:00+00:00', 'enter', 'limit', 'upper_limit_alarm', 'H1'],
              ['2024-05-01T00:03:00+00:00', 'leave', 'limit', 'upper_limit_alarm', undefined],
            ],
          );
        }
      });

      it('refuses a bad limit, a limit over the API’s page limit, and a foreign cursor, naming them', async () => {
        const c = { identity: acme, params: sensor() };
        await fails(stores, 'listSensorMeasurements', { ...c, query: { limit: '0' } }, 'invalid-request', 'limit');
        await fails(stores, 'listSensorMeasurements', { ...c, query: { limit: 'ten' } }, 'invalid-request', 'limit');
        await fails(stores, 'listSensorMeasurements', { ...c, query: { limit: '11' }, pageLimit: 10 }, 'invalid-request', 'limit');
        const capped = await call(stores, 'listSensorMeasurements', { ...c, pageLimit: 10 });
        assert.equal((capped.body!.items as unknown[]).length, 10);
        assert.ok(capped.body!.cursor);
        await fails(stores, 'listSensorGeodata', { ...c, query: { cursor: capped.body!.cursor as string } }, 'invalid-request', 'cursor');
        await fails(stores, 'listSensorMeasurements', { ...c, query: { cursor: 'garbage!' } }, 'invalid-request', 'cursor');
        await fails(
          stores,
          'listDeviceRollups',
          { identity: acme, params: { serial: '951FF00000340' }, query: { cursor: 'xyz' } },
          'invalid-request',
          'cursor',
        );
      });

      it('answers 503 when the API has no such tier', async () => {
        const bare: ApiStores = { db, catalogue: () => [] };
        await fails(bare, 'listSensorMeasurements', { identity: acme, params: sensor() }, 'unavailable');
        await fails(bare, 'getSensorLatest', { identity: acme, params: sensor() }, 'unavailable');
        await fails(bare, 'listSensorRollups', { identity: acme, params: sensor() }, 'unavailable');
      });
    });

    describe('tiers and catalogue', () => {
      it('gives the latest value of each name of a sensor, and of a device up to the limit', async () => {
        const { body } = await call(stores, 'getSensorLatest', { identity: acme, version: 2, params: { sensorId: String(otherSink) } });
        assert.deepEqual(body!.items, [
          {
            sensorId: otherSink,
            deviceId: '951FF00000340',
            timeStamp: '2024-05-01T00:49:00+00:00',
            quantity: 'relative_humidity',
            value: 89,
            unit: '%',
            name: `951FF00000340/${otherSink}/relative_humidity`,
            senmlUnit: '%RH',
          },
        ]);
        assert.equal(body!.complete, true);
        const device = await call(stores, 'getDeviceLatest', { identity: acme, params: { serial: '951FF00000340' }, query: { limit: '3' } });
        assert.equal((device.body!.items as unknown[]).length, 3);
        assert.equal(device.body!.complete, false);
        const all = await call(stores, 'getDeviceLatest', { identity: acme, params: { serial: '951FF00000340' } });
        const deviation = (all.body!.items as Record<string, unknown>[]).find((i) => i.quantity === 'deviation/limit');
        assert.equal(deviation?.value, false);
      });

      it('gives hourly and daily rollups, paged', async () => {
        const hourly = await allPages(stores, 'listSensorRollups', { identity: acme, version: 2, params: { sensorId: String(newSink) } }, 1);
        const temps = hourly.items.filter((r) => r.quantity === 'temperature');
        assert.deepEqual(
          temps.map((r) => [r.bucket, r.count]),
          [['2024-05-01T00:00:00+00:00', 50]],
        );
        assert.equal(temps[0].min, 20);
        assert.equal(temps[0].last, 24.9);
        assert.equal(temps[0].lastTimeStamp, '2024-05-01T00:49:00+00:00');
        const daily = await call(stores, 'listDeviceRollups', { identity: acme, params: { serial: '951FF00000340' }, query: { interval: 'day' } });
        const rh = (daily.body!.items as Record<string, unknown>[]).find((r) => r.quantity === 'relative_humidity');
        assert.deepEqual([rh?.interval, rh?.count, rh?.sum], ['day', 50, 50 * 40 + (49 * 50) / 2]);
        await fails(
          stores,
          'listDeviceRollups',
          { identity: acme, params: { serial: '951FF00000340' }, query: { interval: 'week' } },
          'invalid-request',
          'interval',
        );
      });

      it('lists the event catalogue', async () => {
        for (const version of [1, 2] as const) {
          const { body } = await call(stores, 'listEventTypes', { identity: acme, version });
          const types = (body!.items as Record<string, unknown>[]).map((t) => t.type);
          assert.ok(types.includes('device.connected'));
          assert.deepEqual(types, [...types].sort());
        }
      });
    });
  });
}
