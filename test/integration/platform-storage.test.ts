/**
 * Acceptance: the shipped default flow stores what it decodes — in PGlite and the in-process
 * cache when nothing is configured, in the real PostgreSQL and Redis when CONFLUX_POSTGRES_URL
 * and CONFLUX_REDIS_URL name them. The platform runs as `npm start` runs it.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Redis from 'ioredis';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { debugSidebar, press, root, start, START_TIMEOUT_MS, stop, tempDataDir, type Platform } from '../support/platform';
import { freshDatabase, redisUrl } from '../support/servers';
import { eventually, until } from '../support/wait';

interface FlowNode {
  id: string;
  type: string;
  name?: string;
  wires?: string[][];
}
const flow = JSON.parse(fs.readFileSync(path.join(root, 'flows', 'default.json'), 'utf8')) as FlowNode[];
const byName = (name: string) => {
  const node = flow.find((n) => n.name === name);
  assert.ok(node, `the default flow has a node named "${name}"`);
  return node.id;
};
/** The injects whose samples reach a converter (not the query injects). */
const CONVERTER = /^conflux-(senml|sen1|ultralight|eapi|map)$/;
const samples = flow.filter((n) => n.type === 'inject' && CONVERTER.test(flow.find((m) => m.id === n.wires?.[0]?.[0])?.type ?? ''));
const RFC_NAME = 'urn:dev:ow:10e2073a01080063';

async function count(db: SqlClient, table: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0].n;
}

describe('acceptance: the default flow stores every decoded reading', function () {
  this.timeout(START_TIMEOUT_MS + 60_000);

  it('has five sample injects wired to converters, and the converters to the storage chain', () => {
    assert.equal(samples.length, 5);
    const shortTerm = flow.find((n) => n.type === 'conflux-short-term')!;
    for (const conv of flow.filter((n) => CONVERTER.test(n.type))) {
      assert.ok(conv.wires![0].includes(shortTerm.id), `${conv.type} is wired to the cache`);
    }
  });

  describe('with nothing configured', () => {
    const dataDir = tempDataDir();
    let platform: Platform | undefined;

    before(async () => {
      platform = await start({ CONFLUX_DATA_DIR: dataDir });
    });
    after(async () => {
      await stop(platform);
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('keeps the latest values in the in-process cache and the series and rollups in PGlite under the data dir', async () => {
      const sidebar = await debugSidebar(platform!);
      try {
        for (const inject of samples) await press(platform!, inject.id);
        /** Presses a query inject and returns the answer shown by the "stored data" debug. */
        const answer = async (inject: string) => {
          await press(platform!, byName(inject));
          let event = await sidebar.next();
          while (event.name !== 'stored data') event = await sidebar.next(); // skip the converters' debug output
          return JSON.parse(event.msg) as { n: string }[];
        };
        const latest = await answer('latest value of every name');
        assert.ok(
          latest.some((r) => r.n === RFC_NAME),
          `cached names: ${latest.map((r) => r.n).join(', ')}`,
        );
        // The time series and the rollups land once the embedded database has opened, in batches.
        await until('the rollups answer', async () => (await answer('hourly rollups')).some((r) => r.n === RFC_NAME));
        const series = await answer('time series: first 100 readings');
        assert.equal(series.filter((r) => r.n === RFC_NAME).length, 13);
        assert.ok(platform!.output().includes('storage: embedded (PGlite)'));
      } finally {
        sidebar.close();
      }
      assert.equal(await stop(platform), 0);
      platform = undefined;
      const db = await openSql({ dataDir: path.join(dataDir, 'pglite') });
      try {
        const { rows } = await db.query<{ v: number; u: string }>("SELECT v, u FROM readings WHERE tenant_id = 'default' AND name = $1 ORDER BY t, id", [
          RFC_NAME,
        ]);
        assert.equal(rows.length, 13, 'the RFC 8428 5.1.3 sample, all 13 records');
        assert.deepEqual(
          rows.filter((r) => r.u === '%RH').map((r) => r.v),
          [20, 20.3, 20.7, 21.2],
        );
        assert.ok((await count(db, 'rollups')) > 0, 'rollups were written');
      } finally {
        await db.close();
      }
    });
  });

  describe('with CONFLUX_POSTGRES_URL and CONFLUX_REDIS_URL set', () => {
    const dataDir = tempDataDir();
    let platform: Platform | undefined;
    let db: SqlClient;
    let redis: Redis;

    before(async () => {
      const url = await freshDatabase();
      db = await openSql({ connectionString: url });
      redis = new Redis(redisUrl());
      platform = await start({ CONFLUX_DATA_DIR: dataDir, CONFLUX_POSTGRES_URL: url, CONFLUX_REDIS_URL: redisUrl() });
    });
    after(async () => {
      await stop(platform);
      await db?.close();
      redis?.disconnect();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('the same flow writes readings and rollups to PostgreSQL and the latest values to Redis, nothing to PGlite', async () => {
      for (const inject of samples) await press(platform!, inject.id);
      // The platform's flow creates the tables (its migrations) before it stores: until then a query fails.
      const rows = await eventually('the RFC sample in PostgreSQL', async () => {
        const found = await db
          .query<{ v: number; u: string }>("SELECT v, u FROM readings WHERE name = $1 AND u = '%RH' ORDER BY t", [RFC_NAME])
          .catch(() => undefined);
        return found?.rows.length === 4 ? found.rows : undefined;
      });
      assert.deepEqual(
        rows.map((r) => r.v),
        [20, 20.3, 20.7, 21.2],
      );
      await until('rollups in PostgreSQL', async () => (await count(db, 'rollups')) > 0);
      const cached = await redis.hget(`conflux:{t:default}:latest:${RFC_NAME}`, 'r');
      assert.ok(cached, 'the latest value is in Redis');
      assert.equal(JSON.parse(cached).t, 1.320067644e9, 'the latest is the record with the greatest time');
      assert.ok(!fs.existsSync(path.join(dataDir, 'pglite')), 'no embedded database was opened');
      assert.ok(platform!.output().includes('storage: PostgreSQL (CONFLUX_POSTGRES_URL)'));
    });
  });
});
