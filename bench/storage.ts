/**
 * `npm run bench -- storage`: the SQL storage tiers against the same job done the way a flow of
 * Node-RED core nodes with a PostgreSQL node does it, on a fresh database of the test server
 * (test/support/servers.ts starts PostgreSQL and Redis when none is given).
 *
 *   1. readings/s through createSqlTimeSeries.append (binary COPY, batches of BATCH; each reading
 *      stored once by its key), without and with the rollups in the same transaction, against
 *      (a) one parameterised INSERT … ON CONFLICT DO NOTHING per reading through a pg.Pool of 10
 *          with up to 10 queries in flight (node-red-contrib-postgresql issues one query per
 *          message) — floor 10x;
 *      (b) the raw COPY of the same rows: a binary COPY buffer (BinaryCopyWriter, the store's
 *          own encoder and format) built beforehand, streamed with pg-copy-streams in one
 *          COPY — floor 0.5x.
 *      For information: the same batches sent again (every reading already stored: the staging
 *      path), and the append followed by the long-term store's add, which is what the default
 *      flow did before the time-series store rolled up itself.
 *   2. the same append on PGlite (in memory), without and with rollups, for information.
 *   3. mailbox enqueue (batches of 500) and drain (claim + ack batches of 500, two drainers on
 *      two pools) on PostgreSQL, for information.
 *   4. Redis: the short-term tier's pipelined writes against one awaited SET per reading.
 *
 * Asynchronous work cannot use harness.ts's synchronous loop: each case runs a fixed amount of
 * work ROUNDS times, the cases alternating round by round, and the median rate is kept. The
 * readings table is emptied before every run, so each run writes into the same empty table.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Redis from 'ioredis';
import * as pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { BinaryCopyWriter, openCopier } from '../nodes/core/db/copy';
import { migrate } from '../nodes/core/db/migrate';
import { openSql } from '../nodes/core/db/sql';
import { Mailbox } from '../nodes/core/mailbox/mailbox';
import { createRedisShortTerm } from '../nodes/core/stores/short-term-redis';
import { createSqlLongTerm } from '../nodes/core/stores/long-term-sql';
import { createSqlTimeSeries } from '../nodes/core/stores/time-series-sql';
import type { Reading } from '../nodes/core/stores/types';
import { freshDatabase, startServers } from '../test/support/servers';
import { median, report, runs, type PairResult } from './harness';

const READINGS = 100_000;
const BATCH = 5_000;
const ROUNDS = 5;
const POOL = 10;
const T0 = 1_700_000_000;

const MESSAGES = 50_000;
const REDIS_READINGS = 50_000;
const REDIS_BATCH = 1_000;
const MAILBOX_BATCH = 500;

/** 100 devices × 10 sensors, one reading each per 10 ms of simulated time: what a busy listener passes on. */
function readings(count: number): Reading[] {
  const out: Reading[] = [];
  for (let i = 0; i < count; i++) {
    const device = i % 100;
    const sensor = Math.floor(i / 100) % 10;
    out.push({ tenant: 'default', record: { n: `dev${device}/sensor${sensor}/temperature`, t: T0 + i / 100, v: 20 + ((i * 7919) % 1000) / 100, u: 'Cel' } });
  }
  return out;
}

/** The same rows as binary COPY data (what the store sends), in the column order the store writes. */
function copyBinary(rows: readonly Reading[]): Buffer {
  const w = new BinaryCopyWriter();
  for (const { tenant, record: r } of rows) {
    w.row(11);
    w.text(tenant);
    w.text(r.n);
    w.timestamptz(Math.round(r.t * 1e6));
    w.float8(r.v!);
    for (let i = 0; i < 4; i++) w.null(); // vs, vb, vd, s
    w.text(r.u!);
    w.null(); // ut
    w.null(); // bver
  }
  w.end();
  return Buffer.concat(w.take());
}

/** Seconds fn takes. */
async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

interface Case {
  name: string;
  items: number;
  /** Runs before each round, untimed (empties the table). */
  reset?: () => Promise<unknown>;
  run: () => Promise<unknown>;
  /** Runs after each round, untimed: throws if the work was not done. */
  verify?: () => Promise<unknown>;
}

/** Items per second of each case: one untimed warm-up, then `rounds` alternating timed rounds; the median. */
async function measure(cases: readonly Case[], rounds = ROUNDS): Promise<Map<string, number>> {
  const all = await measureRuns(cases, rounds);
  return new Map([...all].map(([name, xs]) => [name, median(xs)]));
}

