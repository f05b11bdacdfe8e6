/**
 * tools/device-load's reconciliation on PostgreSQL 15 and PGlite: it must see each fault the crash
 * test looks for — a lost reading, a reading stored twice, a row nobody sent, a rollup that
 * disagrees — and nothing when everything was kept. The tables are those of migrations 1 to 3:
 * without a natural key on readings, so that a reading stored twice can be written here.
 */
import * as assert from 'node:assert/strict';
import { migrate } from '../../nodes/core/db/migrate';
import { MIGRATIONS } from '../../nodes/core/db/migrations';
import type { SqlClient } from '../../nodes/core/db/sql';
import type { LoadTransport, Reading } from '../../tools/device-load/load';
import { describePhase, phaseKept, reconcile } from '../../tools/device-load/reconcile';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';

/** 2023-11-14T10:00:00Z */
const T0 = Date.UTC(2023, 10, 14, 10) / 1000;

function reading(transport: LoadTransport, phase: string, v: number, acked = true): Reading {
  const serial = `dev-${transport}`;
  return { transport, serial, tenant: 'default', name: `${serial}/${phase}/seq`, t: T0 + v * 0.001, v, phase, attempts: 1, acked };
}

async function store(db: SqlClient, rows: Array<{ r: Reading; t?: number; v?: number }>): Promise<void> {
  for (const { r, t, v } of rows) {
    await db.query('INSERT INTO readings (tenant_id, name, t, v) VALUES ($1, $2, to_timestamp($3), $4)', [r.tenant, r.name, t ?? r.t, v ?? r.v]);
  }
}

/** Hour and day rollups as the store would write them for these readings. */
async function rollUp(db: SqlClient, readings: Reading[]): Promise<void> {
  for (const size of ['hour', 'day'] as const) {
    const span = size === 'hour' ? 3600 : 86400;
    const buckets = new Map<string, { r: Reading; bucket: number; count: number; sum: number }>();
    for (const r of readings) {
      const bucket = Math.floor(r.t / span) * span;
      const key = `${r.name} ${bucket}`;
      const b = buckets.get(key) ?? buckets.set(key, { r, bucket, count: 0, sum: 0 }).get(key)!;
      b.count++;
      b.sum += r.v;
    }
    for (const b of buckets.values()) {
      await db.query('INSERT INTO rollups (tenant_id, name, size, bucket, count, sum) VALUES ($1, $2, $3, to_timestamp($4), $5, $6)', [
        b.r.tenant,
        b.r.name,
        size,
        b.bucket,
        b.count,
        b.sum,
      ]);
    }
  }
}

for (const engine of ENGINES) {
  describe(`device-load reconciliation on ${engine.name}`, function () {
    let db: SqlClient;

    before(async function () {
      this.timeout(OPEN_TIMEOUT_MS);
      db = await engine.open();
      await migrate(
        db,
        MIGRATIONS.filter((m) => m.version <= 3),
      );
    });
    after(async () => db?.close());

    it('finds every reading kept once, rollups equal: the phase kept its promise', async () => {
      const kept = [reading('http', 'kept', 1), reading('tcp', 'kept', 1), reading('mqtt', 'kept', 1), reading('mqtt', 'kept', 2)];
      await store(
        db,
        kept.map((r) => ({ r })),
      );
      await rollUp(db, kept);
      const [report] = await reconcile(db, kept);
      assert.deepEqual(
        { ...report.transports.mqtt, lostReadings: [], duplicated: [] },
        { sent: 2, acked: 2, stored: 2, lost: 0, duplicates: 0, storedUnacked: 0, strangers: 0, lostReadings: [], duplicated: [] },
      );
      assert.equal(phaseKept(report), true);
      assert.equal(describePhase(report), 'http acked 1 stored 1, tcp acked 1 stored 1, mqtt acked 2 stored 2; rollups agree');
    });

    it('counts a lost reading, a duplicate, a stranger and a rollup that disagrees', async () => {
      const [lost, twice, changed, fine] = [
        reading('http', 'faulty', 1),
        reading('tcp', 'faulty', 2),
        reading('mqtt', 'faulty', 3),
        reading('mqtt', 'faulty', 4),
      ];
      const unacked = reading('tcp', 'faulty', 5, false);
      // lost: not stored; twice: stored two times; changed: stored with another device time; a row
      // nobody sent; unacked: stored though never acknowledged (allowed).
      await store(db, [{ r: twice }, { r: twice }, { r: changed, t: changed.t + 1 }, { r: fine }, { r: fine, v: 99 }, { r: unacked }]);
      await rollUp(db, [twice, fine, unacked]); // one count short for `twice`
      const [report] = await reconcile(db, [lost, twice, changed, fine, unacked]);
      assert.equal(phaseKept(report), false);
      const { http, tcp, mqtt } = report.transports;
      assert.deepEqual([http.lost, http.lostReadings], [1, [lost]]);
      assert.deepEqual([tcp.sent, tcp.acked, tcp.stored, tcp.storedUnacked, tcp.duplicates, tcp.duplicated], [2, 1, 1, 1, 1, [twice]]);
      assert.deepEqual([mqtt.lost, mqtt.stored, mqtt.strangers], [1, 1, 2]);
      const names = report.rollupMismatches.map((m) => `${m.name} ${m.size}`).sort();
      // tcp: the rollup counts 1 of 2 rows; mqtt-3 has no rollup; fine's rollup misses the stranger's 99.
      assert.deepEqual(names, ['dev-mqtt/faulty/seq day', 'dev-mqtt/faulty/seq hour', 'dev-tcp/faulty/seq day', 'dev-tcp/faulty/seq hour']);
      const tcpHour = report.rollupMismatches.find((m) => m.name === 'dev-tcp/faulty/seq' && m.size === 'hour')!;
      assert.deepEqual(
        [tcpHour.readings, tcpHour.rollup],
        [
          { count: 3, sum: 9 },
          { count: 2, sum: 7 },
        ],
      );
      assert.match(
        describePhase(report),
        /^http acked 1 stored 0 \(lost 1\), tcp acked 1 stored 1 \(never acknowledged 1, duplicates 1\), mqtt acked 2 stored 1 \(lost 1, unexpected rows 2\); rollups disagree in 4 buckets \(/,
      );
    });
  });
}
