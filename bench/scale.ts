/**
 * `npm run bench -- scale`: readings per second end to end with 1, 2 and 4 instances, and the CPU
 * each reading costs, to project the rate on bigger machines.
 *
 *   devices ──MQTT──▶ mosquitto ──$share/──▶ N instances ──▶ PostgreSQL (readings) ──▶ webhook ──▶ receiver
 *
 *   Conflux  `conflux-mqtt-in` (client, MQTT 5, share group, QoS 1, PUBACK once the flow finished;
 *            decodes the SenML pack) → `conflux-time-series` (SQL, group commit, binary COPY,
 *            rollups off) → `conflux-webhook-out` (the event `reading.received` in the outbox
 *            before done(); the instance's sender signs and POSTs it, then deletes and logs it).
 *   Core     `mqtt in` (MQTT 5, the same kind of `$share/` filter, QoS 1, acknowledged on receipt)
 *            → `function` (bench/pipeline.ts's: decode, one INSERT per message through a
 *            pg.Pool of 10) → `function` (the same event body, node:crypto HMAC, the Standard
 *            Webhooks headers) → `http request` (POST, keep-alive). Nothing kept for a retry.
 *
 * Each instance is a Node-RED runtime in a child process of its own (bench/scale-instance.ts),
 * all on one mosquitto (bench/mosquitto.ts) and one PostgreSQL (the test server, fsync off). The
 * devices and the receiver are worker threads of this process (bench/scale-load.ts). For each
 * instance count, N instances of each side run side by side (each side on its own topics and
 * share group), a warm-up round per side, then ROUNDS rounds alternating which side goes first.
 * A round's rate: readings the receiver got (each webhook id once) over the time from the first
 * publish to the last delivery. Its CPU (bench/cpu.ts, /proc): user + system seconds of the
 * side's instance processes, of the PostgreSQL server (every backend), of mosquitto and of this
 * process (devices and receiver), from just before the first publish until the side has
 * finished everything the round gave it (Conflux: the outbox empty, every delivery logged).
 *
 * Smaller runs: BENCH_SCALE_PER_DEVICE (packs per device per round, default 250: 50,000 readings),
 * BENCH_SCALE_ROUNDS (default 5), BENCH_SCALE_INSTANCES (default 1,2,4), BENCH_SCALE_RECORDS
 * (readings per pack, default 10), BENCH_SCALE_SIDES (conflux,core).
 */
import { strict as assert } from 'node:assert';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { cpuSeconds, machineCpuSeconds, parentPid, treeCpuSeconds } from './cpu';
import { fmt, machine, median } from './harness';
import { epochMs, roundTimes, serial, startWorker, type FromReceiver, type Side } from './scale-load';

const num = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const INSTANCES = (process.env.BENCH_SCALE_INSTANCES ?? '1,2,4').split(',').map(Number);
const ROUNDS = num('BENCH_SCALE_ROUNDS', 5);
const DEVICES = 20;
const PER_DEVICE = num('BENCH_SCALE_PER_DEVICE', 250);
const RECORDS = num('BENCH_SCALE_RECORDS', 10);
const WINDOW = 16;
const POOL = 10;
/** Requests in flight per endpoint per Conflux instance (the config node's default is 8; bench/webhooks.ts uses 64 too). */
const CONCURRENCY = 64;
const TENANT = 'default';
const SIDES: Side[] = (process.env.BENCH_SCALE_SIDES ?? 'conflux,core').split(',') as Side[];
/** A round that has received nothing new for this long ends with what arrived (losses reported). */
const STALL_MS = 20_000;

/** The core flow's second function: the event body, its id, and the Standard Webhooks signature. */
const SIGN_FUNCTION = `
const crypto = global.get("crypto");
const secret = global.get("webhookSecret");
const t = msg.payload.reduce((m, r) => Math.min(m, r.t), Infinity);
const id = "evt_" + crypto.createHash("sha256").update(msg.device.tenant + "\\n" + msg.device.id + "\\n" + msg.payload.map((r) => r.n + "@" + r.t).join("\\n")).digest("hex").slice(0, 26);
const body = JSON.stringify({ id: id, type: "reading.received", tenant: msg.device.tenant, occurredAt: new Date(t * 1000).toISOString(), subject: msg.device.id, data: { device: msg.device.id, records: msg.payload } });
const ts = Math.floor(Date.now() / 1000);
const signature = crypto.createHmac("sha256", Buffer.from(secret.slice(6), "base64")).update(id + "." + ts + "." + body).digest("base64");
msg.headers = { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": "v1," + signature };
msg.payload = body;
return msg;`;