/** Every timed run of each case, by name, in order (for the report: every run is listed). */
const everyRun = new Map<string, number[]>();

async function measureRuns(cases: readonly Case[], rounds: number): Promise<Map<string, number[]>> {
  const rates = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (let r = -1; r < rounds; r++) {
    for (const c of cases) {
      await c.reset?.();
      const s = await seconds(c.run);
      await c.verify?.();
      if (r >= 0) rates.get(c.name)!.push(c.items / s);
      process.stderr.write(`  ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${c.name}: ${Math.round(c.items / s).toLocaleString('en-US')}/s\n`);
    }
  }
  for (const [name, xs] of rates) everyRun.set(name, xs);
  return rates;
}

/** Runs fn on every item with at most `concurrency` calls in flight. */
async function inFlight<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

/** `uname -a`, the CPU model from /proc/cpuinfo and the time: what RESULTS.md records of the machine. */
function machineDetails(): string[] {
  let uname: string;
  try {
    uname = execFileSync('uname', ['-a'], { encoding: 'utf8' }).trim();
  } catch {
    uname = `${process.platform} ${process.arch}`;
  }
  let cpu = 'unknown CPU';
  try {
    const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1];
    const count = cpuinfo.match(/^processor\s*:/gm)?.length;
    if (model) cpu = `${count ?? '?'} × ${model}`;
  } catch {
    /* not Linux */
  }
  return [`uname -a: \`${uname}\``, `CPU (/proc/cpuinfo): ${cpu}; run at ${new Date().toISOString().slice(0, 19)}Z`];
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

/** Prints a Markdown table of rates that have no baseline: the median and every run (by case name). */
function info(title: string, rows: [string, number, string, string][]): void {
  console.log(`\n${title}\n\n| case | rate/s (median) | unit | every run |\n|---|---:|---|---|`);
  for (const [name, rate, unit, key] of rows) console.log(`| ${name} | ${fmt(rate)} | ${unit} | ${runs(everyRun.get(key))} |`);
}

