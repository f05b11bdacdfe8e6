/**
 * `npm run bench -- ack`: what an acknowledgement that means "stored" costs. Devices post SenML
 * JSON with the reference client (tools/device-client), each keeping up to WINDOW requests
 * unanswered, and count a reading only once it is acknowledged; latency is measured at the device,
 * from the send to the answer.
 *
 *   Conflux: conflux-http-in → conflux-time-series (SQL engine, default group commit: batchDelay
 *            0, batches up to 1,000) → a terminal node; 202 once the flow finished, i.e. after
 *            the commit. For information: the same with the listener acknowledging on receipt,
 *            and conflux-tcp-in (SCRAM session, ACK frames) after the commit and on receipt.
 *   Core:    `http in` → `function` (decodes the SenML pack, one multi-row INSERT for the request
 *            through a pg.Pool of 10 given in functionGlobalContext, awaited) → `http response`
 *            202. No authentication on this side. The core `tcp in` cannot answer after a commit,
 *            so TCP has no core baseline.
 *
 * Everything writes to the same `readings` table of a fresh database on the test PostgreSQL server
 * (test/servers/servers.sh), emptied before each round; after each round the bench checks that
 * every acknowledged reading is in it. Both sides run in the real Node-RED runtime
 * (bench/runtime.ts: no test helper, so no spies on send keeping every message), the devices in a
 * worker thread. Rounds alternate between the cases (a warm-up, then ROUNDS timed rounds, median
 * kept, every run listed); then one paced run per case gives the latency at a light load.
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import * as os from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { driveDevices, freeTcpPort, median, nowMs, percentile } from './harness';
import type { Counter } from './runtime';

const DEVICES = 20;
const PER_DEVICE = 500;
const WINDOW = 16;
const ROUNDS = 5;
const POOL = 10;
/** The paced run: PACED_TOTAL readings/s over all devices, PACED_PER_DEVICE readings each. */
const PACED_TOTAL = 500;
const PACED_PER_DEVICE = 150;
const CASES = ['http', 'http-receipt', 'core', 'tcp', 'tcp-receipt'] as const;
type Case = (typeof CASES)[number];
const TENANT = 'default';
// TCP devices have one live session each: a set of serials per TCP listener.
const BASE: Record<'http' | 'tcp' | 'tcp-receipt', number> = { http: 0, tcp: DEVICES, 'tcp-receipt': 2 * DEVICES };
const serial = (i: number) => `ack-${String(i).padStart(3, '0')}`;
const keyOf = (i: number) => `key of device ${i}`;

interface Setup {
  ports: { http: number; tcp: number; tcpReceipt: number };
}
interface Outcome {
  acked: number;
  ms: number;
  /** From the round's start until the flow had finished with every reading (main thread). */
  storedMs?: number;
  latencies: number[];
  error?: string;
}

// ---------------------------------------------------------------------------------------------
// The devices (worker thread)

/** A SenML pack of two records with distinct times per device and reading (t0: the round's start). */
function pack(i: number, seq: number, t0: number): Array<Record<string, unknown>> {
  return [
    { bn: 'room/', bt: t0 + seq / 1000, n: 'temperature', u: 'Cel', v: 20 + ((seq * 7 + i) % 100) / 10 },
    { n: 'humidity', u: '%RH', v: 40 + ((seq * 3 + i) % 200) / 10 },
  ];
}

