/**
 * `npm run bench -- xmpp`: Sen1 messages per second between two proxies through Prosody, each
 * acknowledged by the receiving proxy with a XEP-0184 receipt.
 *
 *   Conflux   conflux-xmpp-out (proxy alice) → Prosody → conflux-xmpp-in (proxy bob) in the real
 *             Node-RED runtime (bench/runtime.ts): each input message (one reading) is written to
 *             alice's outbox, sent as a Sen1Message stanza, stored in bob's inbox, answered with
 *             its receipt, handed to bob's flow (a count node) and deleted; alice deletes its
 *             outbox entry on the receipt. A round is timed from the first input until bob's flow
 *             has counted every message and alice's outbox is empty.
 *   baseline  what a simple flow does with the bare library: @xmpp/client (its own `client()`, in a
 *             child process that trusts the test CA: bench/xmpp-bare.ts),
 *             one Sen1 stanza with a receipt request, then wait for the receipt, then the next;
 *             the receiver is another bare @xmpp/client that answers each receipt at once. No
 *             Node-RED, no database: a generous stand-in.
 *
 * Same Prosody (the test servers', c2s on loopback with STARTTLS, SCRAM login, stream management on),
 * same Sen1 bodies; the cases alternate round by round (a warm-up, then ROUNDS timed rounds,
 * median kept, every run listed). Quick run: BENCH_XMPP_MESSAGES=300 BENCH_XMPP_SERIAL_MESSAGES=100.
 *
 * Most of the baseline's per-message time is TCP, not XMPP: @xmpp/client leaves Nagle's algorithm
 * on, so each small stanza waits for the delayed ACK (~40 ms; ~22 messages/s here). Conflux turns
 * it off. BENCH_XMPP_NODELAY=1 turns it off in the baseline too, to see the remaining difference
 * (pipelining under a bounded in-flight window against one round trip per message).
 */
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { PairResult } from './harness';
import { median, nowMs } from './harness';

const N = Number(process.env.BENCH_XMPP_MESSAGES ?? 5_000);
/** The per-message baseline is slow: fewer messages per round give the same rate in less time. */
const N_SERIAL = Number(process.env.BENCH_XMPP_SERIAL_MESSAGES ?? 1_000);
const ROUNDS = 5;
const T0 = 1_790_000_000;
const ALL = ['conflux', 'serial'] as const;
type Case = (typeof ALL)[number];

const loadavg = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(', ');