async function timeSeries(url: string, data: readonly Reading[], binary: Buffer): Promise<{ pairs: PairResult[]; repeat: number; separate: number }> {
  const db = await openSql({ connectionString: url, poolSize: POOL });
  const copier = openCopier({ connectionString: url });
  const pool = new pg.Pool({ connectionString: url, max: POOL });
  pool.on('error', () => undefined);
  try {
    await migrate(db);
    const store = createSqlTimeSeries(db, { copier });
    const rolling = createSqlTimeSeries(db, { copier, rollups: true });
    const longTerm = createSqlLongTerm(db);
    const empty = () => db.exec('TRUNCATE readings, rollups');
    const check = (name: string) => async () => {
      const { rows } = await db.query<{ n: number }>('SELECT count(*) AS n FROM readings');
      if (rows[0].n !== data.length) throw new Error(`${name} wrote ${rows[0].n} rows, not ${data.length}`);
    };
    const checkRollups = (name: string) => async () => {
      await check(name)();
      const { rows } = await db.query<{ n: number }>("SELECT sum(count)::int8 AS n FROM rollups WHERE size = 'day'");
      if (rows[0].n !== data.length) throw new Error(`${name}: the rollups count ${rows[0].n} readings, not ${data.length}`);
    };
    const appendAll = async (s: typeof store, expectNew: boolean) => {
      for (let i = 0; i < data.length; i += BATCH) {
        const batch = data.slice(i, i + BATCH);
        const result = await s.append(batch);
        if (result.rejected.length) throw new Error(result.rejected[0].reason);
        if (result.written !== (expectNew ? batch.length : 0)) throw new Error(`append wrote ${result.written} of ${batch.length}`);
      }
    };
    // The same work as the store: a repeat of a stored (tenant, name, t) is skipped, not an error.
    const insert = `INSERT INTO readings (tenant_id, name, t, v, u) VALUES ($1, $2, to_timestamp($3), $4, $5) ON CONFLICT (tenant_id, name, t, (coalesce(u, ''))) DO NOTHING`;
    // The same per reading, with its hour and day rollups, as a flow of core nodes would keep them: one statement per message.
    const insertRollup = `WITH new AS (
        INSERT INTO readings (tenant_id, name, t, v, u) VALUES ($1, $2, to_timestamp($3), $4, $5)
        ON CONFLICT (tenant_id, name, t, (coalesce(u, ''))) DO NOTHING RETURNING t, v)
      INSERT INTO rollups AS r (tenant_id, name, size, bucket, count, min, max, sum, last, last_t)
      SELECT $1, $2, s.size, date_trunc(s.size, new.t, 'UTC'), 1, new.v, new.v, new.v, new.v, new.t FROM new, (VALUES ('hour'), ('day')) AS s(size)
      ON CONFLICT (tenant_id, name, size, bucket) DO UPDATE SET
        count = r.count + 1, min = least(r.min, excluded.min), max = greatest(r.max, excluded.max), sum = r.sum + excluded.sum,
        last = CASE WHEN excluded.last_t >= r.last_t THEN excluded.last ELSE r.last END, last_t = greatest(r.last_t, excluded.last_t)`;
    const cases: Case[] = [
      {
        name: 'conflux',
        items: data.length,
        reset: empty,
        run: () => appendAll(store, true),
        verify: check('append'),
      },
      {
        name: 'rollups',
        items: data.length,
        reset: empty,
        run: () => appendAll(rolling, true),
        verify: checkRollups('append with rollups'),
      },
      {
        name: 'separate',
        items: data.length,
        reset: empty,
        run: async () => {
          for (let i = 0; i < data.length; i += BATCH) {
            const batch = data.slice(i, i + BATCH);
            await store.append(batch);
            await longTerm.add(batch);
          }
        },
        verify: check('append, then long-term add'),
      },
      {
        name: 'repeat',
        items: data.length,
        // Untimed: the readings are already stored; the run sends them all again.
        reset: async () => {
          await empty();
          await appendAll(store, true);
        },
        run: () => appendAll(rolling, false),
        verify: check('repeat'),
      },
      {
        name: 'single',
        items: data.length,
        reset: empty,
        run: async () => {
          await inFlight(data, POOL, ({ tenant, record: r }) => pool.query(insert, [tenant, r.n, r.t, r.v, r.u]));
        },
        verify: check('single INSERTs'),
      },
      {
        name: 'single-rollups',
        items: data.length,
        reset: empty,
        run: async () => {
          await inFlight(data, POOL, ({ tenant, record: r }) => pool.query(insertRollup, [tenant, r.n, r.t, r.v, r.u]));
        },
        verify: checkRollups('single INSERTs with rollups'),
      },
      {
        name: 'copy',
        items: data.length,
        reset: empty,
        run: async () => {
          const client = await pool.connect();
          try {
            const chunks = function* () {
              for (let i = 0; i < binary.length; i += 65_536) yield binary.subarray(i, i + 65_536);
            };
            await pipeline(
              Readable.from(chunks()),
              client.query(copyFrom('COPY readings (tenant_id, name, t, v, vs, vb, vd, s, u, ut, bver) FROM STDIN (FORMAT binary)')),
            );
          } finally {
            client.release();
          }
        },
        verify: check('raw COPY'),
      },
    ];
    const rates = await measure(cases);
    const single = rates.get('single')!;
    const copy = rates.get('copy')!;
    const singleRollups = rates.get('single-rollups')!;
    const batches = BATCH.toLocaleString('en-US');
    const plain = rates.get('conflux')!;
    const rollingRate = rates.get('rollups')!;
    const name = `time-series append, batches of ${batches} (binary COPY; each reading stored once)`;
    const rollName = `time-series append with rollups, batches of ${batches} (the same, and the new readings rolled up in its transaction)`;
    const r = (n: string) => everyRun.get(n);
    const pairs: PairResult[] = [
      {
        name,
        baselineName: `one INSERT … ON CONFLICT DO NOTHING per reading, pg.Pool of ${POOL}, ${POOL} in flight`,
        subjectPerSec: plain,
        baselinePerSec: single,
        ratio: plain / single,
        floor: 10,
        subjectRuns: r('conflux'),
        baselineRuns: r('single'),
      },
      {
        name,
        baselineName: 'raw binary COPY of a pre-built buffer into readings, one statement',
        subjectPerSec: plain,
        baselinePerSec: copy,
        ratio: plain / copy,
        floor: 0.5,
        subjectRuns: r('conflux'),
        baselineRuns: r('copy'),
      },
      // The same job per message: the INSERT and its two rollup upserts in one statement.
      {
        name: rollName,
        baselineName: `one INSERT … ON CONFLICT DO NOTHING and its hour and day rollup upserts per reading, ${POOL} in flight`,
        subjectPerSec: rollingRate,
        baselinePerSec: singleRollups,
        ratio: rollingRate / singleRollups,
        floor: 10,
        subjectRuns: r('rollups'),
        baselineRuns: r('single-rollups'),
      },
      // Less work than the subject (no rollups): shown for what rolling up costs.
      {
        name: rollName,
        baselineName: 'raw binary COPY of a pre-built buffer into readings, one statement (no rollups)',
        subjectPerSec: rollingRate,
        baselinePerSec: copy,
        ratio: rollingRate / copy,
        subjectRuns: r('rollups'),
        baselineRuns: r('copy'),
      },
    ];
    return { pairs, repeat: rates.get('repeat')!, separate: rates.get('separate')! };
  } finally {
    await pool.end();
    await copier.close();
    await db.close();
  }
}

