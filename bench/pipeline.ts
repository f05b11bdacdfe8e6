/**
 * `npm run bench -- pipeline`: readings per second from devices over MQTT into the PostgreSQL
 * time series, end to end, against the flow an integrator would build from core nodes. Same run,
 * same broker, same database, same publisher load; the cases alternate round by round.
 *
 *   Conflux  `conflux-mqtt-in` (client of the broker; decodes SenML with the codec conflux-senml
 *            uses; PUBACK once the flow has finished, i.e. once stored) → `conflux-time-series`
 *            (SQL engine on conflux-postgres, group commit, binary COPY) → count.
 *   Core     `mqtt in` (QoS 1; mqtt.js acknowledges on receipt) → `function`: decodes the SenML
 *            pack (base name, time and unit resolved, names checked, prefixed with the serial),
 *            then one multi-row `INSERT … ON CONFLICT DO NOTHING` per message through a pg.Pool
 *            of 10 from global context (what node-red-contrib-postgresql does: one query per
 *            message), and passes the message on once the INSERT resolved → count.
 *
 * Both write the same rows into the same `readings` table (emptied before every round), both
 * subscribe with QoS 1 to the same aedes broker in its own process (bench/broker.ts), the flow runs
 * in the real Node-RED runtime (bench/runtime.ts), the devices in a worker thread (20 devices,
 * each publishing PER_DEVICE packs of RECORDS readings, QoS 1, up to WINDOW unacknowledged). A
 * round's rate is readings counted after the store / time from the first publish to the last
 * count (or, when a side lost readings, stored readings / time until the table stopped growing;
 * the losses are reported).
 * The time-series node's rollups are off in the headline case (the core flow does not roll up);
 * with rollups (the node's default) is measured for information.
 */
import { strict as assert } from 'node:assert';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { nowMs } from './harness';

const DEVICES = 20;
const PER_DEVICE = Number(process.env.BENCH_PIPELINE_PER_DEVICE ?? 250);
const RECORDS = Number(process.env.BENCH_PIPELINE_RECORDS ?? 10);
const WINDOW = 16;
const ROUNDS = 5;
const POOL = 10;
const TENANT = 'default';
/**
 * Yesterday at midnight UTC, in seconds: the same in the device worker, and within the time-series
 * node's retention (30 days), which would otherwise delete a fixed old time's readings mid-round.
 */
const T0 = Math.floor(Date.now() / 86_400_000) * 86_400 - 86_400;
/** For profiling one side alone: BENCH_PIPELINE_SIDES=conflux. */
const SIDES = (process.env.BENCH_PIPELINE_SIDES ?? 'conflux,core').split(',') as Array<'conflux' | 'core'>;
const serial = (i: number) => `pipe-${String(i).padStart(3, '0')}`;

type CaseName = 'conflux' | 'rollups' | 'core';
const TOPIC: Record<CaseName, (i: number) => string> = {
  conflux: (i) => `senml/${TENANT}/${serial(i)}/attrs`,
  rollups: (i) => `senml/${TENANT}/${serial(i)}/attrs`,
  core: (i) => `core/${TENANT}/${serial(i)}/attrs`,
};

interface Setup {
  url: string;
}

// ---------------------------------------------------------------------------------------------
// The devices (worker thread)

/** A pack of RECORDS readings; the round number keeps every round's times distinct anyway. */
function pack(seq: number): string {
  const records: Array<Record<string, unknown>> = [{ bn: 'room/', bt: T0 + seq, bu: 'Cel', n: 'sensor0', v: 20 + (seq % 100) / 10 }];
  for (let k = 1; k < RECORDS; k++) records.push({ n: `sensor${k}`, v: 20 + ((seq * 7 + k) % 100) / 10 });
  return JSON.stringify(records);
}

async function deviceWorker(setup: Setup): Promise<void> {
  const mqtt = await import('mqtt');
  const ids = Array.from({ length: DEVICES }, (_, i) => i);
  const clients = await Promise.all(
    ids.map((i) => mqtt.connectAsync(setup.url, { protocolVersion: 4, clientId: `dev-${serial(i)}`, reconnectPeriod: 0, clean: true })),
  );
  const payloads = Array.from({ length: PER_DEVICE }, (_, seq) => pack(seq));
  parentPort!.on('message', (m: { side: CaseName } | 'stop') => {
    if (m === 'stop') {
      void Promise.all(clients.map((c) => c.endAsync())).then(() => parentPort!.postMessage({ stopped: true }));
      return;
    }
    void Promise.all(
      ids.map(async (i) => {
        let seq = 0;
        const topic = TOPIC[m.side](i);
        await Promise.all(
          Array.from({ length: WINDOW }, async () => {
            while (seq < PER_DEVICE) await clients[i].publishAsync(topic, payloads[seq++], { qos: 1 });
          }),
        );
      }),
    ).then(
      () => parentPort!.postMessage({ sent: true }),
      (err: Error) => parentPort!.postMessage({ error: err.message }),
    );
  });
  parentPort!.postMessage({ ready: true });
}

// ---------------------------------------------------------------------------------------------
// The runtime (main thread)

