/**
 * `npm run bench -- webhooks`: signed webhook deliveries per second to 1, 10 and 100 local
 * endpoints, and the delivery latency.
 *
 *   Conflux: events into conflux-webhook-out (subscriptions of the tenant in the business store,
 *            each with a whsec_ secret): every delivery stored in the outbox before done(), then
 *            claimed, signed (Standard Webhooks), POSTed over keep-alive connections, acked and
 *            logged in webhook_deliveries; per-endpoint limit and circuit breaker as configured.
 *   Core:    `split` (one message per subscription, the list handed in with the event) →
 *            `function` that signs as a competent integrator would (node:crypto HMAC-SHA256, the
 *            Standard Webhooks headers) → `http request` (POST, URL from msg.url, keep-alive).
 *            Nothing stored: a delivery that fails is lost, nothing is retried or logged.
 *
 * The receivers are real HTTP servers on 127.0.0.1 in a worker thread (so that receiving costs
 * neither side): they answer 204 at once, count each (endpoint, webhook-id) once, take the
 * latency from the event's `t0` (epoch ms, high resolution) to the arrival, and check a sample of
 * signatures with the reference `standardwebhooks` library. Both sides run in the same Node-RED
 * runtime on the test PostgreSQL server; rounds alternate (a warm-up, then ROUNDS timed rounds,
 * median kept, every run listed); then one paced run per side gives the latency at a light load.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { median, percentile } from './harness';

const ROUNDS = 5;
/** Endpoints per case, and events per round (deliveries = events × endpoints). */
const CASES = [
  { endpoints: 1, events: 8_000 },
  { endpoints: 10, events: 1_000 },
  { endpoints: 100, events: 100 },
] as const;
const SIDES = ['conflux', 'core'] as const;
type Side = (typeof SIDES)[number];
/** For profiling one case alone: BENCH_WEBHOOKS_ONLY=conflux:1 (side:endpoints; no report then). */
const ONLY = process.env.BENCH_WEBHOOKS_ONLY;
/** The paced run: PACED_EVENTS events/s to 10 endpoints for PACED_SECONDS. */
const PACED_EVENTS = 50;
const PACED_SECONDS = 4;
const PACED_ENDPOINTS = 10;
const ROUND_TIMEOUT_MS = 120_000;
/**
 * Deliveries handed in and not yet received, at most: the core flow opens a connection per
 * delivery in flight, and a burst of thousands runs out of file descriptors (EMFILE) and loses
 * them. Both sides get the same window.
 */
const WINDOW = 1_000;
const PROGRESS_EVERY = 50;
/** Requests in flight per endpoint (the config node's "Per endpoint"; default 8). The core flow has no limit. */
const CONCURRENCY = 64;

const epochMs = () => performance.timeOrigin + performance.now();

interface ReceiverSetup {
  count: number;
  secrets: string[];
}
type ToWorker = { target: number } | 'stop';
type FromWorker =
  | { ports: number[] }
  | { progress: number }
  | { done: true; count: number; last: number; latencies: number[]; verified: number; bad: string[] }
  | { stopped: true }
  | { error: string };

// ---------------------------------------------------------------------------------------------
// The receivers (worker thread)

