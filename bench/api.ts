/**
 * `npm run bench -- api`: requests per second and p99 latency of a measurements query (one
 * sensor, one day, 1,000 points) through the REST API, against the same query served by a flow
 * of core nodes, in the same run, on the same data.
 *
 *   Conflux: conflux-rest-api on a conflux-api config node (API key in EAPI-ELCLV2, quota
 *            counted per request, version in the body), reading the PostgreSQL time series.
 *   Core:    `http in` → `function` (checks a static key, one parameterised SELECT through a
 *            pg.Pool from global context, as node-red-contrib-postgresql would run it, maps the
 *            rows to the seed's field names) → `http response`.
 *
 * Both answer the same 1,000 measurements with the same fields: v1's, seed 004's names (v2 adds
 * the SenML name and unit to each item, which the core flow would not send). The load comes from a worker
 * thread (so that sending costs neither side): CONNECTIONS keep-alive connections, each sending
 * its next request when the last answer has arrived, for ROUND_MS per round. Rounds alternate (a
 * warm-up, then ROUNDS timed rounds; the median kept, every run listed).
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import * as os from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { median, percentile } from './harness';

const ROUNDS = 5;
const ROUND_MS = 4_000;
const CONNECTIONS = 16;
const POOL = 10;
const TENANT = 'bench';
const DEVICE = '951FF00000340';
/** The queried sensor and the others that share the table. */
const SENSORS = 20;
const POINTS = 1_000;
const DAY = 86_400;
/** 2026-11-02T00:00:00Z: the queried day. */
const DAY_START = 1_793_577_600;
const SIDES = ['conflux', 'core'] as const;
type Side = (typeof SIDES)[number];
/** For profiling one side alone: BENCH_API_ONLY=conflux (no report then). */
const ONLY = process.env.BENCH_API_ONLY;
const STATIC_KEY = 'bench-static-key';

interface Load {
  port: number;
  path: string;
  headers: Record<string, string>;
}
interface RoundResult {
  count: number;
  errors: number;
  ms: number;
  latencies: number[];
  firstBody: string;
}

// ---------------------------------------------------------------------------------------------
// The load (worker thread)

async function loadWorker(): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  parentPort!.on('message', async (load: Load | 'stop') => {
    if (load === 'stop') {
      agent.destroy();
      parentPort!.postMessage({ stopped: true });
      return;
    }
    const result: RoundResult = { count: 0, errors: 0, ms: 0, latencies: [], firstBody: '' };
    const start = performance.now();
    const end = start + ROUND_MS;
    const one = () =>
      new Promise<void>((resolve) => {
        const t0 = performance.now();
        const req = http.get(
          { host: '127.0.0.1', port: load.port, path: load.path, headers: { accept: 'application/json', ...load.headers }, agent },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              if (res.statusCode === 200) {
                result.count++;
                result.latencies.push(performance.now() - t0);
                if (!result.firstBody) result.firstBody = Buffer.concat(chunks).toString('utf8');
              } else {
                result.errors++;
                if (!result.firstBody) result.firstBody = `${res.statusCode} ${Buffer.concat(chunks).toString('utf8')}`;
              }
              resolve();
            });
          },
        );
        req.on('error', () => {
          result.errors++;
          resolve();
        });
      });
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (performance.now() < end) await one();
      }),
    );
    result.ms = performance.now() - start;
    result.latencies.sort((a, b) => a - b);
    parentPort!.postMessage(result);
  });
  parentPort!.postMessage({ ready: true });
}

// ---------------------------------------------------------------------------------------------
// The runtime (main thread)