/** The core flow's function: decode the pack, one INSERT for the message, pass it on once stored (bench/scale.ts uses it too). */
export const CORE_FUNCTION = `
const pool = global.get("pgPool");
const levels = msg.topic.split("/");
const tenant = levels[1], serial = levels[2];
let pack;
try { pack = JSON.parse(msg.payload); } catch (err) { node.error(err, msg); return null; }
if (!Array.isArray(pack)) { node.error("not a SenML pack", msg); return null; }
const now = Date.now() / 1000;
let bn = "", bt = 0, bu;
const records = [], params = [], rows = [];
for (const r of pack) {
  if (typeof r !== "object" || r === null) { node.error("a record is not an object", msg); return null; }
  if (r.bn !== undefined) bn = r.bn;
  if (r.bt !== undefined) bt = r.bt;
  if (r.bu !== undefined) bu = r.bu;
  const n = bn + (r.n || "");
  if (!/^[A-Za-z0-9][-:./_A-Za-z0-9]*$/.test(n)) { node.error("bad name " + n, msg); return null; }
  if (typeof r.v !== "number") { node.error("no number in " + n, msg); return null; }
  const t = (r.t || 0) + bt;
  const rec = { n: serial + "/" + n, t: t > 268435456 ? t : now + t, v: r.v };
  const u = r.u !== undefined ? r.u : bu;
  if (u !== undefined) rec.u = u;
  records.push(rec);
  const p = params.length;
  rows.push("($" + (p + 1) + ", $" + (p + 2) + ", to_timestamp($" + (p + 3) + "), $" + (p + 4) + ", $" + (p + 5) + ")");
  params.push(tenant, rec.n, rec.t, rec.v, rec.u === undefined ? null : rec.u);
}
msg.payload = records;
msg.device = { tenant: tenant, id: serial };
pool.query("INSERT INTO readings (tenant_id, name, t, v, u) VALUES " + rows.join(", ") + " ON CONFLICT (tenant_id, name, t, (coalesce(u, ''))) DO NOTHING", params)
  .then(() => { node.send(msg); node.done(); }, (err) => node.done(err));
return;`;

