/**
 * `npm run bench -- ftp`: files per second delivered to 100 FTP targets (ftp-srv servers in this
 * process, each with its own login), and the naive way in the same run.
 *
 *   Conflux: messages into conflux-ftp-out in the real Node-RED runtime, the targets in the
 *            business store (one per client, as seed 002 has them); each delivery stored in the
 *            outbox on the test PostgreSQL before done(), then uploaded over the node's pool
 *            (default bounds: 50 connections in all, 4 per target), to a temporary name and
 *            renamed, the outbox row deleted.
 *   Naive:   basic-ftp as a quick integration would use it: for each file, connect, log in,
 *            upload, close; one file at a time. Nothing stored, no rename.
 *
 * A file counts when its server has it under its final name (ftp-srv's STOR of the final name, or
 * RNTO to it). Rounds alternate between the two (a warm-up, then ROUNDS timed rounds, the median
 * kept, every run listed).
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { median } from './harness';

const TARGETS = 100;
const ROUNDS = 5;
/** Files per round: Conflux's per target, the naive way's in all (it is slower: rounds of similar length). */
const CONFLUX_FILES_PER_TARGET = 20;
const NAIVE_FILES = 200;
const FILE_BYTES = 50_000;
const ROUND_TIMEOUT_MS = 180_000;

export async function run(): Promise<boolean> {
  const { report, machine, fmt } = await import('./harness');
  const { startServers, freshDatabase } = await import('../test/support/servers');
  const { FtpFarm } = await import('../test/support/ftp-farm');
  const { createBusinessStore } = await import('../nodes/core/stores/business');
  const { startRuntime } = await import('./runtime');
  const { Client } = await import('basic-ftp');

  startServers();
  const url = await freshDatabase();
  const farm = await FtpFarm.start(TARGETS);
  const rt = await startRuntime([
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url, poolSize: '10' },
    { id: 'out', type: 'conflux-ftp-out', z: 'tab', database: 'db', tenant: 'bench', wires: [[]] },
  ]);
  const sql = await (rt.RED.nodes.getNode('db') as { sql(): Promise<any> }).sql();
  await sql.query(`INSERT INTO tenants (id, name) VALUES ('bench', 'bench')`);
  const store = createBusinessStore(sql);
  for (const s of farm.servers)
    await store.create('bench', 'ftp_targets', {
      name: `client-${s.index}`,
      client: `c${s.index}`,
      host: '127.0.0.1',
      port: s.port,
      protocol: 'ftp',
      username: s.user,
      password: s.password,
      directory: '/in',
      naming: '{vin}_{nn:02}.{ext}',
    });
  const out = rt.RED.nodes.getNode('out');
  const image = randomBytes(FILE_BYTES);

  let roundNo = 0;
  const arrivals = (n: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const target = farm.arrivals + n;
      const timer = setTimeout(() => reject(new Error(`round timed out: ${target - farm.arrivals} of ${n} files missing`)), ROUND_TIMEOUT_MS);
      farm.onArrival = () => {
        if (farm.arrivals >= target) {
          clearTimeout(timer);
          farm.onArrival = undefined;
          resolve();
        }
      };
    });

  async function conflux(): Promise<number> {
    roundNo++;
    const n = TARGETS * CONFLUX_FILES_PER_TARGET;
    const arrived = arrivals(n);
    const start = performance.now();
    for (let k = 0; k < CONFLUX_FILES_PER_TARGET; k++)
      for (const s of farm.servers) out.receive({ client: `c${s.index}`, vin: `R${roundNo}K${k}`, files: [{ name: 'photo.jpg', data: image }] });
    await arrived;
    const rate = (n / (performance.now() - start)) * 1000;
    // The outbox rows are deleted a moment after the rename: let them go before the next round.
    for (let i = 0; i < 600 && Number((await sql.query(`SELECT count(*) AS n FROM outbox`)).rows[0].n) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    return rate;
  }

  async function naive(): Promise<number> {
    roundNo++;
    const arrived = arrivals(NAIVE_FILES);
    const start = performance.now();
    for (let i = 0; i < NAIVE_FILES; i++) {
      const s = farm.servers[i % TARGETS];
      const client = new Client(30_000);
      try {
        await client.access({ host: '127.0.0.1', port: s.port, user: s.user, password: s.password });
        await client.ensureDir('/in');
        await client.uploadFrom(Readable.from([image]), `N${roundNo}_${i}.jpg`);
      } finally {
        client.close();
      }
    }
    await arrived;
    return (NAIVE_FILES / (performance.now() - start)) * 1000;
  }

  const rates = { conflux: [] as number[], naive: [] as number[] };
  try {
    for (let r = -1; r < ROUNDS; r++) {
      for (const side of r % 2 === 0 ? (['naive', 'conflux'] as const) : (['conflux', 'naive'] as const)) {
        const rate = side === 'conflux' ? await conflux() : await naive();
        process.stderr.write(`  ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${side}: ${fmt(rate)} files/s\n`);
        if (r >= 0) rates[side].push(rate);
      }
    }
  } finally {
    await rt.stop();
    await farm.stop();
  }
  const ok = report('FTP delivery: files/s to 100 FTP targets (ftp-srv), against connect → upload → close per file with basic-ftp', 'files', [
    {
      name: `conflux-ftp-out, ${TARGETS} targets from the business store (outbox, pooled connections, temporary name + rename)`,
      baselineName: 'basic-ftp: connect, log in, upload, close per file, one at a time, nothing stored',
      subjectPerSec: median(rates.conflux),
      baselinePerSec: median(rates.naive),
      ratio: median(rates.conflux) / median(rates.naive),
      floor: 5,
      subjectRuns: rates.conflux,
      baselineRuns: rates.naive,
    },
  ]);
  console.log(
    `\nPer round: Conflux ${TARGETS * CONFLUX_FILES_PER_TARGET} files (${CONFLUX_FILES_PER_TARGET} per target, handed in at once), the naive way ${NAIVE_FILES} files (round robin over the targets); ${FILE_BYTES.toLocaleString('en-US')} bytes each; ${ROUNDS} rounds after a warm-up, sides alternating, median kept.\n${machine()}; run at ${new Date().toISOString().slice(0, 19)}Z`,
  );
  return ok;
}
