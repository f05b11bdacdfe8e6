/**
 * Fault tests (issue 14, item 2): SIGKILL of one Conflux instance of two that share one
 * PostgreSQL and run the same flow, in the middle of device ingest and of outbox delivery.
 * Each prints its counts (`faults: …`) and asserts on them; docs/faults.md describes both.
 *
 * Ingest: two platforms as `npm start` runs them (dist/settings.js, the shipped flow, each its own
 * data directory and ports, CONFLUX_POSTGRES_URL the same database). Devices provisioned in the
 * business store send over HTTP, TCP and MQTT (tools/device-load), half to A, half to B. After B
 * acknowledged some readings it is SIGKILLed; its devices fail over to A at once and send again
 * what B had not acknowledged, as real devices do, while a supervisor (the test) starts B again;
 * then B's devices go back to the restarted B. A runs throughout. In the end every reading made
 * is acknowledged, and the readings table holds each exactly once (rollups agreeing).
 *
 * Outbox: two Node-RED runtimes (test/support/red-child.ts) with one conflux-webhook-out drain one
 * outbox of webhook messages to a real HTTP receiver, which learns from the outbox row which
 * instance sends each request. Mid-drain, while B has a request out (held by the receiver), B is
 * SIGKILLed: the messages it had claimed stay leased to it until their lease ends, then A claims
 * and delivers them. In the end every message was delivered at least once, every webhook-id always
 * carried the same body, and the outbox is empty.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Pool } from 'pg';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import type { PlatformEvent } from '../../nodes/core/events/event';
import { Mailbox } from '../../nodes/core/mailbox/mailbox';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { deliveryMessage, WEBHOOK_QUEUE } from '../../nodes/core/webhooks/out-sender';
import { DeviceLoad, LOAD_TRANSPORTS, type LoadDevice, type LoadTarget, type Reading } from '../../tools/device-load/load';
import { describePhase, examples, phaseKept, reconcile, type PhaseReport } from '../../tools/device-load/reconcile';
import { freePort, start, START_TIMEOUT_MS, stop, tempDataDir, type Platform } from '../support/platform';
import { startRedChild, type RedChild } from '../support/red-child';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import { Receiver } from '../support/webhook-receiver';

const DEVICES_PER_TRANSPORT = 2;
const WINDOW = 8;
/**
 * B is killed once it acknowledged this many readings of its devices and a reading of theirs is
 * stored and not yet acknowledged, or this long after that many if none is seen.
 */
const KILL_AT = { acks: 400, orAfterMs: 5_000 };
/** Readings of B's devices that A acknowledges before B is back (and at least until B restarted). */
const FAILOVER_ACKS = 200;
/** Readings B's devices send to the restarted B. */
const RESTARTED_ACKS = 200;
const SETTLE_TIMEOUT_MS = 60_000;

/** Outbox messages, and B's deliveries before it is killed. */
const MESSAGES = 600;
const B_DELIVERIES_BEFORE_KILL = 20;
/** conflux-webhook-out leases a claim for at least this long (nodes/webhooks/webhook-out.ts). */
const LEASE_MS = 60_000;

interface Tally {
  sent: number;
  transmissions: number;
  accepted: number;
  stored: number;
  storedUnacked: number;
  lost: number;
  duplicates: number;
  strangers: number;
}

function tally(reports: PhaseReport[], readings: readonly Reading[], phases: readonly string[]): Tally {
  const t: Tally = { sent: 0, transmissions: 0, accepted: 0, stored: 0, storedUnacked: 0, lost: 0, duplicates: 0, strangers: 0 };
  for (const r of reports.filter((x) => phases.includes(x.phase))) {
    for (const tr of LOAD_TRANSPORTS) {
      const x = r.transports[tr];
      t.sent += x.sent;
      t.accepted += x.acked;
      t.stored += x.stored;
      t.storedUnacked += x.storedUnacked;
      t.lost += x.lost;
      t.duplicates += x.duplicates;
      t.strangers += x.strangers;
    }
  }
  t.transmissions = readings.filter((r) => phases.includes(r.phase)).reduce((n, r) => n + r.attempts, 0);
  return t;
}

const line = (t: Tally) =>
  `sent=${t.sent} transmissions=${t.transmissions} accepted=${t.accepted} stored=${t.stored} lost=${t.lost} duplicates=${t.duplicates}` +
  (t.strangers ? ` unexpected=${t.strangers}` : '');