/** The core flow's function: a competent integrator's query, with the rows in the seed's names. */
const CORE_FUNCTION = `
if (msg.req.headers["eapi-elclv2"] !== "${STATIC_KEY}") {
  msg.statusCode = 401;
  msg.payload = { error: "unauthorized" };
  return msg;
}
const pool = global.get("pgPool");
const q = msg.req.query;
const from = Number(q.from), to = Number(q.to), limit = Math.min(Number(q.limit) || 1000, 10000);
if (!Number.isFinite(from) || !Number.isFinite(to)) {
  msg.statusCode = 400;
  msg.payload = { error: "from and to are required" };
  return msg;
}
const prefix = q.deviceId + "/" + msg.req.params.sensor + "/";
pool.query(
  "SELECT name, extract(epoch FROM t)::float8 AS t, v, u FROM readings WHERE tenant_id = $1 AND name >= $2 AND name < $3 AND t >= to_timestamp($4) AND t < to_timestamp($5) AND v IS NOT NULL ORDER BY t, name LIMIT $6",
  ["${TENANT}", prefix, prefix + "\\uffff", from, to, limit]
).then((res) => {
  msg.payload = {
    version: "1.0",
    measurements: res.rows.map((r) => {
      const parts = r.name.split("/");
      return { deviceId: parts[0], sensorId: Number(parts[1]), unitType: parts[2], value: r.v, unit: r.u === "Cel" ? "°C" : r.u, timeStamp: new Date(r.t * 1000).toISOString().replace("Z", "+00:00") };
    }),
  };
  node.send(msg);
  node.done();
}, (err) => node.done(err));
return;`;

/** How many measurements an answer holds, whatever the side's envelope. */
function measurementsIn(body: string): number {
  const parsed = JSON.parse(body) as Record<string, unknown>;
  const list = Object.values(parsed).find(Array.isArray) as unknown[] | undefined;
  return list?.length ?? 0;
}