export async function run(): Promise<boolean> {
  const pg = await import('pg');
  const { startServers, freshDatabase } = await import('../test/support/servers');
  const { startBroker } = await import('./broker');
  const { startRuntime, counters } = await import('./runtime');
  const { report, machine, median, runs } = await import('./harness');
  const { openSql } = await import('../nodes/core/db/sql');
  const { migrate } = await import('../nodes/core/db/migrate');
  const { createBusinessStore } = await import('../nodes/core/stores/business');

  startServers();
  const dbUrl = await freshDatabase();
  const db = await openSql({ connectionString: dbUrl, poolSize: 2 });
  await migrate(db);
  // Said in the report: fsync and synchronous_commit decide what a commit per message costs.
  const durability = (
    await db.query<{ name: string; setting: string }>("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit') ORDER BY name")
  ).rows
    .map((r) => `${r.name}=${r.setting}`)
    .join(', ');
  const store = createBusinessStore(db);
  for (let i = 0; i < DEVICES; i++) {
    const dev = await store.create(TENANT, 'devices', { serial: serial(i) });
    await store.create(TENANT, 'device_keys', { device_id: dev.id, key: `key of ${serial(i)}` });
  }
  const broker = await startBroker();
  const pool = new pg.Pool({ connectionString: dbUrl, max: POOL });
  pool.on('error', () => undefined);

  const mqttIn = (id: string, clientId: string, wires: string) => ({
    id,
    type: 'conflux-mqtt-in',
    z: 'tab',
    gateway: 'gw',
    mode: 'client',
    url: broker.url,
    protocolVersion: '4',
    clientId,
    topics: 'senml/+/+/attrs',
    qos: '1',
    maxInFlight: '1000',
    ack: 'stored',
    wires: [[wires]],
  });
  const flow: Array<Record<string, unknown>> = [
    { id: 'tab', type: 'tab', label: 'pipeline' },
    { id: 'db', type: 'conflux-postgres', url: dbUrl, poolSize: String(POOL) },
    { id: 'gw', type: 'conflux-gateway', database: 'db' },
    mqttIn('c-in', 'conflux-pipeline', 'c-ts'),
    {
      id: 'c-ts',
      type: 'conflux-time-series',
      z: 'tab',
      engine: 'sql',
      database: 'db',
      rollups: false,
      batchSize: '1000',
      batchDelay: '0',
      maxPending: '50000',
      wires: [['count-conflux'], []],
    },
    {
      id: 'broker',
      type: 'mqtt-broker',
      name: 'aedes',
      broker: '127.0.0.1',
      port: String(broker.port),
      clientid: 'core-pipeline',
      autoConnect: true,
      usetls: false,
      protocolVersion: '4',
      keepalive: '60',
      cleansession: true,
    },
    {
      id: 'b-in',
      type: 'mqtt in',
      z: 'tab',
      topic: 'core/+/+/attrs',
      qos: '1',
      datatype: 'utf8',
      broker: 'broker',
      nl: false,
      rap: true,
      rh: 0,
      inputs: 0,
      wires: [['b-fn']],
    },
    { id: 'b-fn', type: 'function', z: 'tab', func: CORE_FUNCTION, outputs: 1, wires: [['count-core']] },
    { id: 'count-conflux', type: 'bench-count', z: 'tab' },
    { id: 'count-core', type: 'bench-count', z: 'tab' },
  ];
  const rt = await startRuntime(flow, { functionGlobalContext: { pgPool: pool } });

  const worker = new Worker(__filename, { workerData: { url: broker.url } satisfies Setup });
  const replies: Array<(m: any) => void> = [];
  worker.on('message', (m) => replies.shift()?.(m));
  worker.on('error', (err) => replies.shift()?.({ error: `the device worker failed: ${err.stack}` }));
  const reply = () => new Promise<any>((resolve) => replies.push(resolve));
  assert.ok((await reply()).ready);
  // Both subscribers connected and subscribed before the first round.
  await new Promise((r) => setTimeout(r, 1_000));

  const total = DEVICES * PER_DEVICE * RECORDS;
  const stored = async () => Number((await pool.query('SELECT count(*)::int AS n FROM readings')).rows[0].n);
  async function once(side: 'conflux' | 'core'): Promise<number> {
    await pool.query('TRUNCATE readings, rollups');
    const counter = { readings: 0, messages: 0, latencies: [] as number[], last: 0 };
    counters.set(`count-${side}`, counter);
    const start = nowMs();
    worker.postMessage({ side });
    const sent = await reply();
    if (sent.error) throw new Error(`${side}: ${sent.error}`);
    // The round ends when the table holds every reading, or when neither the count nor the table
    // moved for 2 s (a side that lost messages: the core `mqtt in` acknowledges on receipt, so
    // what its connection had taken when it dropped is gone). A message the broker delivered
    // twice is counted twice but stored once: the table decides.
    let last = { counted: -1, rows: -1, at: nowMs() };
    let n: number;
    for (;;) {
      await new Promise((r) => setTimeout(r, counter.readings >= total ? 20 : 100));
      n = await stored();
      if (n === total) break;
      if (n !== last.rows || counter.readings !== last.counted) last = { counted: counter.readings, rows: n, at: nowMs() };
      else if (nowMs() - last.at > 2_000) break;
    }
    const end = n === total && counter.readings === total ? counter.last : last.rows === n ? last.at : nowMs();
    counters.delete(`count-${side}`);
    duplicates[side] += Math.max(0, counter.readings - n);
    lost[side] += total - n;
    if (n !== total) process.stderr.write(`  ${side}: ${total - n} of ${total} readings never stored\n`);
    return n / ((end - start) / 1000);
  }
  const lost = { conflux: 0, core: 0 };
  const duplicates = { conflux: 0, core: 0 };

  const rates: Record<'conflux' | 'core', number[]> = { conflux: [], core: [] };
  try {
    for (let r = -1; r < ROUNDS; r++) {
      for (const side of SIDES) {
        const rate = await once(side);
        process.stderr.write(`  pipeline ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${side}: ${Math.round(rate).toLocaleString('en-US')} readings/s\n`);
        if (r >= 0) rates[side].push(rate);
      }
    }
  } finally {
    worker.postMessage('stop');
    await reply();
    await worker.terminate();
    await rt.stop();
    await broker.stop();
    await pool.end();
    await db.close();
  }
  const conflux = median(rates.conflux);
  const core = median(rates.core);
  const ok = report('Pipeline: readings/s from MQTT devices stored in the PostgreSQL time series, against core nodes + function + INSERT', 'readings', [
    {
      name: 'conflux-mqtt-in (client, QoS 1, PUBACK once stored) → conflux-time-series (group commit, binary COPY, rollups off)',
      baselineName: `\`mqtt in\` (QoS 1) → function (decode, one INSERT … ON CONFLICT DO NOTHING per message, pg.Pool of ${POOL}) → count`,
      subjectPerSec: conflux,
      baselinePerSec: core,
      ratio: conflux / core,
      floor: 10,
      subjectRuns: rates.conflux,
      baselineRuns: rates.core,
    },
  ]);
  void runs;
  console.log(
    `\nOver all rounds: readings never stored: Conflux ${lost.conflux}, core ${lost.core}; counted more often than stored (delivered again): Conflux ${duplicates.conflux}, core ${duplicates.core}. A round's rate counts what was stored, over the time until the table held it.`,
  );
  console.log(
    `\n${DEVICES} devices, ${PER_DEVICE} packs of ${RECORDS} readings each per round (${total.toLocaleString('en-US')} readings), QoS 1, up to ${WINDOW} unacknowledged per device, one aedes broker in its own process, PostgreSQL 15 of the test servers (${durability}; CONFLUX_TEST_PG_DURABLE=1 for the server defaults); ${ROUNDS} rounds after a warm-up, alternating, median kept.\n\n${machine()}`,
  );
  return ok;
}

if (!isMainThread && (workerData as Setup | undefined)?.url) {
  deviceWorker(workerData as Setup).catch((err) => parentPort!.postMessage({ error: (err as Error).stack }));
}
