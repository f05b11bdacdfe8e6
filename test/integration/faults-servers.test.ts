/**
 * Fault tests (issue 14, item 2): PostgreSQL restarted and Redis down under the platform, as
 * `npm start` runs it (dist/settings.js, CONFLUX_POSTGRES_URL and CONFLUX_REDIS_URL on the test
 * servers, the shipped getting-started flow: listeners → short-term cache → time series → rollups
 * → webhooks). Devices send over HTTP, TCP and MQTT (tools/device-load) as fast as their window
 * allows and send again what was not acknowledged; a webhook receiver subscribes to every
 * reading. The server goes away mid-ingest and comes back; nobody touches the platform. At the end
 * every accepted reading is stored exactly once, every outbox message was delivered, no webhook id
 * came as two different events, and the platform stops cleanly. Counts are printed and asserted.
 * The servers are restarted in after hooks too, whatever happened, for the specs that follow.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { DeviceLoad, LOAD_TRANSPORTS } from '../../tools/device-load/load';
import { Redis } from 'ioredis';
import {
  assertReadingsKept,
  assertRunning,
  countsLine,
  editorFeed,
  faultDevices,
  nodeOf,
  outboxCounts,
  platformPorts,
  provision,
  readingCounts,
  writeFlow,
} from '../support/faults';
import { start, stop, tempDataDir, type Platform } from '../support/platform';
import { freshDatabase, redisUrl, startPostgres, startRedis, stopPostgres, stopRedis } from '../support/servers';
import { until } from '../support/wait';
import { Receiver } from '../support/webhook-receiver';

/** Acknowledgements before the server goes away, and after it is back (the platform recovered by itself). */
const ACKS_BEFORE = 1_500;
const ACKS_AFTER = 1_000;
const SETTLE_MS = 120_000;
/** The server stays away until every device has failed this many times (sends or connections): a real outage, not a blip. */
const OUTAGE_FAILURES = 3;