describe('faults: SIGKILL of one instance of two on one PostgreSQL', function () {
  this.timeout(6 * 60_000);

  describe('in the middle of device ingest', () => {
    const dirs = { a: tempDataDir(), b: tempDataDir() };
    const platforms: { a?: Platform; b?: Platform } = {};
    after(async () => {
      for (const p of [platforms.a, platforms.b]) if (p && p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      await Promise.all([platforms.a?.exited, platforms.b?.exited]);
      for (const d of Object.values(dirs)) fs.rmSync(d, { recursive: true, force: true });
    });

    it("stores every acknowledged reading exactly once while B's devices fail over to A and back to a restarted B", async () => {
      const url = await freshDatabase();
      const devices = (which: 'a' | 'b'): LoadDevice[] =>
        LOAD_TRANSPORTS.flatMap((transport) =>
          Array.from({ length: DEVICES_PER_TRANSPORT }, (_, i) => ({
            transport,
            serial: `fault-${which}-${transport}-${i + 1}`,
            key: `key of fault-${which}-${transport}-${i + 1}`,
          })),
        );
      const devicesA = devices('a');
      const devicesB = devices('b');
      // Provisioned before the first start, as an operator would through the business store.
      const setup = await openSql({ connectionString: url, poolSize: 2 });
      try {
        await migrate(setup);
        const store = createBusinessStore(setup);
        for (const d of [...devicesA, ...devicesB]) {
          const row = await store.create('default', 'devices', { serial: d.serial });
          await store.create('default', 'device_keys', { device_id: row.id, key: d.key });
        }
      } finally {
        await setup.close();
      }

      const instance = async (dataDir: string) => {
        const vars = {
          CONFLUX_POSTGRES_URL: url,
          CONFLUX_DATA_DIR: dataDir,
          CONFLUX_PORT: String(await freePort()),
          CONFLUX_TCP_PORT: String(await freePort()),
          CONFLUX_UDP_PORT: String(await freePort()),
          CONFLUX_MQTT_PORT: String(await freePort()),
        };
        const target: LoadTarget = {
          httpBase: `http://127.0.0.1:${vars.CONFLUX_PORT}/devices`,
          tcpPort: Number(vars.CONFLUX_TCP_PORT),
          mqttPort: Number(vars.CONFLUX_MQTT_PORT),
        };
        return { vars, target };
      };
      const a = await instance(dirs.a);
      const b = await instance(dirs.b);
      [platforms.a, platforms.b] = await Promise.all([start(a.vars), start(b.vars)]);

      let killedAt = 0;
      let unackedAtKill = 0;
      let ackedAtKill = 0;
      let killedOnStored: boolean;
      const kill = () => {
        platforms.b!.child.kill('SIGKILL');
        killedAt = Date.now();
        ackedAtKill = loadB.acked.total;
        unackedAtKill = loadB.unacknowledged;
      };
      const loadA = new DeviceLoad(devicesA, { window: WINDOW });
      const loadB = new DeviceLoad(devicesB, { window: WINDOW });
      // The worst moment to die: B committed a reading and has not acknowledged it yet. The watcher
      // kills B as soon as it sees one such (or when the deadline comes).
      const storedUnacked = async (watcher: SqlClient): Promise<boolean> => {
        const pending = loadB.readings.filter((r) => !r.acked && r.attempts > 0);
        if (pending.length === 0) return false;
        const { rows } = await watcher.query<{ i: number }>(
          `SELECT p.i FROM readings r JOIN unnest($1::text[], $2::float8[], $3::float8[]) WITH ORDINALITY AS p(name, t, v, i)
             ON r.tenant_id = 'default' AND r.name = p.name AND r.t BETWEEN to_timestamp(p.t - 0.0005) AND to_timestamp(p.t + 0.0005) AND r.v = p.v`,
          [pending.map((r) => r.name), pending.map((r) => r.t), pending.map((r) => r.v)],
        );
        // Still unacknowledged now, when the kill follows synchronously.
        return rows.some((row) => !pending[Number(row.i) - 1].acked);
      };
      const loadB2 = new DeviceLoad(devicesB, { window: WINDOW });
      const loads = [loadA, loadB, loadB2];
      try {
        loadA.start(a.target, 'a');
        loadB.start(b.target, 'b');
        const t0 = Date.now();
        await until(
          () => `${KILL_AT.acks} acknowledgements from B (${loadB.acked.total}; ${loadB.errors.join('; ') || 'no errors'})`,
          () => loadB.acked.total >= KILL_AT.acks,
          SETTLE_TIMEOUT_MS,
        );
        const deadline = Date.now() + KILL_AT.orAfterMs;
        const watcher = await openSql({ connectionString: url, poolSize: 1 });
        try {
          do killedOnStored = await storedUnacked(watcher);
          while (!killedOnStored && Date.now() < deadline);
          kill();
        } finally {
          await watcher.close();
        }
        const killAfterS = (killedAt - t0) / 1000;
        await platforms.b.exited;
        const exitedAt = Date.now();
        const acksAOnKill = loadA.acked.total;
        // What B had committed without acknowledging it: the devices send it again, and it must stay stored once.
        // Counted before they fail over (until then they find B's port closed), so none of it is A's.
        const unacked = loadB.readings.filter((r) => !r.acked);
        const snapshot = await openSql({ connectionString: url, poolSize: 1 });
        const storedUnackedByB = await reconcile(snapshot, unacked)
          .then((reports) => reports.reduce((n, r) => n + LOAD_TRANSPORTS.reduce((m, t) => m + r.transports[t].storedUnacked, 0), 0))
          .finally(() => snapshot.close());
        // The devices' fail-over: from their next connection on, they send to A.
        loadB.resume(a.target);

        // A supervisor starts B again; meanwhile B's devices are on A.
        platforms.b = await start(b.vars);
        const restartS = (Date.now() - exitedAt) / 1000;
        const byA = () => loadB.readings.filter((r) => r.acked && r.ackedAt! > exitedAt).length;
        await until(
          () => `${FAILOVER_ACKS} readings of B's devices acknowledged by A (${byA()})`,
          () => byA() >= FAILOVER_ACKS,
          SETTLE_TIMEOUT_MS,
        );
        loadB.stopGenerating();
        await loadB.settled(SETTLE_TIMEOUT_MS);
        const failoverAcks = byA();
        await loadB.stop();

        // B's devices back on the restarted B (a load balancer sends them there again).
        loadB2.start(b.target, 'b-restarted');
        await until(
          () => `${RESTARTED_ACKS} readings acknowledged by the restarted B (${loadB2.acked.total}; ${loadB2.errors.join('; ') || 'no errors'})`,
          () => loadB2.acked.total >= RESTARTED_ACKS,
          SETTLE_TIMEOUT_MS,
        );
        loadB2.stopGenerating();
        loadA.stopGenerating();
        await Promise.all([loadB2.settled(SETTLE_TIMEOUT_MS), loadA.settled(SETTLE_TIMEOUT_MS)]);
        const acksADuringOutage = loadA.readings.filter((r) => r.acked && r.ackedAt! > killedAt && r.ackedAt! < exitedAt + restartS * 1000).length;
        await Promise.all(loads.map((l) => l.stop()));

        assert.equal(platforms.a.child.exitCode, null, 'A kept running');
        const codes = await Promise.all([stop(platforms.a), stop(platforms.b)]);
        assert.deepEqual(codes, [0, 0], `the platforms did not stop cleanly:\n${platforms.a.output().slice(-2000)}\n${platforms.b.output().slice(-2000)}`);

        const readings = loads.flatMap((l) => l.readings);
        const db = await openSql({ connectionString: url, poolSize: 2 });
        let reports: PhaseReport[];
        try {
          reports = await reconcile(db, readings);
        } finally {
          await db.close();
        }
        const all = tally(reports, readings, ['a', 'b', 'b-restarted']);
        const resent = readings.filter((r) => r.attempts > 1).length;
        for (const r of reports) console.log(`      ${r.phase}: ${describePhase(r)}`);
        console.log(
          `      B killed ${killedOnStored ? 'as soon as a reading was seen stored and not yet acknowledged' : 'at the deadline'}, ${killAfterS.toFixed(1)} s in, at ${ackedAtKill} acks of its devices, ${unackedAtKill} of their readings unacknowledged (${storedUnackedByB} of those already stored by B); ` +
            `A acknowledged ${acksAOnKill} of its own by then and ${acksADuringOutage} while B was down; B's devices failed over to A (${failoverAcks} acknowledged by A), ` +
            `${resent} readings sent more than once; B restarted in ${restartS.toFixed(1)} s and acknowledged ${loadB2.acked.total}`,
        );
        console.log(`      faults: ingest ${line(all)}`);
        for (const [name, phases] of [
          ['A', ['a']],
          ['B', ['b']],
          ['B restarted', ['b-restarted']],
        ] as const)
          console.log(`      faults: ingest devices of ${name}: ${line(tally(reports, readings, phases))}`);

        const failures = reports.filter((r) => !phaseKept(r)).map((r) => `${r.phase}: ${describePhase(r)}\n        e.g. ${examples(r).join('; ')}`);
        assert.deepEqual(failures, [], 'acknowledged readings not kept exactly once');
        assert.equal(all.accepted, all.sent, 'every reading made was acknowledged in the end');
        assert.equal(all.stored, all.accepted, 'every acknowledged reading is stored');
        assert.equal(all.lost, 0);
        assert.equal(all.duplicates, 0);
        assert.ok(unackedAtKill > 0, 'B had readings in flight when it was killed');
        assert.ok(resent > 0, 'devices sent again what B had not acknowledged');
        assert.ok(acksADuringOutage > 0, 'A went on acknowledging while B was down');
      } finally {
        await Promise.all(loads.map((l) => l.stop()));
      }
    });
  });

  describe('in the middle of outbox delivery', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-faults-outbox-'));
    const instances: RedChild[] = [];
    const receiver = new Receiver();
    let pool: Pool | undefined;
    after(async () => {
      await Promise.all(instances.map((i) => i.kill()));
      await receiver.stop();
      await pool?.end();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('delivers what the killed instance had claimed once its lease ends, every message at least once, each webhook-id with one body', async () => {
      const url = await freshDatabase();
      const setup = await openSql({ connectionString: url, poolSize: 2 });
      let subscription: number;
      try {
        await migrate(setup);
        await receiver.start();
        const row = await createBusinessStore(setup).create('default', 'webhook_subscriptions', { url: receiver.url, events: ['*'] });
        subscription = Number(row.id);
      } finally {
        await setup.close();
      }
      pool = new Pool({ connectionString: url, max: 4 });

      const flowFile = path.join(dir, 'flow.json');
      fs.writeFileSync(
        flowFile,
        JSON.stringify([
          { id: 'tab', type: 'tab', label: 'outbox on two instances' },
          { id: 'db', type: 'conflux-postgres', url },
          // A small capacity and concurrency: each instance holds few claims, so both share the drain.
          {
            id: 'hooks',
            type: 'conflux-webhooks',
            database: 'db',
            allowPrivate: true,
            connectTimeoutMs: '2000',
            responseTimeoutMs: '10000',
            concurrency: '4',
            capacity: '40',
          },
          { id: 'out', type: 'conflux-webhook-out', z: 'tab', webhooks: 'hooks', x: 100, y: 100, wires: [[]] },
        ]),
      );
      const [a, b] = [startRedChild(flowFile), startRedChild(flowFile)];
      instances.push(a, b);
      await Promise.all([a.started, b.started]);
      const who = (worker: string | undefined): 'A' | 'B' | '?' =>
        worker?.includes(`:${a.child.pid}:`) ? 'A' : worker?.includes(`:${b.child.pid}:`) ? 'B' : '?';

      // Every request: which instance sends it (the outbox row is claimed by it while the request is out).
      interface Delivery {
        id: string;
        body: string;
        by: 'A' | 'B' | '?';
        at: number;
      }
      const deliveries: Delivery[] = [];
      let killedAt = 0;
      /** The messages B held when it died, and when their lease ends (ms since the epoch). */
      let leasedByB: Map<string, number> | undefined;
      receiver.handler = (req, res) => {
        const id = String(req.headers['webhook-id']);
        pool!
          .query<{ claimed_by: string | null }>('SELECT claimed_by FROM outbox WHERE queue = $1 AND message_id = $2', [WEBHOOK_QUEUE, `${subscription}:${id}`])
          .then(
            async ({ rows }) => {
              const by = who(rows[0]?.claimed_by ?? undefined);
              deliveries.push({ id, body: req.body, by, at: Date.now() });
              if (by === 'B' && !killedAt && deliveries.filter((d) => d.by === 'B').length >= B_DELIVERIES_BEFORE_KILL) {
                // B has this request out, unanswered: it dies in the middle of delivering.
                killedAt = Date.now();
                await b.kill();
                const { rows: left } = await pool!.query<{ message_id: string; lease_until: Date }>(
                  'SELECT message_id, lease_until FROM outbox WHERE claimed_by LIKE $1',
                  [`%:${b.child.pid}:%`],
                );
                leasedByB = new Map(left.map((r) => [r.message_id.slice(`${subscription}:`.length), r.lease_until.getTime()]));
              }
              res.writeHead(204).end();
            },
            (err: Error) => res.writeHead(500).end(err.message),
          );
      };

      const events: PlatformEvent[] = Array.from({ length: MESSAGES }, (_, i) => ({
        id: `evt_fault_${String(i).padStart(4, '0')}`,
        type: 'vehicle.processed',
        tenant: 'default',
        occurredAt: new Date().toISOString(),
        subject: `vin-${i}`,
        data: { n: i },
      }));
      const t0 = Date.now();
      const db = await openSql({ connectionString: url, poolSize: 1 });
      try {
        await new Mailbox(db, 'outbox').enqueue(
          'default',
          WEBHOOK_QUEUE,
          events.map((e) => deliveryMessage(subscription, e)),
        );
      } finally {
        await db.close();
      }

      const unique = () => new Set(deliveries.map((d) => d.id));
      await until(
        () => `B to deliver ${B_DELIVERIES_BEFORE_KILL} and be killed (${deliveries.filter((d) => d.by === 'B').length} by B of ${deliveries.length})`,
        () => leasedByB !== undefined,
        START_TIMEOUT_MS,
      );
      const leaseEnds = leasedByB!;
      const leased = [...leaseEnds.keys()];
      const beforeKill = unique().size;
      // The lease runs from B's last claim: A takes its messages back at most LEASE_MS after the kill.
      await until(
        () => `every message delivered (${unique().size} of ${MESSAGES}; ${leased.length} were leased to B)\n${a.output().slice(-2000)}`,
        () => unique().size === MESSAGES,
        LEASE_MS + 60_000,
      );
      const allDeliveredS = (Date.now() - t0) / 1000;
      await until('the outbox to be empty', async () => (await pool!.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox')).rows[0].n === 0, 30_000);
      const dead = (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM dead_letters')).rows[0].n;

      const bodies = new Map<string, Set<string>>();
      for (const d of deliveries) (bodies.get(d.id) ?? bodies.set(d.id, new Set()).get(d.id)!).add(d.body);
      const twoBodies = [...bodies].filter(([, s]) => s.size > 1).map(([id]) => id);
      const wrongBody = deliveries.filter((d) => (JSON.parse(d.body) as { id: string }).id !== d.id).map((d) => d.id);
      const duplicates = deliveries.length - unique().size;
      const duplicated = [...new Set(deliveries.filter((d, i) => deliveries.findIndex((x) => x.id === d.id) !== i).map((d) => d.id))];
      const afterKill = deliveries.filter((d) => d.at > killedAt);
      const leasedBack = leased.filter((id) => afterKill.some((d) => d.id === id && d.by === 'A'));
      // A took none of them while B's lease held (the receiver's clock is the database's: one machine).
      const early = afterKill.filter((d) => d.by === 'A' && leaseEnds.has(d.id) && d.at < leaseEnds.get(d.id)!).map((d) => d.id);
      const backAfterS = afterKill.filter((d) => d.by === 'A' && leaseEnds.has(d.id)).map((d) => (d.at - killedAt) / 1000);
      const by = (x: string, ds: Delivery[]) => ds.filter((d) => d.by === x).length;
      console.log(
        `      B killed with a request out after ${by('B', deliveries)} deliveries (${beforeKill} of ${MESSAGES} messages delivered by then), ` +
          `${leased.length} messages leased to B; A delivered ${by('A', afterKill)} after the kill, ${leasedBack.length} of them B's once its lease ended (${Math.min(...backAfterS).toFixed(1)}–${Math.max(...backAfterS).toFixed(1)} s after the kill); ` +
          `all delivered ${allDeliveredS.toFixed(1)} s after enqueueing; deliveries by A ${by('A', deliveries)}, by B ${by('B', deliveries)}, unattributed ${by('?', deliveries)}`,
      );
      console.log(
        `      faults: outbox enqueued=${MESSAGES} delivered=${unique().size} deliveries=${deliveries.length} duplicates=${duplicates} two-bodies=${twoBodies.length} dead=${dead}`,
      );

      assert.equal(unique().size, MESSAGES, 'every message delivered at least once');
      assert.deepEqual(twoBodies, [], 'a webhook-id always carries the same body');
      assert.deepEqual(wrongBody, [], 'each body is the event of its webhook-id');
      assert.equal(dead, 0, 'nothing dead-lettered');
      assert.ok(by('A', deliveries) > 0 && by('B', deliveries) > 0, 'both instances delivered');
      assert.ok(leased.length > 0, 'B held claimed messages when it was killed');
      assert.deepEqual(leasedBack.sort(), [...leased].sort(), 'A delivered every message leased to B, after the kill');
      assert.deepEqual(early, [], "none of B's messages was delivered again before its lease ended");
      assert.ok(duplicates >= 1, 'the request B had out when it died was delivered again');
      assert.deepEqual(
        duplicated.filter((id) => !leased.includes(id)),
        [],
        'only messages B held when it died were delivered twice',
      );
      assert.equal(by('?', deliveries), 0, 'every request came from an instance holding its message');
    });
  });
});