async function receiverWorker(setup: ReceiverSetup): Promise<void> {
  const { Webhook } = await import('standardwebhooks');
  const verifiers = setup.secrets.map((s) => new Webhook(s));
  let target = Infinity;
  let seen = new Set<string>();
  let latencies: number[] = [];
  let verified = 0;
  let bad: string[] = [];
  let reported = false;
  const servers = await Promise.all(
    Array.from({ length: setup.count }, async (_, index) => {
      const server = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const at = epochMs();
          res.writeHead(204).end();
          const body = Buffer.concat(chunks).toString('utf8');
          const id = String(req.headers['webhook-id']);
          const key = `${index}:${id}`;
          if (seen.has(key)) return;
          seen.add(key);
          const event = JSON.parse(body) as { id: string; data: { t0: number } };
          latencies.push(at - event.data.t0);
          if (seen.size % 50 === 1) {
            try {
              verifiers[index].verify(body, req.headers as Record<string, string>);
              verified++;
            } catch (err) {
              bad.push(`${key}: ${(err as Error).message}`);
            }
          }
          if (seen.size % PROGRESS_EVERY === 0 && seen.size < target) parentPort!.postMessage({ progress: seen.size } satisfies FromWorker);
          if (seen.size >= target && !reported) {
            reported = true;
            parentPort!.postMessage({ done: true, count: seen.size, last: at, latencies, verified, bad } satisfies FromWorker);
          }
        });
      });
      server.keepAliveTimeout = 600_000; // longer than any pause between rounds: no close racing a reused connection
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return server;
    }),
  );
  parentPort!.on('message', (m: ToWorker) => {
    if (m === 'stop') {
      for (const s of servers) s.closeAllConnections();
      void Promise.all(servers.map((s) => new Promise((r) => s.close(r)))).then(() => parentPort!.postMessage({ stopped: true } satisfies FromWorker));
      return;
    }
    target = m.target;
    seen = new Set();
    latencies = [];
    verified = 0;
    bad = [];
    reported = false;
  });
  parentPort!.postMessage({ ports: servers.map((s) => (s.address() as AddressInfo).port) } satisfies FromWorker);
}

// ---------------------------------------------------------------------------------------------
// The runtime (main thread)

/** The core flow's signing function: node:crypto HMAC, the Standard Webhooks headers. */
const SIGN_FUNCTION = `
const crypto = global.get("crypto");
const sub = msg.payload;
const body = JSON.stringify(msg.event);
const ts = Math.floor(Date.now() / 1000);
const key = Buffer.from(sub.secret.slice(6), "base64");
const signature = crypto.createHmac("sha256", key).update(msg.event.id + "." + ts + "." + body).digest("base64");
msg.url = sub.url;
msg.headers = { "content-type": "application/json", "webhook-id": msg.event.id, "webhook-timestamp": String(ts), "webhook-signature": "v1," + signature };
msg.payload = body;
delete msg.event;
return msg;`;

const loadavg = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(', ');

