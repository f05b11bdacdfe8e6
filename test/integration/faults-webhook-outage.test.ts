/**
 * Fault test (issue 14, item 2): a webhook receiver down for five minutes, by the wall clock.
 *
 * The platform as `npm start` runs it (dist/settings.js, CONFLUX_POSTGRES_URL on the test server,
 * the shipped getting-started flow), its webhooks configured with a retry schedule that keeps
 * trying through the outage (every 5 s, for ten minutes) and a circuit breaker that opens for 5 s
 * after 5 failures in a row, so delivery resumes within seconds once the receiver is back. Devices
 * send readings over HTTP, TCP and MQTT before, during (a burst every minute) and after the outage;
 * each accepted reading is one reading.received event for the one subscription.
 *
 * While the receiver is down, every minute: failed attempts keep being logged, the outbox holds
 * every message accepted since it went down, nothing goes to the dead letters. When it is back:
 * the first delivery comes within seconds, then every message; the counts of enqueued and
 * delivered agree, no id comes as two different events, every accepted reading stored once.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { DeviceLoad, LOAD_TRANSPORTS } from '../../tools/device-load/load';
import {
  assertReadingsKept,
  assertRunning,
  countsLine,
  faultDevices,
  outboxCounts,
  platformPorts,
  provision,
  readingCounts,
  writeFlow,
} from '../support/faults';
import { start, stop, tempDataDir, type Platform } from '../support/platform';
import { freshDatabase } from '../support/servers';
import { elapse, until } from '../support/wait';
import { Receiver } from '../support/webhook-receiver';

const OUTAGE_MS = 5 * 60_000;
/** Readings accepted in each burst: before, every minute of the outage, after. */
const BURST = 200;
const CHECK_EVERY_MS = 60_000;
/** Retries every 5 s for ten minutes: longer than the outage, so nothing is given up. */
const SCHEDULE = Array.from({ length: 120 }, () => '5s').join(', ');
/** How soon after the receiver is back the first delivery must come: the schedule's 5 s, the breaker's 5 s, a claim. */
const RESUME_WITHIN_MS = 20_000;
const SETTLE_MS = 180_000;

describe('faults: a webhook receiver down for five minutes', function () {
  this.timeout(OUTAGE_MS + 10 * 60_000);
  let dataDir = '';
  let platform: Platform | undefined;
  let receiver: Receiver | undefined;
  let load: DeviceLoad | undefined;

  after(async () => {
    await load?.stop();
    await stop(platform);
    await receiver?.stop();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('the outbox keeps every message and keeps trying; delivery resumes within seconds; every one delivered, none as two events', async () => {
    dataDir = tempDataDir();
    const url = await freshDatabase();
    const db: SqlClient = await openSql({ connectionString: url, poolSize: 2 });
    try {
      receiver = await new Receiver().start();
      const devices = faultDevices('hook', LOAD_TRANSPORTS, 1);
      await provision(db, devices, receiver.url);
      writeFlow(dataDir, { schedule: SCHEDULE, failureThreshold: 5, openSeconds: 5 });
      const { vars, target } = await platformPorts();
      platform = await start({ ...vars, CONFLUX_DATA_DIR: dataDir, CONFLUX_POSTGRES_URL: url });
      load = new DeviceLoad(devices, { window: 4 });
      const burst = async (phase: string): Promise<void> => {
        load!.start(target, phase);
        await until(
          () => `${BURST} readings accepted in ${phase} (errors: ${load!.errors.join('; ')})`,
          () => (assertRunning(platform!), load!.acked.total >= BURST),
          SETTLE_MS,
        );
        load!.stopGenerating();
        await load!.settled(SETTLE_MS);
      };
      const accepted = () => load!.readings.filter((r) => r.acked).length;
      const retries = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE outcome = 'retry'`)).rows[0].n;
      const waiting = async () => (await outboxCounts(db, receiver!.received, load!.readings)).waiting;
      const dead = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM dead_letters`)).rows[0].n;

      await burst('before');
      await until(
        'the readings before the outage delivered',
        async () => (await outboxCounts(db, receiver!.received, load!.readings)).missing === 0,
        SETTLE_MS,
      );

      await receiver.stop();
      const downAt = Date.now();
      const acceptedBefore = accepted();
      const minutes: string[] = [];
      let lastRetries = await retries();
      // The outage is the scenario: five minutes by the clock, checked every minute.
      for (let minute = 1; Date.now() - downAt < OUTAGE_MS; minute++) {
        await burst(`outage-${minute}`);
        const since = accepted() - acceptedBefore;
        await until(`failed attempts logged in minute ${minute} (still ${lastRetries})`, async () => (await retries()) > lastRetries, CHECK_EVERY_MS);
        lastRetries = await retries();
        const depth = await waiting();
        assert.ok(depth >= since, `minute ${minute}: the outbox holds ${depth} messages, ${since} accepted since the receiver went down`);
        assert.equal(await dead(), 0, `minute ${minute}: nothing given up`);
        minutes.push(`${minute}:${depth}/${lastRetries}`);
        const left = OUTAGE_MS - (Date.now() - downAt);
        if (left > 0) await elapse(Math.min(CHECK_EVERY_MS, left));
      }
      const outageMs = Date.now() - downAt;
      const enqueuedDuringOutage = await waiting();
      const requestsBefore = receiver.received.length;

      await receiver.start(); // the same port
      const backAt = Date.now();
      await until('the first delivery after the receiver came back', () => receiver!.received.length > requestsBefore, RESUME_WITHIN_MS);
      const resumeMs = receiver.received[requestsBefore].at - backAt;
      await until('the outbox drained', async () => (await waiting()) === 0, SETTLE_MS);
      const drainedMs = Date.now() - backAt;
      await burst('after');
      await load.stop();
      await until(
        'every accepted reading delivered and the outbox empty',
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
        `      ${countsLine('webhook-outage', counts, outbox, {
          outage_s: Math.round(outageMs / 1000),
          waiting_at_return: enqueuedDuringOutage,
          failed_attempts: lastRetries,
          resume_ms: resumeMs,
          drained_ms: drainedMs,
        })}`,
      );
      console.log(`      minute:outbox/failed attempts ${minutes.join(' ')}`);
      assert.ok(outageMs >= OUTAGE_MS, 'down five minutes');
      assertReadingsKept('webhook-outage', reports);
      assert.equal(counts.accepted, counts.sent);
      assert.equal(counts.stored, counts.accepted);
      assert.equal(counts.duplicates, 0);
      assert.ok(minutes.length >= 5, `checked every minute (${minutes.length})`);
      assert.ok(resumeMs < RESUME_WITHIN_MS, `delivery resumed ${resumeMs} ms after the receiver came back`);
      assert.equal(outbox.delivered, outbox.enqueued, 'every message enqueued was delivered');
      assert.equal(outbox.missing, 0, 'every accepted reading reached the receiver');
      assert.equal(outbox.waiting, 0);
      assert.equal(outbox.dead, 0);
      assert.equal(outbox.conflicting, 0, 'no webhook id delivered as two different events');
    } finally {
      await db.close();
    }
  });
});