async function pglite(data: readonly Reading[]): Promise<{ plain: number; rollups: number }> {
  const db = await openSql({});
  try {
    await migrate(db);
    const appendAll = (rollups: boolean) => async () => {
      const store = createSqlTimeSeries(db, { rollups });
      for (let i = 0; i < data.length; i += BATCH) await store.append(data.slice(i, i + BATCH));
    };
    const reset = () => db.exec('TRUNCATE readings, rollups');
    const rates = await measure([
      { name: 'pglite', items: data.length, reset, run: appendAll(false) },
      { name: 'pglite-rollups', items: data.length, reset, run: appendAll(true) },
    ]);
    return { plain: rates.get('pglite')!, rollups: rates.get('pglite-rollups')! };
  } finally {
    await db.close();
  }
}

async function mailbox(url: string): Promise<{ enqueue: number; drain: number }> {
  const db = await openSql({ connectionString: url, poolSize: POOL });
  const drainers = [await openSql({ connectionString: url, poolSize: 4 }), await openSql({ connectionString: url, poolSize: 4 })];
  try {
    await migrate(db);
    const box = new Mailbox(db, 'outbox');
    let round = 0;
    let queue = '';
    const messages = (q: string) =>
      Array.from({ length: MESSAGES }, (_, i) => ({
        messageId: `${q}-${i}`,
        payload: [{ n: `dev${i % 100}/temp`, t: T0 + i, v: 21.5 }],
        headers: { to: 'crm@fed.example' },
      }));
    let batch: ReturnType<typeof messages> = [];
    const enqueueAll = async () => {
      for (let i = 0; i < batch.length; i += MAILBOX_BATCH) await box.enqueue('default', queue, batch.slice(i, i + MAILBOX_BATCH));
    };
    const drainAll = async () => {
      let delivered = 0;
      await Promise.all(
        drainers.map(async (client, d) => {
          const mb = new Mailbox(client, 'outbox');
          for (;;) {
            const claimed = await mb.claim(queue, { limit: MAILBOX_BATCH, leaseMs: 60_000, worker: `drainer${d}` });
            if (claimed.length === 0) {
              // Empty while the other drainer's claim holds the rows that are left: done once the box is.
              if ((await mb.depth(queue)) === 0) return;
              continue;
            }
            const acked = await mb.ack(
              claimed.map((m) => m.id),
              `drainer${d}`,
            );
            delivered += acked;
          }
        }),
      );
      if (delivered !== MESSAGES) throw new Error(`drained ${delivered} of ${MESSAGES}`);
    };
    const rates = await measure([
      {
        name: 'enqueue',
        items: MESSAGES,
        reset: async () => {
          queue = `q${round++}`;
          batch = messages(queue);
        },
        run: enqueueAll,
      },
      { name: 'drain', items: MESSAGES, run: drainAll },
    ]);
    return { enqueue: rates.get('enqueue')!, drain: rates.get('drain')! };
  } finally {
    await Promise.all([db, ...drainers].map((c) => c.close()));
  }
}

/**
 * The short-term tier on Redis: its writes of one batch go in one pipeline (a Lua script per
 * name: latest-if-newer, the window, the name index). Baselines: (a) the same job as a flow
 * whose Redis node sends one command per message — the same script, one round trip per reading,
 * 10 in flight; (b) for scale, the least a flow can do, one plain SET … EX per reading (no window,
 * no index, a late older reading overwrites the newer one).
 */
