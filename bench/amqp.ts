/**
 * `npm run bench -- amqp`: messages per second published to RabbitMQ with publisher confirms.
 *
 *   Conflux   `conflux-amqp-out` as it runs, in the real Node-RED runtime (bench/runtime.ts): each
 *             input message (a reading of one measurement, delivered the way Node-RED delivers
 *             messages between nodes) becomes its eapi_measurement_new message,
 *             is written to the outbox (PostgreSQL) before done(), and the outbox is drained onto a
 *             confirm channel, each row deleted once the broker confirmed it. A round is timed from
 *             the first input until the customer queue holds every message.
 *   (a)       what a simple flow does: one publish, then wait for its confirm, then the next
 *             (amqplib's ConfirmChannel, `await waitForConfirms()` after each publish). Bare
 *             amqplib in the bench process, no Node-RED and no outbox: a generous stand-in.
 *   (b)       the ceiling: bare amqplib publishing every message at once on a confirm channel
 *             (respecting 'drain'), then waiting for all the confirms.
 *
 * Same broker (the test RabbitMQ of test/servers/servers.sh), same persistent messages with the
 * same JSON bodies, each side into its own durable customer queue (3-day TTL, dead-letter
 * exchange), purged before each round; the cases alternate round by round (a warm-up, then
 * ROUNDS timed rounds, median kept, every run listed). Floors (issue 10): Conflux >= 5x (a) and
 * >= 0.5x (b).
 */
import * as os from 'node:os';
import type { PairResult } from './harness';
import { median, nowMs } from './harness';

const N = Number(process.env.BENCH_AMQP_MESSAGES ?? 20_000);
/** The per-message baseline is slow: fewer messages per round give the same rate in less time. */
const N_SERIAL = Number(process.env.BENCH_AMQP_SERIAL_MESSAGES ?? 2_000);
const ROUNDS = 5;
const T0 = 1_790_000_000;
const ALL = ['conflux', 'serial', 'bare'] as const;
type Case = (typeof ALL)[number];
/** For profiling one side alone: BENCH_AMQP_SIDES=conflux (the report then needs all three). */
const CASES: readonly Case[] = process.env.BENCH_AMQP_SIDES ? (process.env.BENCH_AMQP_SIDES.split(',') as Case[]) : ALL;

const loadavg = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(', ');