function confluxFlow(dbUrl: string, brokerUrl: string, clientId: string): Array<Record<string, unknown>> {
  return [
    { id: 'tab', type: 'tab', label: 'scale' },
    { id: 'db', type: 'conflux-postgres', url: dbUrl, poolSize: String(POOL) },
    { id: 'gw', type: 'conflux-gateway', database: 'db' },
    { id: 'hooks', type: 'conflux-webhooks', database: 'db', allowPrivate: true, concurrency: String(CONCURRENCY) },
    {
      id: 'in',
      type: 'conflux-mqtt-in',
      z: 'tab',
      gateway: 'gw',
      mode: 'client',
      url: brokerUrl,
      protocolVersion: '5',
      clientId,
      topics: 'senml/+/+/attrs',
      shareGroup: 'conflux',
      qos: '1',
      sessionExpiry: '0', // no session outlives its instance: the next configuration's group has only live members
      maxInFlight: '1000',
      ack: 'stored',
      wires: [['ts']],
    },
    {
      id: 'ts',
      type: 'conflux-time-series',
      z: 'tab',
      engine: 'sql',
      database: 'db',
      rollups: false,
      batchSize: '1000',
      batchDelay: '0',
      maxPending: '50000',
      wires: [['out'], []],
    },
    { id: 'out', type: 'conflux-webhook-out', z: 'tab', webhooks: 'hooks', tenant: TENANT, wires: [[]] },
  ];
}

function coreFlow(brokerPort: number, clientId: string, receiverUrl: string, insert: string): Array<Record<string, unknown>> {
  return [
    { id: 'tab', type: 'tab', label: 'scale' },
    {
      id: 'broker',
      type: 'mqtt-broker',
      broker: '127.0.0.1',
      port: String(brokerPort),
      clientid: clientId,
      autoConnect: true,
      usetls: false,
      protocolVersion: '5',
      keepalive: '60',
      cleansession: true,
    },
    {
      id: 'in',
      type: 'mqtt in',
      z: 'tab',
      topic: '$share/core/core/+/+/attrs',
      qos: '1',
      datatype: 'utf8',
      broker: 'broker',
      nl: false,
      rap: true,
      rh: 0,
      inputs: 0,
      wires: [['decode']],
    },
    { id: 'decode', type: 'function', z: 'tab', func: insert, outputs: 1, wires: [['sign']] },
    { id: 'sign', type: 'function', z: 'tab', func: SIGN_FUNCTION, outputs: 1, wires: [['post']] },
    { id: 'post', type: 'http request', z: 'tab', method: 'POST', ret: 'txt', paytoqs: 'ignore', url: receiverUrl, persist: true, senderr: false, wires: [[]] },
  ];
}

interface Instance {
  side: Side;
  clientId: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startInstance(
  side: Side,
  clientId: string,
  flow: Array<Record<string, unknown>>,
  poolUrl: string | undefined,
  globals: Record<string, unknown>,
): Promise<Instance> {
  const child = fork(path.join(__dirname, 'scale-instance.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = await new Promise<{ ready?: true; error?: string }>((resolve) => {
    child.once('message', resolve);
    child.once('exit', (code) => resolve({ error: `exited with ${code}` }));
    child.send({ flow, poolUrl, poolSize: POOL, globals });
  });
  if (ready.error) throw new Error(`instance ${clientId}: ${ready.error}`);
  return {
    side,
    clientId,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 20_000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.send('stop');
      }),
  };
}

interface RoundResult {
  rate: number;
  readings: number;
  lost: number;
  /** CPU seconds over the round */
  cpu: { instances: number; postgres: number; mosquitto: number; load: number; busy: number; total: number; others: number };
}

/** CPU ms per reading of a round, from CPU seconds. */
const perReading = (seconds: number, r: RoundResult) => (seconds * 1000) / r.readings;