async function deviceWorker(setup: Setup): Promise<void> {
  const { connect } = await import('../tools/device-client/tcp');
  const { postReadings } = await import('../tools/device-client/http');
  const ids = Array.from({ length: DEVICES }, (_, i) => i);
  const login = (port: number, base: number) =>
    Promise.all(ids.map((i) => connect({ port, serial: serial(base + i), key: keyOf(base + i), timeoutMs: 60_000 })));
  const tcp = await login(setup.ports.tcp, BASE.tcp);
  const tcpReceipt = await login(setup.ports.tcpReceipt, BASE['tcp-receipt']);
  const origin = `http://127.0.0.1:${setup.ports.http}`;
  const post = async (path: string, i: number, body: unknown[], key?: string) => {
    const r = await postReadings({ base: `${origin}${path}`, serial: serial(BASE.http + i), key, format: 'senml+json', body });
    if (r.status !== 202) throw new Error(`${path} answered ${r.status}: ${JSON.stringify(r.problem)}`);
  };
  const send: Record<Case, (i: number, body: unknown[]) => Promise<unknown>> = {
    http: (i, body) => post('/devices', i, body, keyOf(BASE.http + i)),
    'http-receipt': (i, body) => post('/receipt', i, body, keyOf(BASE.http + i)),
    core: (i, body) => post('/core', i, body),
    tcp: (i, body) => tcp[i].sendReadings('senml-json', body),
    'tcp-receipt': (i, body) => tcpReceipt[i].sendReadings('senml-json', body),
  };

  /** Every device sends its readings (windowed, or paced at `pacing` readings/s each); counts the answers. */
  async function drive(name: Case, pacing: number): Promise<Outcome> {
    const t0 = Math.round(Date.now()) / 1000;
    const latencies: number[] = [];
    let acked = 0;
    const one = async (i: number, seq: number) => {
      const body = pack(i, seq, t0);
      const sent = nowMs();
      await send[name](i, body);
      latencies.push(nowMs() - sent);
      acked++;
    };
    const start = nowMs();
    await driveDevices({ devices: DEVICES, perDevice: PER_DEVICE, window: WINDOW, pacing, pacedPerDevice: PACED_PER_DEVICE }, one);
    return { acked, ms: nowMs() - start, latencies };
  }

  parentPort!.on('message', (m: { name: Case; pacing: number } | 'stop') => {
    if (m === 'stop') {
      void Promise.all([...tcp, ...tcpReceipt].map((c) => c.close())).then(() => parentPort!.postMessage({ stopped: true }));
      return;
    }
    drive(m.name, m.pacing).then(
      (o) => parentPort!.postMessage(o),
      (err: Error) => parentPort!.postMessage({ error: err.message }),
    );
  });
  parentPort!.postMessage({ ready: true });
}

// ---------------------------------------------------------------------------------------------
// The runtime (main thread)

/** The core flow's function node: what a competent integrator writes (decode, one INSERT per request, await it). */
const CORE_FUNCTION = `
const pool = global.get("pgPool");
let pack;
try {
  const text = Buffer.isBuffer(msg.payload) ? msg.payload.toString("utf8") : msg.payload;
  pack = typeof text === "string" ? JSON.parse(text) : text;
} catch (err) { msg.statusCode = 400; msg.payload = "not JSON"; return msg; }
const serial = msg.req.params.serial;
if (!Array.isArray(pack) || pack.length === 0) { msg.statusCode = 400; msg.payload = "not a SenML pack"; return msg; }
const now = Date.now() / 1000;
let bn = "", bt = 0, bu;
const rows = [], params = [];
for (const r of pack) {
  if (typeof r !== "object" || r === null) { msg.statusCode = 400; msg.payload = "a record is not an object"; return msg; }
  if (r.bn !== undefined) bn = r.bn;
  if (r.bt !== undefined) bt = r.bt;
  if (r.bu !== undefined) bu = r.bu;
  const n = bn + (r.n || "");
  if (!/^[A-Za-z0-9][-:./_A-Za-z0-9]*$/.test(n)) { msg.statusCode = 400; msg.payload = "bad name " + n; return msg; }
  if (typeof r.v !== "number") { msg.statusCode = 400; msg.payload = "no number in " + n; return msg; }
  const t = (r.t || 0) + bt;
  const p = params.length;
  params.push("default", serial + "/" + n, t > 268435456 ? t : now + t, r.v, r.u !== undefined ? r.u : (bu === undefined ? null : bu));
  rows.push("($" + (p + 1) + ", $" + (p + 2) + ", to_timestamp($" + (p + 3) + "), $" + (p + 4) + ", $" + (p + 5) + ")");
}
try {
  await pool.query("INSERT INTO readings (tenant_id, name, t, v, u) VALUES " + rows.join(", "), params);
  msg.statusCode = 202;
  msg.payload = "";
} catch (err) {
  node.warn(err.message);
  msg.statusCode = 503;
  msg.payload = err.message;
}
return msg;`;

/** Resolves once something listens on the port: each refused attempt is retried at once, for up to 10 s. */
async function listening(port: number, deadline = Date.now() + 10_000): Promise<void> {
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(true)).once('error', () => resolve(false));
      s.once('connect', () => s.destroy());
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((r) => setImmediate(r));
  }
}
const loadavg = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(', ');