export async function run(): Promise<boolean> {
  const pg = await import('pg');
  const { startServers, freshDatabase } = await import('../test/support/servers');
  const { startRuntime } = await import('./runtime');
  const { report, machine } = await import('./harness');
  const { openSql } = await import('../nodes/core/db/sql');
  const { migrate } = await import('../nodes/core/db/migrate');
  const { createTenant, createBusinessStore } = await import('../nodes/core/stores/business');
  const { createSqlTimeSeries } = await import('../nodes/core/stores/time-series-sql');

  startServers();
  const dbUrl = await freshDatabase();
  const db = await openSql({ connectionString: dbUrl, poolSize: 2 });
  await migrate(db);
  await createTenant(db, { id: TENANT, name: 'bench' });
  const store = createBusinessStore(db);
  const key = String((await store.create(TENANT, 'api_keys', { name: 'bench', scopes: [] })).key);
  // The device with its sensor sinks: the API reads a sink's readings by `<serial>/<sensorId>/…`.
  const device = await store.create(TENANT, 'devices', { serial: DEVICE });
  const channel = await store.create(TENANT, 'channels', { device_id: device.id, number: 1 });
  const sensorIds: number[] = [];
  for (let i = 0; i < SENSORS; i++) sensorIds.push(Number((await store.create(TENANT, 'sensors', { channel_id: channel.id, position: i })).id));
  const series = createSqlTimeSeries(db);
  for (const sensor of sensorIds) {
    const readings = Array.from({ length: POINTS }, (_, i) => ({
      tenant: TENANT,
      record: { n: `${DEVICE}/${sensor}/temperature`, t: DAY_START + (i * DAY) / POINTS, v: 20 + (i % 50) / 10, u: 'Cel' },
    }));
    await series.append(readings);
  }
  await db.query('ANALYZE readings');
  const pool = new pg.Pool({ connectionString: dbUrl, max: POOL });
  pool.on('error', () => undefined);

  const flow: Array<Record<string, unknown>> = [
    { id: 'tab', type: 'tab', label: 'api' },
    { id: 'db', type: 'conflux-postgres', url: dbUrl, poolSize: String(POOL) },
    // A request quota that is counted on every request but never used up in the bench.
    { id: 'api', type: 'conflux-api', database: 'db', base: '/api', quotaRequests: '1000000000', quotaPeriod: '86400', pageDefault: '1000', pageMax: '1000' },
    { id: 'rest', type: 'conflux-rest-api', z: 'tab', api: 'api' },
    { id: 'b-in', type: 'http in', z: 'tab', url: '/core/sensors/:sensor/measurements', method: 'get', upload: false, wires: [['b-fn']] },
    { id: 'b-fn', type: 'function', z: 'tab', func: CORE_FUNCTION, outputs: 1, wires: [['b-out']] },
    { id: 'b-out', type: 'http response', z: 'tab', statusCode: '', headers: {} },
  ];
  const rt = await startRuntime(flow, { functionGlobalContext: { pgPool: pool } });

  const sensor = sensorIds[Math.floor(SENSORS / 2)];
  const query = `deviceId=${DEVICE}&from=${DAY_START}&to=${DAY_START + DAY}&limit=${POINTS}`;
  const loads: Record<Side, Load> = {
    conflux: { port: rt.port, path: `/api/v1/sensors/${sensor}/measurements?${query}`, headers: { 'EAPI-ELCLV2': key } },
    core: { port: rt.port, path: `/core/sensors/${sensor}/measurements?${query}`, headers: { 'EAPI-ELCLV2': STATIC_KEY } },
  };

  const worker = new Worker(__filename, { workerData: { load: true } });
  const replies: Array<(m: any) => void> = [];
  worker.on('message', (m) => replies.shift()?.(m));
  worker.on('error', (err) => replies.shift()?.({ error: `the load worker failed: ${err.stack}` }));
  const reply = () => new Promise<any>((resolve) => replies.push(resolve));
  assert.ok((await reply()).ready);

  const rates: Record<Side, number[]> = { conflux: [], core: [] };
  const p99s: Record<Side, number[]> = { conflux: [], core: [] };
  const load1 = os.loadavg();
  try {
    for (let r = -1; r < ROUNDS; r++) {
      for (const side of SIDES) {
        if (ONLY && ONLY !== side) continue;
        worker.postMessage(loads[side]);
        const result = (await reply()) as RoundResult & { error?: string };
        if (result.error) throw new Error(result.error);
        if (result.errors > 0 || measurementsIn(result.firstBody) !== POINTS)
          throw new Error(`${side}: ${result.errors} failed requests; the first answer: ${result.firstBody.slice(0, 300)}`);
        const rate = result.count / (result.ms / 1000);
        const p99 = percentile(result.latencies, 99);
        process.stderr.write(`  api ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${side}: ${Math.round(rate)} requests/s, p99 ${p99.toFixed(1)} ms\n`);
        if (r >= 0) {
          rates[side].push(rate);
          p99s[side].push(p99);
        }
      }
    }
  } finally {
    worker.postMessage('stop');
    await reply();
    await worker.terminate();
    await rt.stop();
    await pool.end();
    await db.close();
  }
  const load2 = os.loadavg();
  if (ONLY) return true;
  const conflux = median(rates.conflux);
  const core = median(rates.core);
  const ok = report('REST API: a measurements query (one sensor, one day, 1,000 points), requests/s', 'requests', [
    {
      name: `conflux-rest-api, v1 measurements by sensor (API key, quota, ${CONNECTIONS} keep-alive connections)`,
      baselineName: `http in → function (static key, one SELECT, pg.Pool of ${POOL}) → http response`,
      subjectPerSec: conflux,
      baselinePerSec: core,
      ratio: conflux / core,
      floor: 2,
      subjectRuns: rates.conflux,
      baselineRuns: rates.core,
    },
  ]);
  const p99 = { conflux: median(p99s.conflux), core: median(p99s.core) };
  console.log(
    `\np99 latency (median of the rounds' p99): Conflux ${p99.conflux.toFixed(1)} ms, core ${p99.core.toFixed(1)} ms — ${p99.conflux < p99.core ? 'lower' : 'NOT lower'}; every round's p99: Conflux ${p99s.conflux.map((x) => x.toFixed(1)).join(', ')}; core ${p99s.core.map((x) => x.toFixed(1)).join(', ')}`,
  );
  console.log(
    `\n${machine()}; load average (1, 5, 15 min) ${load1.map((x) => x.toFixed(2)).join(', ')} before, ${load2.map((x) => x.toFixed(2)).join(', ')} after; run at ${new Date().toISOString()}`,
  );
  return ok && p99.conflux < p99.core;
}

if (!isMainThread && (workerData as { load?: boolean } | undefined)?.load) void loadWorker();