export async function run(): Promise<boolean> {
  const pg = await import('pg');
  const { startServers, freshDatabase } = await import('../test/support/servers');
  const { startMosquitto } = await import('./mosquitto');
  const { openSql } = await import('../nodes/core/db/sql');
  const { migrate } = await import('../nodes/core/db/migrate');
  const { createBusinessStore } = await import('../nodes/core/stores/business');
  const { CORE_FUNCTION } = await import('./pipeline');

  if (ROUNDS < 5) process.stderr.write(`  scale: ${ROUNDS} rounds: a smoke run, not a measurement (a median wants at least 5)\n`);
  startServers();
  const dbUrl = await freshDatabase();
  const db = await openSql({ connectionString: dbUrl, poolSize: 2 });
  await migrate(db);
  const durability = (
    await db.query<{ name: string; setting: string }>("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit') ORDER BY name")
  ).rows
    .map((r) => `${r.name}=${r.setting}`)
    .join(', ');
  const store = createBusinessStore(db);
  for (let i = 0; i < DEVICES; i++) await store.create(TENANT, 'devices', { serial: serial(i) });
  const secret = `whsec_${randomBytes(24).toString('base64')}`;

  const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
  pool.on('error', () => undefined);
  const postmaster = parentPid(Number((await pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid));
  const broker = await startMosquitto();
  const workers: Worker[] = [];
  let instances: Instance[] = [];
  const results = new Map<string, RoundResult[]>();
  const key = (n: number, side: Side) => `${n}:${side}`;
  const started = Date.now();
  const loadBefore = os.loadavg();
  try {
    // The receiver: progress and the end of a round come unasked.
    let onReceiver: ((m: FromReceiver) => void) | undefined;
    const receiver = startWorker<FromReceiver & { error?: string }>({ receiver: { secret } }, (m) => {
      if (!('progress' in m) && !('done' in m)) return false;
      onReceiver?.(m);
      return true;
    });
    workers.push(receiver.worker);
    const first = await receiver.reply();
    if (!('port' in first)) throw new Error(`the receiver did not start: ${JSON.stringify(first)}`);
    const receiverUrl = `http://127.0.0.1:${first.port}/hook`;
    await store.create(TENANT, 'webhook_subscriptions', { url: receiverUrl, events: ['reading.*'], secret });

    // Every round's times in the past hour(s), none in the future (bench/scale-load.ts, roundTimes).
    const t0 = Math.floor(Date.now() / 1000) - 3_600 - INSTANCES.length * SIDES.length * (ROUNDS + 1) * PER_DEVICE;
    const devices = startWorker<{ ready?: true; sent?: true; error?: string }>({
      devices: { url: broker.url, devices: DEVICES, perDevice: PER_DEVICE, records: RECORDS, window: WINDOW, tenant: TENANT, t0 },
    });
    workers.push(devices.worker);
    const devicesReady = await devices.reply();
    if (!devicesReady.ready) throw new Error(`the devices did not start: ${devicesReady.error}`);

    const total = DEVICES * PER_DEVICE * RECORDS;
    const count = async (table: string) => Number((await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);
    let roundNo = 0;

    async function once(side: Side): Promise<RoundResult> {
      await pool.query('TRUNCATE readings, webhook_deliveries, webhook_events');
      const round = roundNo++;
      receiver.worker.postMessage({ target: total, times: roundTimes(t0, round, PER_DEVICE) });
      const mine = instances.filter((x) => x.side === side);
      const snapshot = () => ({
        instances: mine.reduce((s, x) => s + cpuSeconds(x.child.pid!), 0),
        // both sides' instances: the idle side's timers are this bench's, not another session's
        all: instances.reduce((s, x) => s + cpuSeconds(x.child.pid!), 0),
        postgres: treeCpuSeconds(postmaster),
        mosquitto: cpuSeconds(broker.pid),
        load: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
        ...machineCpuSeconds(),
      });
      const before = snapshot();
      const start = epochMs();
      const done = new Promise<Extract<FromReceiver, { done: true }>>((resolve) => {
        let lastAt = Date.now();
        let last = -1;
        const stall = setInterval(() => {
          if (Date.now() - lastAt > STALL_MS) receiver.worker.postMessage('report');
        }, 1_000);
        onReceiver = (m) => {
          if ('progress' in m && m.progress !== last) [last, lastAt] = [m.progress, Date.now()];
          if ('done' in m) {
            clearInterval(stall);
            resolve(m);
          }
        };
      });
      devices.worker.postMessage({ side, round });
      const sent = await devices.reply();
      if (sent.error) throw new Error(`${side}: the devices failed: ${sent.error}`);
      const got = await done;
      onReceiver = undefined;
      assert.deepEqual(got.bad, [], 'every delivery parses and every sampled signature verifies');
      assert.ok(got.verified > 0, 'signatures were checked');
      if (got.strays > 0) process.stderr.write(`  ${side}: ${got.strays} late deliveries of an earlier round arrived (not counted)\n`);
      for (const x of mine) if (x.child.exitCode !== null) throw new Error(`instance ${x.clientId} exited with ${x.child.exitCode}`);
      // Not timed, but its CPU counted: what the round still costs after the last delivery
      // (Conflux acknowledges and logs each delivery after the receiver answered).
      const deadline = Date.now() + 60_000;
      while (side === 'conflux' && (await count('outbox')) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (side === 'conflux' && (await count('outbox')) > 0) process.stderr.write('  conflux: the outbox still holds deliveries 60 s after the round\n');
      const stored = await count('readings');
      const after = snapshot();
      const lost = total - Math.min(got.readings, stored);
      if (lost > 0) process.stderr.write(`  ${side}: ${lost} of ${total} readings not stored or not delivered (stored ${stored}, delivered ${got.readings})\n`);
      const d = (k: keyof typeof before) => after[k] - before[k];
      return {
        rate: got.readings / ((got.last - start) / 1000),
        readings: got.readings,
        lost,
        cpu: {
          instances: d('instances'),
          postgres: d('postgres'),
          mosquitto: d('mosquitto'),
          load: d('load'),
          busy: d('busy'),
          total: d('total'),
          others: d('busy') - d('all') - d('postgres') - d('mosquitto') - d('load'),
        },
      };
    }

    for (const n of INSTANCES) {
      const startedAt = Date.now();
      const starting = await Promise.allSettled(
        SIDES.flatMap((side) =>
          Array.from({ length: n }, (_, i) => {
            const clientId = `scale-${side}-${n}-${i}`;
            return side === 'conflux'
              ? startInstance(side, clientId, confluxFlow(dbUrl, broker.url, clientId), undefined, {})
              : startInstance(side, clientId, coreFlow(broker.port, clientId, receiverUrl, CORE_FUNCTION), dbUrl, { webhookSecret: secret });
          }),
        ),
      );
      // Those that started are stopped in `finally` if another did not: no child left behind.
      instances = starting.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
      const failed = starting.find((x) => x.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      await broker.subscribed(instances.map((x) => x.clientId));
      process.stderr.write(`  scale: ${n} instance(s) per side started in ${((Date.now() - startedAt) / 1000).toFixed(1)} s\n`);
      try {
        for (let r = -1; r < ROUNDS; r++) {
          for (const side of r % 2 === 0 ? [...SIDES].reverse() : SIDES) {
            const o = await once(side);
            const ms = perReading(o.cpu.instances, o).toFixed(3);
            process.stderr.write(
              `  scale ${n} instance(s) ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${side}: ${fmt(o.rate)} readings/s, ${ms} ms CPU/reading in the instances\n`,
            );
            if (r >= 0) results.set(key(n, side), [...(results.get(key(n, side)) ?? []), o]);
          }
        }
      } finally {
        await Promise.all(instances.map((x) => x.stop()));
        instances = [];
      }
    }
  } finally {
    // Whatever failed: every child, thread and server this run started goes (or the process would not exit).
    await Promise.all(instances.map((x) => x.stop()));
    await Promise.all(workers.map((w) => w.terminate()));
    await broker.stop();
    await pool.end();
    await db.close();
  }
  return report(results, key, { durability, loadBefore, minutes: (Date.now() - started) / 60_000 });
}

function report(
  results: Map<string, RoundResult[]>,
  key: (n: number, side: Side) => string,
  info: { durability: string; loadBefore: number[]; minutes: number },
): boolean {
  const sides = (n: number) => SIDES.map((side) => ({ side, rounds: results.get(key(n, side)) ?? [] }));
  const med = (rounds: RoundResult[], f: (r: RoundResult) => number) => median(rounds.map(f));
  const ms = (x: number) => x.toFixed(3);
  const ratio = (n: number) => {
    const [c, b] = [results.get(key(n, 'conflux')), results.get(key(n, 'core'))];
    return c && b ? `${(med(c, (r) => r.rate) / med(b, (r) => r.rate)).toFixed(2)}x` : '';
  };
  const rate = (n: number, side: Side) => {
    const r = results.get(key(n, side));
    return r ? fmt(med(r, (x) => x.rate)) : '';
  };
  const instMs = (n: number, side: Side) => {
    const r = results.get(key(n, side));
    return r ? ms(med(r, (x) => perReading(x.cpu.instances, x))) : '';
  };

  console.log(
    `\n### Scale: readings/s, MQTT $share/ → SenML → PostgreSQL → outbox → webhook, 1 to ${Math.max(...INSTANCES)} instances — ${new Date().toISOString().slice(0, 10)}\n`,
  );
  console.log(`${machine()}\n`);
  console.log('| instances | Conflux readings/s | core readings/s | ratio | Conflux CPU ms/reading (instances) | core CPU ms/reading (instances) |');
  console.log('|---:|---:|---:|---:|---:|---:|');
  for (const n of INSTANCES)
    console.log(`| ${n} | ${rate(n, 'conflux')} | ${rate(n, 'core')} | ${ratio(n)} | ${instMs(n, 'conflux')} | ${instMs(n, 'core')} |`);

  console.log(
    '\nCPU ms per reading by process (user + system, medians of the rounds), the share of the machine busy and of it used by processes outside the bench (idle test servers, other sessions: a few % on a quiet machine), and what it projects to in readings/s: per core of instances, 1,000 / their ms; per core for instances and engines together, 1,000 / the sum; mosquitto is single-threaded, so 1,000 / its ms is its ceiling however many cores it has:\n',
  );
  console.log(
    '| instances | side | instances | PostgreSQL | mosquitto | devices + receiver | machine busy | other processes | per instance core | per core, instances + PostgreSQL + mosquitto | mosquitto ceiling |',
  );
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const n of INSTANCES) {
    for (const { side, rounds } of sides(n)) {
      if (!rounds.length) continue;
      const inst = med(rounds, (r) => perReading(r.cpu.instances, r));
      const pgMs = med(rounds, (r) => perReading(r.cpu.postgres, r));
      const mq = med(rounds, (r) => perReading(r.cpu.mosquitto, r));
      const load = med(rounds, (r) => perReading(r.cpu.load, r));
      const busy = med(rounds, (r) => (100 * r.cpu.busy) / r.cpu.total);
      const others = med(rounds, (r) => (100 * r.cpu.others) / r.cpu.total);
      console.log(
        `| ${n} | ${side} | ${ms(inst)} | ${ms(pgMs)} | ${ms(mq)} | ${ms(load)} | ${busy.toFixed(0)} % | ${others.toFixed(0)} % | ${fmt(1000 / inst)} | ${fmt(1000 / (inst + pgMs + mq))} | ${fmt(1000 / mq)} |`,
      );
    }
  }

  console.log('\nEvery timed run, in order (readings/s; instances CPU ms/reading in brackets):\n\n| instances | side | runs |\n|---:|---|---|');
  for (const n of INSTANCES)
    for (const { side, rounds } of sides(n))
      if (rounds.length) console.log(`| ${n} | ${side} | ${rounds.map((r) => `${fmt(r.rate)} (${ms(perReading(r.cpu.instances, r))})`).join(', ')} |`);

  const lost = new Map<Side, number>(
    SIDES.map((side) => [side, INSTANCES.reduce((s, n) => s + (results.get(key(n, side)) ?? []).reduce((a, r) => a + r.lost, 0), 0)]),
  );
  console.log(`\nReadings not stored or not delivered, over all timed rounds: ${SIDES.map((s) => `${s} ${lost.get(s)}`).join(', ')}.`);
  console.log(
    `\nPer round: ${DEVICES} devices × ${PER_DEVICE} SenML packs of ${RECORDS} readings = ${fmt(DEVICES * PER_DEVICE * RECORDS)} readings (${fmt(DEVICES * PER_DEVICE)} webhook deliveries), QoS 1, up to ${WINDOW} unacknowledged per device; ${ROUNDS} rounds per instance count after a warm-up, sides alternating, median kept. One mosquitto 2.0, PostgreSQL 15 of the test servers (${info.durability}). Bench time ${info.minutes.toFixed(1)} min; load average (1, 5, 15 min) ${info.loadBefore.map((x) => x.toFixed(2)).join(', ')} before, ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(', ')} after.`,
  );
  console.log(`
Projection (how to read the CPU table for a bigger machine): with c_inst, c_pg and c_mq the CPU
seconds per reading of the instances, PostgreSQL and mosquitto (ms above / 1,000), a deployment
sustains about min(C_inst / c_inst, C_pg / c_pg, 1 / c_mq) readings/s, where C_inst and C_pg are
the cores given to the instances and to PostgreSQL (mosquitto uses one core however many it has);
on one machine of C cores shared by all three, C / (c_inst + c_pg + c_mq), less what the devices
and receivers take there. Use the row with the most instances (it carries the cost of spreading
the load) and check that c_inst stays flat from 1 to ${Math.max(...INSTANCES)} instances: on this machine the
rate cannot grow with instances (every process shares the same cores, "machine busy" near 100 %),
so what carries over is the CPU per reading, not the rate. Assumes CPU is the limit: fsync is off
here; with durable commits PostgreSQL also waits on its disk, which group commit amortises.`);
  return [...lost.entries()].every(([side, n]) => side !== 'conflux' || n === 0);
}