export async function run(): Promise<boolean> {
  const { report, machine } = await import('./harness');
  const { startServers, freshDatabase } = await import('../test/support/servers');
  const { createBusinessStore } = await import('../nodes/core/stores/business');
  const { startRuntime, counters } = await import('./runtime');
  const pg = await import('pg');

  startServers();
  const url = await freshDatabase();
  const loadBefore = loadavg();
  const pool = new pg.Pool({ connectionString: url, max: POOL });
  pool.on('error', () => undefined);
  const ports = { http: 0, tcp: await freeTcpPort(), tcpReceipt: await freeTcpPort() };
  const conflux = (id: string, type: string, props: Record<string, unknown>) => [
    { id, type, z: 'tab', gateway: 'gw', ...props, wires: [[`ts-${id}`]] },
    { id: `ts-${id}`, type: 'conflux-time-series', z: 'tab', engine: 'sql', database: 'db', retentionDays: '0', wires: [[`count-${id}`], []] },
    { id: `count-${id}`, type: 'bench-count', z: 'tab' },
  ];
  const flow: Record<string, unknown>[] = [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url },
    { id: 'gw', type: 'conflux-gateway', database: 'db', idleTimeout: '3600' },
    ...conflux('http', 'conflux-http-in', { basePath: '/devices', fiware: false }),
    ...conflux('http-receipt', 'conflux-http-in', { basePath: '/receipt', fiware: false, ack: 'receipt', maxInFlight: String(DEVICES * PER_DEVICE) }),
    ...conflux('tcp', 'conflux-tcp-in', { host: '127.0.0.1', port: String(ports.tcp) }),
    ...conflux('tcp-receipt', 'conflux-tcp-in', { host: '127.0.0.1', port: String(ports.tcpReceipt), ack: 'receipt' }),
    { id: 'core', type: 'http in', z: 'tab', url: '/core/:serial/telemetry', method: 'post', upload: false, swaggerDoc: '', wires: [['f-core']] },
    { id: 'f-core', type: 'function', z: 'tab', func: CORE_FUNCTION, outputs: 1, wires: [['r-core']] },
    { id: 'r-core', type: 'http response', z: 'tab', statusCode: '', headers: {}, wires: [] },
  ];

  const rt = await startRuntime(flow, { functionGlobalContext: { pgPool: pool } });
  ports.http = rt.port;
  const sql = await (rt.RED.nodes.getNode('db') as { sql(): Promise<any> }).sql();
  const store = createBusinessStore(sql);
  for (let i = 0; i < 3 * DEVICES; i++) {
    const dev = await store.create(TENANT, 'devices', { serial: serial(i) });
    await store.create(TENANT, 'device_keys', { device_id: dev.id, key: keyOf(i) });
  }
  await Promise.all([listening(ports.tcp), listening(ports.tcpReceipt)]);
  const worker = new Worker(__filename, { workerData: { ports } satisfies Setup });
  const replies: Array<(m: any) => void> = [];
  worker.on('message', (m) => replies.shift()?.(m));
  worker.on('error', (err) => replies.shift()?.({ error: `the device worker failed: ${err.stack}` }));
  const reply = () => new Promise<any>((resolve) => replies.push(resolve));
  const ready = await reply();
  assert.ok(ready.ready, JSON.stringify(ready));

  /** One round of one case: readings/s acknowledged; checks that every acknowledged reading is stored. */
  async function once(name: Case, pacing = 0): Promise<Outcome> {
    await pool.query('TRUNCATE readings');
    const target = DEVICES * (pacing ? PACED_PER_DEVICE : PER_DEVICE);
    // The core flow answers after its INSERT, so its acknowledgement is its end; a Conflux flow
    // ends at its count node, after the store.
    const reached =
      name === 'core'
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const counter: Counter = { readings: 0, messages: 0, latencies: [], last: 0, onCount: () => counter.messages === target && resolve() };
            counters.set(`count-${name}`, counter);
          });
    const start = nowMs();
    worker.postMessage({ name, pacing });
    const o: Outcome = await reply();
    if (o.error) throw new Error(`${name}: ${o.error}`);
    await reached; // on receipt, the flow may still be storing: wait until it has finished
    o.storedMs = nowMs() - start;
    counters.delete(`count-${name}`);
    const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM readings');
    if (o.acked !== target || Number(rows[0].n) !== 2 * target)
      throw new Error(`${name}: ${o.acked} of ${target} acknowledged, ${rows[0].n} rows stored (expected ${2 * target})`);
    return o;
  }

  // A failure still stops the devices, the runtime and the servers, so the process can exit.
  const finish = async () => {
    worker.postMessage('stop');
    await reply();
    await worker.terminate();
    await rt.stop();
    await pool.end();
  };
  const rates = new Map<Case, number[]>(CASES.map((c) => [c, []]));
  const full = new Map<Case, number[]>(CASES.map((c) => [c, []]));
  const stored = new Map<Case, number[]>(CASES.map((c) => [c, []]));
  const paced = new Map<Case, number[]>();
  try {
    for (let r = -1; r < ROUNDS; r++) {
      for (const name of CASES) {
        const o = await once(name);
        const rate = o.acked / (o.ms / 1000);
        process.stderr.write(`  ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${name}: ${Math.round(rate).toLocaleString('en-US')}/s\n`);
        if (r < 0) continue;
        rates.get(name)!.push(rate);
        stored.get(name)!.push(o.acked / (o.storedMs! / 1000));
        full.get(name)!.push(...o.latencies);
      }
    }
    for (const name of CASES) {
      const o = await once(name, PACED_TOTAL / DEVICES);
      process.stderr.write(`  paced ${PACED_TOTAL}/s: ${name}: ${o.acked} acknowledged in ${(o.ms / 1000).toFixed(1)} s\n`);
      paced.set(name, o.latencies);
    }
  } finally {
    await finish();
  }
  const loadAfter = loadavg();

  const rate = (c: Case) => median(rates.get(c)!);
  const names: Record<Case, string> = {
    http: 'conflux-http-in → conflux-time-series (group commit), 202 after the commit',
    'http-receipt': 'the same, conflux-http-in acknowledging on receipt',
    core: '`http in` → function (one INSERT per request, pg.Pool of 10, awaited) → `http response` 202, no authentication',
    tcp: 'conflux-tcp-in → conflux-time-series, ACK after the commit',
    'tcp-receipt': 'conflux-tcp-in acknowledging on receipt (same flow)',
  };
  const pair = (subject: Case, baseline: Case) => ({
    name: names[subject],
    baselineName: names[baseline],
    subjectPerSec: rate(subject),
    baselinePerSec: rate(baseline),
    ratio: rate(subject) / rate(baseline),
    subjectRuns: rates.get(subject),
    baselineRuns: rates.get(baseline),
  });
  const ok = report('Acknowledgement after the commit: readings/s acknowledged and stored, against core nodes + function + INSERT', 'readings', [
    pair('http', 'core'),
    pair('http-receipt', 'core'),
    pair('http', 'http-receipt'),
    pair('tcp', 'tcp-receipt'),
  ]);
  console.log(
    `\nNo floor for this suite (the devices suite's >= 1x the core flow is the reference). ${DEVICES} devices per case, ${PER_DEVICE} readings each per round (${(DEVICES * PER_DEVICE).toLocaleString('en-US')}), up to ${WINDOW} unanswered per device; a reading is a SenML pack of two records (two rows); ${ROUNDS} rounds after a warm-up, alternating, median kept; readings emptied before each round and every acknowledged reading checked stored after it.`,
  );
  const perSec = (c: Case) => Math.round(median(stored.get(c)!)).toLocaleString('en-US');
  console.log(
    `\nAcknowledging on receipt answers ahead of the store (the listener's Max in flight set to a whole round, ${(DEVICES * PER_DEVICE).toLocaleString('en-US')}; by default past 1,000 HTTP answers 503 and TCP stops reading). Readings/s until the flow had stored the whole round (median): HTTP on receipt ${perSec('http-receipt')}, after the commit ${perSec('http')}; TCP on receipt ${perSec('tcp-receipt')}, after the commit ${perSec('tcp')}.`,
  );
  const f = (x: number) => x.toFixed(1);
  const pct = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${f(percentile(s, 50))} | ${f(percentile(s, 99))}`;
  };
  console.log(
    `\nAcknowledgement latency (ms) at the device, from the send to the answer. Paced: ${DEVICES} devices × ${PACED_TOTAL / DEVICES} readings/s (${PACED_TOTAL}/s), ${PACED_PER_DEVICE} each; full load: over the timed rounds above.\n`,
  );
  console.log('| case | paced p50 | p99 | full-load p50 | p99 |\n|---|---:|---:|---:|---:|');
  for (const c of CASES) console.log(`| ${names[c]} | ${pct(paced.get(c)!)} | ${pct(full.get(c)!)} |`);
  console.log(`\n${machine()}; load average (1, 5, 15 min) ${loadBefore} before, ${loadAfter} after; run at ${new Date().toISOString().slice(0, 19)}Z`);
  return ok;
}

if (!isMainThread && (workerData as Setup | undefined)?.ports) {
  deviceWorker(workerData as Setup).catch((err) => {
    parentPort!.postMessage({ error: (err as Error).stack });
  });
}