export async function run(): Promise<boolean> {
  const { report, machine } = await import('./harness');
  const { startServers, freshDatabase, prosody } = await import('../test/support/servers');
  const { startRuntime, counters, until } = await import('./runtime');
  const { Mailbox } = await import('../nodes/core/mailbox/mailbox');
  const { openSql } = await import('../nodes/core/db/sql');

  startServers();
  const p = prosody();
  const dbUrl = await freshDatabase();
  const loadBefore = loadavg();
  // STARTTLS with the test CA on both sides: the bare client upgrades whenever the server offers it.
  const account = (id: string, user: string) => ({
    id,
    type: 'conflux-xmpp',
    jid: `${user}@${p.domain}`,
    host: p.host,
    port: String(p.port),
    tlsMode: 'starttls',
    tls: 'tls',
    resource: `bench-${id}`,
  });
  const rt = await startRuntime(
    [
      { id: 'tab', type: 'tab' },
      { id: 'db', type: 'conflux-postgres', url: dbUrl },
      { id: 'tls', type: 'tls-config', cert: '', key: '', ca: p.caFile, verifyservercert: true },
      account('alice', 'alice'),
      account('bob', 'bob'),
      {
        id: 'out',
        type: 'conflux-xmpp-out',
        z: 'tab',
        xmpp: 'alice',
        database: 'db',
        to: `bob@${p.domain}`,
        username: 'bench',
        ...(process.env.BENCH_XMPP_INFLIGHT ? { maxInFlight: process.env.BENCH_XMPP_INFLIGHT } : {}),
        wires: [[]],
      },
      { id: 'in', type: 'conflux-xmpp-in', z: 'tab', xmpp: 'bob', database: 'db', wires: [['count']] },
      { id: 'count', type: 'bench-count', z: 'tab' },
    ],
    {},
    { alice: { password: p.password }, bob: { password: p.password } },
  );
  const counter = { readings: 0, messages: 0, latencies: [] as number[], last: 0 };
  counters.set('count', counter);
  const out = rt.RED.nodes.getNode('out') as { receive(msg: unknown): void };
  const online = (id: string) => (rt.RED.nodes.getNode(id) as { xmpp: { online: boolean } }).xmpp.online;
  const sql = await openSql({ connectionString: dbUrl, poolSize: 1 });
  const outbox = new Mailbox(sql, 'outbox');

  // The baseline in a child process (bench/xmpp-bare.ts), which trusts the test CA.
  const child = spawn(process.execPath, [path.join(__dirname, 'xmpp-bare.js'), p.host, String(p.port), p.domain, p.password], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: p.caFile },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<string> => {
    const r = await lines.next();
    if (r.done) throw new Error('the baseline process ended');
    return r.value;
  };
  // A failure from here on still stops the runtime and the child (the servers stop at exit).
  const stopAll = async () => {
    child.stdin!.end();
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    await rt.stop();
    await sql.close();
  };
  try {
    if ((await nextLine()) !== 'ready') throw new Error('the baseline clients did not log in');
    await until(() => online('alice') && online('bob'), 60_000, 'both proxies online');
  } catch (err) {
    child.kill();
    await stopAll();
    throw err;
  }

  let round = 0;
  const reading = (i: number) => [{ n: 'bench/temperature', t: T0 + round * 1_000_000 + i, u: 'Cel', v: 20 + (i % 100) / 10 }];

  async function once(c: Case): Promise<number> {
    round++;
    const n = c === 'serial' ? N_SERIAL : N;
    const start = nowMs();
    if (c === 'conflux') {
      counter.messages = 0;
      for (let i = 0; i < n; i++) out.receive({ payload: reading(i), messageId: `b${round}-${i}` });
      await until(() => counter.messages >= n, 600_000, `bob's flow to count ${n}`);
      await until(async () => (await outbox.depth(`xmpp:alice@${p.domain}`)) === 0, 600_000, "alice's outbox to empty");
    } else {
      child.stdin!.write(`${round} ${n}\n`);
      return Number(await nextLine());
    }
    return n / ((nowMs() - start) / 1000);
  }

  const rates = new Map<Case, number[]>(ALL.map((c) => [c, []]));
  try {
    for (let r = -1; r < ROUNDS; r++) {
      for (const c of ALL) {
        const rate = await once(c);
        process.stderr.write(`  ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${c}: ${Math.round(rate).toLocaleString('en-US')}/s\n`);
        if (r >= 0) rates.get(c)!.push(rate);
      }
    }
  } finally {
    await stopAll();
  }
  const loadAfter = loadavg();
  const result: PairResult = {
    name: 'conflux-xmpp-out → Prosody → conflux-xmpp-in: outbox, inbox (PostgreSQL), receipts',
    baselineName: 'bare @xmpp/client, one receipt wait per message (a simple flow)',
    subjectPerSec: median(rates.get('conflux')!),
    baselinePerSec: median(rates.get('serial')!),
    ratio: median(rates.get('conflux')!) / median(rates.get('serial')!),
    subjectRuns: rates.get('conflux'),
    baselineRuns: rates.get('serial'),
  };
  const ok = report('XMPP federation: Sen1 messages/s between two proxies through Prosody, each acknowledged with a receipt', 'messages', [result]);
  console.log(
    `\n${N.toLocaleString('en-US')} messages per round (${N_SERIAL.toLocaleString('en-US')} for the one-wait-per-message side), one reading each as a Sen1Message body; ${ROUNDS} rounds after a warm-up, alternating, median kept; ratio ${result.ratio.toFixed(2)}x. Prosody 0.12 (Debian) on loopback, STARTTLS; outbox and inbox on the test PostgreSQL 15 (fsync off).`,
  );
  console.log(`\n${machine()}; load average (1, 5, 15 min) ${loadBefore} before, ${loadAfter} after; run at ${new Date().toISOString().slice(0, 19)}Z`);
  return ok;
}