export async function run(): Promise<boolean> {
  const { report, machine } = await import('./harness');
  const { startServers, freshDatabase, amqpUrl } = await import('../test/support/servers');
  const { startRuntime, counters } = await import('./runtime');
  const amqp = await import('amqplib');
  const { declareCustomer, declareExchanges, DEFAULT_TOPOLOGY, queueName } = await import('../nodes/core/amqp/topology');
  const { encodeEapi } = await import('../nodes/core/codecs/eapi');

  startServers();
  const dbUrl = await freshDatabase();
  const url = amqpUrl();
  const loadBefore = loadavg();
  const customers: Record<Case, string> = { conflux: `bench-conflux-${process.pid}`, serial: `bench-serial-${process.pid}`, bare: `bench-bare-${process.pid}` };
  const queues = Object.fromEntries(ALL.map((c) => [c, queueName(DEFAULT_TOPOLOGY, customers[c])])) as Record<Case, string>;

  const conn = await amqp.connect(url);
  const admin = await conn.createChannel();
  await declareExchanges(admin, DEFAULT_TOPOLOGY);
  for (const c of ALL) await declareCustomer(admin, DEFAULT_TOPOLOGY, customers[c]);
  const pub = await conn.createConfirmChannel();

  const rt = await startRuntime([
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url: dbUrl },
    { id: 'mq', type: 'conflux-amqp', urls: url },
    {
      id: 'out',
      type: 'conflux-amqp-out',
      z: 'tab',
      amqp: 'mq',
      database: 'db',
      customer: customers.conflux,
      ...(process.env.BENCH_AMQP_INFLIGHT ? { maxInFlight: process.env.BENCH_AMQP_INFLIGHT } : {}),
      wires: [['count']],
    },
    { id: 'count', type: 'bench-count', z: 'tab' },
  ]);
  const counter = { readings: 0, messages: 0, latencies: [] as number[], last: 0 };
  counters.set('count', counter);
  const acceptedRates: number[] = [];
  const out = rt.RED.nodes.getNode('out') as { receive(msg: unknown): void };

  let round = 0;
  const reading = (i: number) => ({
    payload: [{ n: 'bench-dev/1/temperature', t: T0 + round * 1_000_000 + i, u: 'Cel', v: 20 + (i % 100) / 10 }],
    device: { tenant: 'default', id: 'bench-dev' },
  });
  /** The eapi body of a reading, as a flow's function node would build it. */
  const body = (i: number) => Buffer.from(JSON.stringify(encodeEapi(reading(i).payload)[0]));
  const depth = async (q: string) => (await admin.checkQueue(q)).messageCount;
  const filled = async (q: string, n: number) => {
    while ((await depth(q)) < n) await new Promise((r) => setTimeout(r, 20));
  };
  const publishOptions = (i: number) => ({ persistent: true, messageId: `b${round}-${i}`, contentType: 'application/json', type: 'eapi_measurement_new' });

  /** One round of one case: messages/s confirmed (and in the queue). */
  async function once(c: Case): Promise<number> {
    round++;
    await admin.purgeQueue(queues[c]);
    const key = `${customers[c]}.eapi_measurement_new`;
    const n = c === 'serial' ? N_SERIAL : N;
    const start = nowMs();
    if (c === 'conflux') {
      counter.messages = 0;
      // Delivered as Node-RED delivers a message from one node to the next: each in its own
      // setImmediate (runtime/lib/flows/Flow.js). Like a burst from an upstream node they all run in
      // one check phase: promise jobs (so the outbox's first INSERT is sent) run between them, the
      // database's answers are read only after the burst.
      for (let i = 0; i < n; i++) setImmediate(() => out.receive(reading(i)));
      await filled(queues[c], n);
      // For the reader: how fast the outbox took them (the node passes a message on once it is kept).
      acceptedRates.push(n / ((counter.last - start) / 1000));
    } else if (c === 'serial') {
      for (let i = 0; i < n; i++) {
        pub.publish(DEFAULT_TOPOLOGY.exchange, key, body(i), publishOptions(i));
        await pub.waitForConfirms();
      }
    } else {
      const confirms: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        let room = true;
        confirms.push(
          new Promise<void>((resolve, reject) => {
            room = pub.publish(DEFAULT_TOPOLOGY.exchange, key, body(i), publishOptions(i), (err) => (err ? reject(err) : resolve()));
          }),
        );
        if (!room) await new Promise((resolve) => pub.once('drain', resolve));
      }
      await Promise.all(confirms);
    }
    const ms = nowMs() - start;
    const got = await depth(queues[c]);
    if (got < n) throw new Error(`${c}: ${got} of ${n} messages in the queue after the round`);
    return n / (ms / 1000);
  }

  const rates = new Map<Case, number[]>(ALL.map((c) => [c, []]));
  try {
    for (let r = -1; r < ROUNDS; r++) {
      for (const c of CASES) {
        const rate = await once(c);
        process.stderr.write(`  ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${c}: ${Math.round(rate).toLocaleString('en-US')}/s\n`);
        if (r >= 0) rates.get(c)!.push(rate);
      }
    }
  } finally {
    await rt.stop();
    for (const c of CASES) await admin.deleteQueue(queues[c]).catch(() => undefined);
    for (const c of CASES) await admin.deleteQueue(`${queues[c]}.dead`).catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
  const loadAfter = loadavg();
  if (CASES.length < ALL.length) return true; // profiling one side: no report
  const names: Record<Case, string> = {
    conflux: 'conflux-amqp-out: outbox (PostgreSQL) → confirm channel, confirms batched',
    serial: 'amqplib, one confirm wait per message (a simple flow)',
    bare: 'bare amqplib, all published then all confirms awaited (ceiling)',
  };
  const pair = (subject: Case, baseline: Case, floor: number): PairResult => ({
    name: names[subject],
    baselineName: names[baseline],
    subjectPerSec: median(rates.get(subject)!),
    baselinePerSec: median(rates.get(baseline)!),
    ratio: median(rates.get(subject)!) / median(rates.get(baseline)!),
    floor,
    subjectRuns: rates.get(subject),
    baselineRuns: rates.get(baseline),
  });
  const ok = report('AMQP publishing with publisher confirms: messages/s confirmed by RabbitMQ', 'messages', [
    pair('conflux', 'serial', 5),
    pair('conflux', 'bare', 0.5),
  ]);
  console.log(
    `\n${N.toLocaleString('en-US')} messages per round (${N_SERIAL.toLocaleString('en-US')} for the one-wait-per-message side), persistent, one eapi_measurement_new JSON body each, into a durable customer queue; ${ROUNDS} rounds after a warm-up, alternating, median kept. RabbitMQ 3.10 (Debian) on loopback; the outbox on the test PostgreSQL 15 (fsync off).`,
  );
  console.log(
    `\nThe Conflux side accepted (wrote to the outbox and passed on) at a median ${Math.round(median(acceptedRates.slice(1))).toLocaleString('en-US')} messages/s; the rest of its time is the drain (claim, publish, confirm, delete).`,
  );
  console.log(`\n${machine()}; load average (1, 5, 15 min) ${loadBefore} before, ${loadAfter} after; run at ${new Date().toISOString().slice(0, 19)}Z`);
  return ok;
}