describe('faults: servers restarted or down under load', function () {
  this.timeout(600_000);

  describe('PostgreSQL restarted mid-ingest', () => {
    let dataDir = '';
    let platform: Platform | undefined;
    let receiver: Receiver | undefined;
    let load: DeviceLoad | undefined;
    let pgDown = false;

    after(async () => {
      await load?.stop();
      if (pgDown) await startPostgres(); // whatever failed: the specs after this one need the server
      await stop(platform);
      await receiver?.stop();
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('keeps every accepted reading once and delivers every webhook; the pool recovers by itself', async () => {
      dataDir = tempDataDir();
      const url = await freshDatabase();
      const open = (): Promise<SqlClient> => openSql({ connectionString: url, poolSize: 2 });
      receiver = await new Receiver().start();
      const devices = faultDevices('pg', LOAD_TRANSPORTS, 2);
      const setup = await open();
      try {
        await provision(setup, devices, receiver.url);
      } finally {
        await setup.close();
      }
      writeFlow(dataDir);
      const { vars, target } = await platformPorts();
      platform = await start({ ...vars, CONFLUX_DATA_DIR: dataDir, CONFLUX_POSTGRES_URL: url });

      load = new DeviceLoad(devices, { window: 8 });
      load.start(target, 'before');
      await until(
        () => `${ACKS_BEFORE} acknowledgements before the restart (errors: ${load!.errors.join('; ')})`,
        () => (assertRunning(platform!), load!.acked.total >= ACKS_BEFORE),
        SETTLE_MS,
      );

      // Mid-ingest: the server stops (fast shutdown cuts every session); every device must meet it.
      const failuresAtStop = load.failures;
      pgDown = true;
      const stoppedAt = Date.now();
      await stopPostgres();
      await until(
        () => `every device to see the outage (failures ${load!.failures.join(',')} since ${failuresAtStop.join(',')})`,
        () => (assertRunning(platform!), load!.failures.every((n, i) => n >= failuresAtStop[i] + OUTAGE_FAILURES)),
        SETTLE_MS,
      );
      const acksDuringOutage = load.acked.total;
      await startPostgres();
      pgDown = false;
      const downMs = Date.now() - stoppedAt;

      // The same platform, untouched, accepts again: new readings, and the unacknowledged ones resent.
      const restartedAt = Date.now();
      load.start(target, 'after');
      await until(
        () => `${ACKS_AFTER} acknowledgements after the restart (errors: ${load!.errors.join('; ')})`,
        () => (assertRunning(platform!), load!.acked.total >= ACKS_AFTER),
        SETTLE_MS,
      );
      const recoveredMs = Date.now() - restartedAt;
      load.stopGenerating();
      await load.settled(SETTLE_MS);
      await load.stop();

      const db = await open();
      try {
        await until(
          'every accepted reading delivered to the webhook receiver and the outbox empty',
          async () => {
            const o = await outboxCounts(db, receiver!.received, load!.readings);
            return o.missing === 0 && o.waiting === 0;
          },
          SETTLE_MS,
        );
        assert.equal(await stop(platform), 0, `the platform did not stop cleanly:\n${platform.output().slice(-3000)}`);
        platform = undefined;
        const { counts, reports } = await readingCounts(db, load.readings);
        const outbox = await outboxCounts(db, receiver.received, load.readings);
        console.log(
          `      ${countsLine('postgres-restart', counts, outbox, {
            resent: load.readings.filter((r) => r.attempts > 1).length,
            down_ms: downMs,
            acks_while_stopping: acksDuringOutage,
            recovered_ms: recoveredMs,
          })}`,
        );
        assertReadingsKept('postgres-restart', reports);
        assert.equal(counts.accepted, counts.sent, 'every reading accepted in the end');
        assert.equal(counts.stored, counts.accepted);
        assert.equal(counts.duplicates, 0);
        assert.equal(outbox.missing, 0, 'every accepted reading reached the webhook receiver');
        assert.equal(outbox.waiting, 0, 'the outbox empty');
        assert.equal(outbox.dead, 0, 'no dead letters');
        assert.equal(outbox.delivered, outbox.enqueued, 'every outbox message delivered');
        assert.equal(outbox.conflicting, 0, 'no webhook id delivered as two different events');
      } finally {
        await db.close();
      }
    });
  });

  describe('Redis down mid-ingest', () => {
    let dataDir = '';
    let platform: Platform | undefined;
    let receiver: Receiver | undefined;
    let load: DeviceLoad | undefined;
    let feed: Awaited<ReturnType<typeof editorFeed>> | undefined;
    let redisDown = false;
    const redis = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 200 });
    redis.on('error', () => undefined);

    after(async () => {
      await load?.stop();
      if (redisDown) await startRedis(); // whatever failed: the specs after this one need the server
      feed?.close();
      await stop(platform);
      await receiver?.stop();
      redis.disconnect();
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    });

    /** The cache's latest record of a reading's name (the key layout of nodes/core/stores/short-term-redis.ts). */
    const cached = async (r: { tenant: string; name: string }): Promise<{ v?: number } | undefined> => {
      const json = await redis.hget(`conflux:{t:${encodeURIComponent(r.tenant)}}:latest:${r.name}`, 'r');
      return json === null ? undefined : (JSON.parse(json) as { v?: number });
    };

    it('the cache tier reports the failure while the time series and webhooks go on; nothing accepted lost; the cache works again', async () => {
      dataDir = tempDataDir();
      const url = await freshDatabase();
      const open = (): Promise<SqlClient> => openSql({ connectionString: url, poolSize: 2 });
      receiver = await new Receiver().start();
      const devices = faultDevices('redis', LOAD_TRANSPORTS, 2);
      const setup = await open();
      try {
        await provision(setup, devices, receiver.url);
      } finally {
        await setup.close();
      }
      const flow = writeFlow(dataDir);
      const shortTerm = nodeOf(flow, 'conflux-short-term').id;
      const errorsDebug = nodeOf(flow, 'catch').wires![0][0];
      const { vars, target } = await platformPorts();
      platform = await start({ ...vars, CONFLUX_DATA_DIR: dataDir, CONFLUX_POSTGRES_URL: url, CONFLUX_REDIS_URL: redisUrl() });
      feed = await editorFeed(platform.port);
      await redis.connect();

      load = new DeviceLoad(devices, { window: 8 });
      const begunAt = Date.now();
      load.start(target, 'before');
      await until(
        () => `${ACKS_BEFORE} acknowledgements before Redis stops (errors: ${load!.errors.join('; ')})`,
        () => (assertRunning(platform!), load!.acked.total >= ACKS_BEFORE),
        SETTLE_MS,
      );
      const beforeMs = Date.now() - begunAt;
      const last = (phase: string) => load!.readings.filter((r) => r.acked && r.phase === phase).at(-1)!;
      assert.equal((await cached(last('before')))?.v !== undefined, true, 'the cache holds the latest values before');

      redisDown = true;
      await stopRedis();
      const stoppedAt = Date.now();
      load.start(target, 'redis-down');
      await until(
        'the short-term node to report the failure in its status and to the Catch node',
        () =>
          (feed!.statuses.get(shortTerm) ?? []).some((st) => st.at >= stoppedAt && st.fill === 'red') &&
          feed!.debug.some((d) => d.id === errorsDebug && d.at >= stoppedAt),
        SETTLE_MS,
      );
      const reported = feed.debug.find((d) => d.id === errorsDebug && d.at >= stoppedAt)!.msg;
      // The rest of the pipeline goes on without the cache: readings are accepted, stored and sent on.
      await until(
        () => `${ACKS_AFTER} acknowledgements while Redis is down (errors: ${load!.errors.join('; ')})`,
        () => (assertRunning(platform!), load!.acked.total >= ACKS_AFTER),
        SETTLE_MS,
      );
      const downMs = Date.now() - stoppedAt;

      await startRedis();
      redisDown = false;
      const startedAt = Date.now();
      load.start(target, 'after');
      await until(`${ACKS_AFTER} acknowledgements after Redis is back`, () => (assertRunning(platform!), load!.acked.total >= ACKS_AFTER), SETTLE_MS);
      // The cache works again by itself: the newest accepted reading of a device is its latest there.
      const newest = last('after');
      await until(`${newest.name} v=${newest.v} in the cache`, async () => (await cached(newest))?.v !== undefined, SETTLE_MS);
      const cacheBackMs = Date.now() - startedAt;
      load.stopGenerating();
      await load.settled(SETTLE_MS);
      await load.stop();

      const db = await open();
      try {
        await until(
          'every accepted reading delivered to the webhook receiver and the outbox empty',
          async () => {
            const o = await outboxCounts(db, receiver!.received, load!.readings);
            return o.missing === 0 && o.waiting === 0;
          },
          SETTLE_MS,
        );
        assert.equal(await stop(platform), 0, `the platform did not stop cleanly:\n${platform.output().slice(-3000)}`);
        platform = undefined;
        const { counts, reports } = await readingCounts(db, load.readings);
        const outbox = await outboxCounts(db, receiver.received, load.readings);
        const during = reports.find((r) => r.phase === 'redis-down')!;
        const acceptedDown = LOAD_TRANSPORTS.reduce((n, t) => n + during.transports[t].acked, 0);
        console.log(
          `      ${countsLine('redis-down', counts, outbox, {
            accepted_while_down: acceptedDown,
            rate_before: Math.round((ACKS_BEFORE * 1000) / beforeMs),
            down_ms: downMs,
            cache_back_ms: cacheBackMs,
          })}`,
        );
        console.log(`      the Catch node got: ${reported.slice(0, 160)}`);
        assertReadingsKept('redis-down', reports);
        assert.equal(counts.accepted, counts.sent, 'every reading accepted in the end');
        assert.equal(counts.stored, counts.accepted);
        assert.equal(counts.duplicates, 0);
        assert.ok(acceptedDown >= ACKS_AFTER, `readings accepted and stored while Redis was down (${acceptedDown})`);
        assert.equal(outbox.missing, 0, 'every accepted reading reached the webhook receiver');
        assert.equal(outbox.waiting, 0, 'the outbox empty');
        assert.equal(outbox.dead, 0, 'no dead letters');
        assert.equal(outbox.delivered, outbox.enqueued, 'every outbox message delivered');
        assert.equal(outbox.conflicting, 0, 'no webhook id delivered as two different events');
      } finally {
        await db.close();
      }
    });
  });
});