async function redisPipelining(redisUrl: string): Promise<PairResult[]> {
  const client = new Redis(redisUrl);
  const limits = { ttlSeconds: 3_600, windowSize: 100, windowSeconds: 600 };
  const data = readings(REDIS_READINGS);
  let run = 0;
  const prefix = () => `bench${run}:`;
  try {
    const cases: Case[] = [
      {
        name: 'redis-pipelined',
        items: data.length,
        reset: async () => void run++,
        run: async () => {
          const store = createRedisShortTerm(client, limits, prefix());
          for (let i = 0; i < data.length; i += REDIS_BATCH) await store.write(data.slice(i, i + REDIS_BATCH));
        },
        verify: async () => {
          const latest = await createRedisShortTerm(client, limits, prefix()).latest('default', data[data.length - 1].record.n);
          if (latest?.t !== data[data.length - 1].record.t) throw new Error('the short-term store did not keep the latest reading');
        },
      },
      {
        name: 'redis-per-message',
        items: data.length,
        reset: async () => void run++,
        run: () => {
          const store = createRedisShortTerm(client, limits, prefix());
          return inFlight(data, POOL, (reading) => store.write([reading]));
        },
      },
      {
        name: 'redis-set',
        items: data.length,
        reset: async () => void run++,
        run: () =>
          inFlight(data, POOL, ({ tenant, record }) => client.set(`${prefix()}${tenant}:${record.n}`, JSON.stringify(record), 'EX', limits.ttlSeconds)),
      },
    ];
    const rates = await measure(cases);
    const subject = rates.get('redis-pipelined')!;
    const name = `short-term write (latest + window + index), batches of ${REDIS_BATCH.toLocaleString('en-US')}, one pipeline each`;
    return [
      {
        name,
        baselineName: `the same script, one command per reading, ${POOL} in flight`,
        subjectPerSec: subject,
        baselinePerSec: rates.get('redis-per-message')!,
        ratio: subject / rates.get('redis-per-message')!,
        floor: 1,
        subjectRuns: everyRun.get('redis-pipelined'),
        baselineRuns: everyRun.get('redis-per-message'),
      },
      {
        name,
        baselineName: `plain SET … EX per reading (less work), ${POOL} in flight`,
        subjectPerSec: subject,
        baselinePerSec: rates.get('redis-set')!,
        ratio: subject / rates.get('redis-set')!,
        subjectRuns: everyRun.get('redis-pipelined'),
        baselineRuns: everyRun.get('redis-set'),
      },
    ];
  } finally {
    for (let r = 0; r <= run; r++) {
      const keys = await client.keys(`bench${r}:*`);
      for (let i = 0; i < keys.length; i += 1_000) await client.del(...keys.slice(i, i + 1_000));
    }
    client.disconnect();
  }
}

export async function run(): Promise<boolean> {
  const servers = startServers();
  const url = await freshDatabase();
  const data = readings(READINGS);
  const binary = copyBinary(data);

  process.stderr.write('storage: time series on PostgreSQL\n');
  const { pairs, repeat, separate } = await timeSeries(url, data, binary);
  process.stderr.write('storage: time series on PGlite\n');
  const embedded = await pglite(data);
  process.stderr.write('storage: mailbox on PostgreSQL\n');
  const box = await mailbox(url);

  const ok = report('Storage: time-series append on PostgreSQL against a core-node flow and raw COPY', 'readings', pairs);
  console.log(`\n${machineDetails().join('  \n')}`);
  console.log(
    `\n${READINGS.toLocaleString('en-US')} readings per run; ${ROUNDS} runs of each case after a warm-up, alternating, median kept; readings emptied before each run.`,
  );
  info('For information (no floor):', [
    [
      `time-series append on PostgreSQL, then the long-term store's add of the same batch (the work the default flow did before), batches of ${BATCH.toLocaleString('en-US')}`,
      separate,
      'readings',
      'separate',
    ],
    [
      `time-series append on PostgreSQL of readings already stored (a batch sent again), with rollups, batches of ${BATCH.toLocaleString('en-US')}`,
      repeat,
      'readings',
      'repeat',
    ],
    [`time-series append on PGlite (in memory), batches of ${BATCH.toLocaleString('en-US')}`, embedded.plain, 'readings', 'pglite'],
    [
      `time-series append on PGlite (in memory) with rollups in the same transaction, batches of ${BATCH.toLocaleString('en-US')}`,
      embedded.rollups,
      'readings',
      'pglite-rollups',
    ],
    [`mailbox enqueue on PostgreSQL, ${MESSAGES.toLocaleString('en-US')} messages in batches of ${MAILBOX_BATCH}`, box.enqueue, 'messages', 'enqueue'],
    [`mailbox drain on PostgreSQL, claim + ack ${MAILBOX_BATCH} at a time, 2 drainers on 2 pools`, box.drain, 'messages', 'drain'],
  ]);
  process.stderr.write('storage: short-term on Redis\n');
  const redis = await redisPipelining(servers.redisUrl);
  const redisOk = report('Storage: short-term writes on Redis against one command per reading', 'readings', redis);
  return ok && redisOk;
}