export async function run(): Promise<boolean> {
  const { report, machine, fmt } = await import('./harness');
  const { startServers, freshDatabase } = await import('../test/support/servers');
  const { createBusinessStore } = await import('../nodes/core/stores/business');
  const { createEvent } = await import('../nodes/core/events/event');
  const { startRuntime } = await import('./runtime');
  const crypto = await import('node:crypto');

  startServers();
  const url = await freshDatabase();
  const loadBefore = loadavg();
  const maxEndpoints = Math.max(...CASES.map((c) => c.endpoints));
  const secrets = Array.from({ length: maxEndpoints }, () => `whsec_${randomBytes(24).toString('base64')}`);

  const worker = new Worker(__filename, { workerData: { receivers: { count: maxEndpoints, secrets } satisfies ReceiverSetup } });
  const replies: Array<(m: FromWorker) => void> = [];
  let pendingDone: ((m: FromWorker) => void) | undefined;
  let onProgress: ((n: number) => void) | undefined;
  worker.on('message', (m: FromWorker) => {
    if ('progress' in m) return onProgress?.(m.progress);
    if ('done' in m) return pendingDone?.(m);
    replies.shift()?.(m);
  });
  worker.on('error', (err) => {
    const e = { error: `the receiver worker failed: ${err.stack}` };
    replies.shift()?.(e);
    pendingDone?.(e);
  });
  const reply = () => new Promise<FromWorker>((resolve) => replies.push(resolve));
  const first = await reply();
  if (!('ports' in first)) throw new Error(JSON.stringify(first));
  const endpointUrl = (i: number) => `http://127.0.0.1:${first.ports[i]}/hook`;

  const flow: Record<string, unknown>[] = [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url, poolSize: '10' },
    { id: 'hooks', type: 'conflux-webhooks', database: 'db', allowPrivate: true, concurrency: String(CONCURRENCY) },
    { id: 'n-out', type: 'conflux-webhook-out', z: 'tab', webhooks: 'hooks', wires: [[]] },
    {
      id: 'n-split',
      type: 'split',
      z: 'tab',
      splt: '\\n',
      spltType: 'str',
      arraySplt: 1,
      arraySpltType: 'len',
      stream: false,
      addname: '',
      wires: [['n-sign']],
    },
    { id: 'n-sign', type: 'function', z: 'tab', func: SIGN_FUNCTION, outputs: 1, wires: [['n-post']] },
    { id: 'n-post', type: 'http request', z: 'tab', method: 'POST', ret: 'txt', paytoqs: 'ignore', url: '', persist: true, senderr: false, wires: [[]] },
  ];
  const rt = await startRuntime(flow, { functionGlobalContext: { crypto } });
  const sql = await (rt.RED.nodes.getNode('db') as { sql(): Promise<any> }).sql();
  const store = createBusinessStore(sql);
  const subsOf = new Map<number, { url: string; secret: string }[]>();
  for (const endpoints of new Set([...CASES.map((c) => c.endpoints), PACED_ENDPOINTS])) {
    const tenant = `bench${endpoints}`;
    await sql.query(`INSERT INTO tenants (id, name) VALUES ($1, $1)`, [tenant]);
    const subs = Array.from({ length: endpoints }, (_, i) => ({ url: endpointUrl(i), secret: secrets[i] }));
    for (const s of subs) await store.create(tenant, 'webhook_subscriptions', { url: s.url, events: ['bench.*'], secret: s.secret });
    subsOf.set(endpoints, subs);
  }
  const out = rt.RED.nodes.getNode('n-out');
  const split = rt.RED.nodes.getNode('n-split');
  const depth = async () => Number((await sql.query(`SELECT count(*) AS n FROM outbox`)).rows[0].n);

  let roundNo = 0;
  /** One round: events to `endpoints` subscriptions, all at once or paced; resolves with deliveries/s and latencies. */
  async function once(side: Side, endpoints: number, events: number, pacedPerSec = 0): Promise<{ rate: number; latencies: number[] }> {
    roundNo++;
    const target = events * endpoints;
    worker.postMessage({ target } satisfies ToWorker);
    const done = new Promise<FromWorker>((resolve) => (pendingDone = resolve));
    const tenant = `bench${endpoints}`;
    const subs = subsOf.get(endpoints)!;
    const start = epochMs();
    const send = (i: number) => {
      const event = createEvent({ type: 'bench.delivery', tenant, subject: `s${i}`, data: { i, t0: epochMs() }, identity: [roundNo, i] });
      if (side === 'conflux') out.receive({ payload: event });
      else split.receive({ payload: subs, event });
    };
    if (pacedPerSec > 0) {
      for (let i = 0; i < events; i++) {
        const wait = start + (i * 1000) / pacedPerSec - epochMs();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait)); // the pace, not a synchronisation
        send(i);
      }
    } else {
      // A sliding window: hand in events while fewer than WINDOW deliveries are outstanding.
      let sent = 0;
      const pump = (received: number) => {
        while (sent < events && sent * endpoints - received < WINDOW) send(sent++);
      };
      onProgress = pump;
      pump(0);
    }
    const timeout = new Promise<FromWorker>((resolve) =>
      setTimeout(() => resolve({ error: `round timed out after ${ROUND_TIMEOUT_MS} ms` }), ROUND_TIMEOUT_MS).unref(),
    );
    const result = await Promise.race([done, timeout]);
    pendingDone = undefined;
    onProgress = undefined;
    if ('error' in result) throw new Error(`${side}, ${endpoints} endpoints: ${result.error}`);
    if (!('done' in result)) throw new Error(JSON.stringify(result));
    assert.deepEqual(result.bad, [], 'every sampled signature verifies');
    assert.ok(result.verified > 0);
    if (side === 'conflux') {
      // not timed: the acks and the log catch up, so the next round starts from an empty outbox
      const deadline = Date.now() + 60_000;
      while ((await depth()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await sql.query('TRUNCATE webhook_deliveries, webhook_events');
    }
    return { rate: (target / (result.last - start)) * 1000, latencies: result.latencies };
  }

  const key = (side: Side, endpoints: number) => `${side}:${endpoints}`;
  const rates = new Map<string, number[]>();
  const lat = new Map<string, number[]>();
  const paced = new Map<Side, number[]>();
  try {
    for (let r = -1; r < ROUNDS; r++) {
      for (const c of CASES) {
        for (const side of r % 2 === 0 ? [...SIDES].reverse() : SIDES) {
          if (ONLY && ONLY !== key(side, c.endpoints)) continue;
          const o = await once(side, c.endpoints, c.events);
          process.stderr.write(`  ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${side}, ${c.endpoints} endpoints: ${fmt(o.rate)}/s\n`);
          if (r < 0) continue;
          rates.set(key(side, c.endpoints), [...(rates.get(key(side, c.endpoints)) ?? []), o.rate]);
          lat.set(key(side, c.endpoints), [...(lat.get(key(side, c.endpoints)) ?? []), ...o.latencies]);
        }
      }
    }
    for (const side of ONLY ? [] : SIDES) {
      const o = await once(side, PACED_ENDPOINTS, PACED_EVENTS * PACED_SECONDS, PACED_EVENTS);
      process.stderr.write(`  paced: ${side}: ${o.latencies.length} deliveries\n`);
      paced.set(side, o.latencies);
    }
  } finally {
    worker.postMessage('stop' satisfies ToWorker);
    await reply();
    await worker.terminate();
    await rt.stop();
  }
  const loadAfter = loadavg();
  if (ONLY) return true;

  const ok = report(
    'Webhooks out: signed deliveries/s to local endpoints, against `split` → `function` (HMAC) → `http request`',
    'deliveries',
    CASES.map((c) => {
      const s = rates.get(key('conflux', c.endpoints))!;
      const b = rates.get(key('core', c.endpoints))!;
      return {
        name: `conflux-webhook-out, ${c.endpoints} endpoint${c.endpoints > 1 ? 's' : ''} (outbox, signed, acked, logged)`,
        baselineName: `split → function (HMAC) → http request (keep-alive), ${c.endpoints} endpoint${c.endpoints > 1 ? 's' : ''}, nothing stored`,
        subjectPerSec: median(s),
        baselinePerSec: median(b),
        ratio: median(s) / median(b),
        floor: 3,
        subjectRuns: s,
        baselineRuns: b,
      };
    }),
  );
  console.log(
    `\nPer round: ${CASES.map((c) => `${c.endpoints} endpoint(s) × ${c.events} events = ${(c.endpoints * c.events).toLocaleString('en-US')} deliveries`).join('; ')}, handed in as fast as a window of ${WINDOW.toLocaleString('en-US')} outstanding deliveries allows; ${ROUNDS} rounds after a warm-up, sides alternating, median kept. A delivery counts when its receiver has it (each endpoint and webhook-id once); every 50th signature checked with standardwebhooks' Webhook#verify.`,
  );
  const f = (x: number) => x.toFixed(1);
  const pct = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${f(percentile(s, 50))} | ${f(percentile(s, 99))}`;
  };
  console.log(
    `\nDelivery latency (ms), from the event handed to the node to its arrival at the receiver. Paced: ${PACED_EVENTS} events/s to ${PACED_ENDPOINTS} endpoints (${PACED_EVENTS * PACED_ENDPOINTS} deliveries/s) for ${PACED_SECONDS} s; full load: over the timed rounds above (up to ${WINDOW.toLocaleString('en-US')} deliveries outstanding).\n`,
  );
  console.log('| case | p50 | p99 |\n|---|---:|---:|');
  for (const side of SIDES) console.log(`| ${side === 'conflux' ? 'conflux-webhook-out' : 'core flow'}, paced | ${pct(paced.get(side)!)} |`);
  for (const c of CASES)
    for (const side of SIDES)
      console.log(
        `| ${side === 'conflux' ? 'conflux-webhook-out' : 'core flow'}, full load, ${c.endpoints} endpoint(s) | ${pct(lat.get(key(side, c.endpoints))!)} |`,
      );
  console.log(`\n${machine()}; load average (1, 5, 15 min) ${loadBefore} before, ${loadAfter} after; run at ${new Date().toISOString().slice(0, 19)}Z`);
  return ok;
}

if (!isMainThread && (workerData as { receivers?: ReceiverSetup } | undefined)?.receivers) {
  receiverWorker((workerData as { receivers: ReceiverSetup }).receivers).catch((err) => {
    parentPort!.postMessage({ error: (err as Error).stack ?? String(err) } satisfies FromWorker);
  });
}
