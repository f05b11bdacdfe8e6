/**
 * Acceptance (issue 14, item 4): one instance holds 10,000 concurrent TCP device sessions, and
 * what each costs in memory.
 *
 * The platform runs as `npm start` runs it (dist/settings.js, the shipped flow, its gateway's
 * Max sessions at the default 10,000), with CONFLUX_POSTGRES_URL on the test PostgreSQL so that
 * the resident set measured is the platform's own (the embedded PGlite would add its buffers as
 * it reads 10,000 device keys). Its open-files limit and that of the client processes are raised
 * by their start command (`ulimit -Sn`); when the hard limit of this machine is too low for that,
 * the test fails and says what to raise: it never skips.
 *
 * 10,000 devices, each with its own key, are provisioned in bulk in the business tables before
 * the start, as an operator's import would. Two client processes (tools/device-load/sessions.ts)
 * log in 5,000 devices each with SCRAM and hold them. Then, with every session open at once:
 * /metrics counts 10,000 TCP sessions; every session answers a PING; a reading on every 100th
 * session is ACKed and is in the readings table; the server's own keepalive reaches every
 * session (a PING after half the gateway's idle timeout of silence: 60 s) and none is closed,
 * by the server or otherwise; no device was refused. The resident set of the platform process
 * (VmRSS from /proc) with the sessions, less its resident set idle, divided by the sessions, is
 * the memory per session; the test prints it (bench/RESULTS.md, "load") and fails above
 * MAX_KIB_PER_SESSION.
 *
 * CONFLUX_LOAD_SESSIONS sets another count: 1,000 tries the test quickly (the memory bounds are
 * then not checked: a few MiB of noise outweigh the sessions); above the gateway's Max sessions
 * (10,000) the logins past it are refused and the test fails, as it should.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { deriveScramKeysAsync, type ScramKeys } from '../../nodes/core/auth/scram';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql } from '../../nodes/core/db/sql';
import { HolderProcess, type HolderStatus, type OpenResult, type Outcome } from '../../tools/device-load/sessions';
import { freePort, getJson, start, START_TIMEOUT_MS, stop, tempDataDir, waitForOutput, type Platform } from '../support/platform';
import { freshDatabase } from '../support/servers';

const SESSIONS = Number(process.env.CONFLUX_LOAD_SESSIONS ?? 10_000);
/** Client processes, each holding an equal share. */
const HOLDERS = 2;
/** Files besides the sessions' sockets: Node-RED's own, the database pool, listeners, modules. */
const SPARE_FILES = 1_024;
/** A reading on every SAMPLE_EVERYth session. */
const SAMPLE_EVERY = 100;
/** The shipped gateway's idle timeout (flows/default.json): the server PINGs at half of it. */
const IDLE_TIMEOUT_MS = 120_000;
/**
 * Resident memory per idle session, at most: measured at about 5 KiB (bench/RESULTS.md, "load");
 * a bound well above it, so that only a real regression (a buffer, a timer list or a login's
 * state kept per session) fails the test.
 */
const MAX_KIB_PER_SESSION = 16;
const SERIAL = 'load-';
const KEY = 'load device key ';

/** The soft and hard limits of open files of a process, from /proc/<pid>/limits. */
function openFiles(pid: number | 'self'): { soft: number; hard: number } {
  const line = fs
    .readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '')
    .slice('Max open files'.length)
    .trim()
    .split(/\s+/)
    .map((x) => (x === 'unlimited' ? Infinity : Number(x)));
  return { soft, hard };
}

/** VmRSS of a process, KiB. */
function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

/** One sample of a Prometheus text exposition; undefined when the series is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let found: number | undefined;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) found = (found ?? 0) + Number(m[3]);
  }
  return found;
}

// ws comes with node-red (the editor's own websocket library); Node 20 has no WebSocket client.
const WebSocket = require(require.resolve('ws', { paths: [path.dirname(require.resolve('node-red/package.json'))] }));

/**
 * A full garbage collection in the platform through its inspector (NODE_OPTIONS=--inspect), then
 * its JS heap in use and its VmRSS, KiB: both read with no garbage of the start-up or the logins
 * left to count.
 */
async function memoryAfterGc(platform: Platform, inspectorUrl: string): Promise<{ heapKiB: number; rssKiB: number }> {
  const ws = new WebSocket(inspectorUrl);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const answers = new Map<number, (m: { result?: any; error?: { message: string } }) => void>();
  ws.on('message', (data: Buffer) => {
    const m = JSON.parse(String(data));
    answers.get(m.id)?.(m);
  });
  let seq = 0;
  const call = (method: string) =>
    new Promise<any>((resolve, reject) => {
      answers.set(++seq, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
      ws.send(JSON.stringify({ id: seq, method }));
    });
  try {
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage'); // what the first one's finalizers released
    const heap = await call('Runtime.getHeapUsage');
    return { heapKiB: heap.usedSize / 1024, rssKiB: rssKiB(platform.child.pid!) };
  } finally {
    ws.close();
  }
}

const mib = (kib: number) => (kib / 1024).toFixed(1);
const seconds = (ms: number) => (ms / 1000).toFixed(1);

describe(`load: ${SESSIONS.toLocaleString('en-US')} concurrent TCP device sessions on one instance`, function () {
  // Provisioning (one PBKDF2 per key), the logins, 60 s of silence for the keepalive: minutes.
  this.timeout(START_TIMEOUT_MS + 300_000);
  const dataDir = tempDataDir();
  const needFiles = SESSIONS + SPARE_FILES;
  const share = Math.ceil(SESSIONS / HOLDERS);
  const holderFiles = share + SPARE_FILES;
  let platform: Platform | undefined;
  let holders: HolderProcess[] = [];
  let pgUrl = '';
  let tcpPort = 0;
  let inspector = '';
  let idle = { heapKiB: 0, rssKiB: 0 };
  const log = (line: string) => console.log(`      ${line}`);

  before(async function () {
    // What this machine must allow, checked first so that a failure says so and not "EMFILE".
    const { hard } = openFiles('self');
    if (hard < needFiles)
      throw new Error(
        `this test needs ${needFiles} open files in the platform process (${SESSIONS} sessions + ${SPARE_FILES}), but the hard limit is ${hard}: ` +
          'raise it (as root: `ulimit -Hn 65536` in the shell that starts the tests, LimitNOFILE=65536 in a systemd unit, `--ulimit nofile=65536:65536` for docker) — see docs/operations.md',
      );
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (high - low + 1 < SESSIONS + SPARE_FILES)
      throw new Error(
        `the ephemeral port range ${low}-${high} has fewer than ${SESSIONS + SPARE_FILES} ports for ${SESSIONS} client connections: widen net.ipv4.ip_local_port_range`,
      );

    // Devices with a key each, in bulk: one statement for the devices, one for their keys.
    const t0 = Date.now();
    pgUrl = await freshDatabase();
    const db = await openSql({ connectionString: pgUrl, poolSize: 2 });
    try {
      await migrate(db);
      const serials = Array.from({ length: SESSIONS }, (_, i) => `${SERIAL}${i}`);
      const { rows } = await db.query<{ id: string; serial: string }>(
        `INSERT INTO devices (tenant_id, serial) SELECT 'default', unnest($1::text[]) RETURNING id::text, serial`,
        [serials],
      );
      const idOf = new Map(rows.map((r) => [r.serial, r.id]));
      // One PBKDF2 per key, on the thread pool: 64 at a time keep every core busy.
      const keys: Array<{ id: string } & ScramKeys> = [];
      for (let i = 0; i < SESSIONS; i += 64) {
        const batch = serials.slice(i, i + 64);
        keys.push(...(await Promise.all(batch.map(async (s, k) => ({ id: idOf.get(s)!, ...(await deriveScramKeysAsync(`${KEY}${i + k}`)) })))));
      }
      const hex = (pick: (k: (typeof keys)[number]) => Buffer) => keys.map((k) => pick(k).toString('hex'));
      await db.query(
        `INSERT INTO device_keys (tenant_id, device_id, slot, salt, iterations, stored_key, server_key)
         SELECT 'default', unnest($1::bigint[]), 1, decode(unnest($2::text[]), 'hex'), unnest($3::int[]), decode(unnest($4::text[]), 'hex'), decode(unnest($5::text[]), 'hex')`,
        [keys.map((k) => k.id), hex((k) => k.salt), keys.map((k) => k.iterations), hex((k) => k.storedKey), hex((k) => k.serverKey)],
      );
    } finally {
      await db.close();
    }
    log(`provisioned ${SESSIONS} devices with their keys in ${seconds(Date.now() - t0)} s`);

    tcpPort = await freePort();
    platform = await start(
      {
        CONFLUX_DATA_DIR: dataDir,
        CONFLUX_POSTGRES_URL: pgUrl,
        CONFLUX_TCP_PORT: String(tcpPort),
        CONFLUX_UDP_PORT: String(await freePort()),
        CONFLUX_MQTT_PORT: String(await freePort()),
        // The inspector on a free loopback port: to collect the garbage before reading memory.
        NODE_OPTIONS: '--inspect=127.0.0.1:0',
      },
      { openFiles: needFiles },
    );
    const limit = openFiles(platform.child.pid!);
    assert.ok(limit.soft >= needFiles, `the platform's soft limit of open files is ${limit.soft}, not at least ${needFiles}`);
    assert.doesNotMatch(platform.output(), /Max sessions is \d+, but/, 'the gateway warned of too few open files');
    const metrics = await getJson(platform, '/metrics');
    assert.equal(metrics.status, 200, `GET /metrics answered ${metrics.status}`);
    inspector = (await waitForOutput(platform, /Debugger listening on (ws:\/\/\S+)/))[1];
    idle = await memoryAfterGc(platform, inspector);
    log(`platform started (open files ${limit.soft}/${limit.hard}); idle: ${mib(idle.rssKiB)} MiB resident, ${mib(idle.heapKiB)} MiB JS heap`);

    holders = Array.from({ length: HOLDERS }, () => HolderProcess.fork({ openFiles: holderFiles }));
  });

  after(async () => {
    await Promise.all(holders.map((h) => h.stop()));
    await stop(platform);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const all = <T>(f: (h: HolderProcess) => Promise<T>) => Promise.all(holders.map(f));
  const sum = (outcomes: Outcome[]) => ({
    ok: outcomes.reduce((n, o) => n + o.ok, 0),
    failed: outcomes.reduce((n, o) => n + o.failed, 0),
    errors: outcomes.flatMap((o) => o.errors),
    ms: Math.max(...outcomes.map((o) => o.ms)),
  });
  const metrics = async () => {
    const res = await getJson(platform!, '/metrics');
    assert.equal(res.status, 200, `GET /metrics answered ${res.status}`);
    return String(res.body);
  };
  /** Every client session still open, and why any closed. */
  const stillOpen = async (when: string) => {
    const statuses: HolderStatus[] = await all((h) => h.status());
    const open = statuses.reduce((n, s) => n + s.open, 0);
    const closed: Record<string, number> = {};
    for (const s of statuses) for (const [why, n] of Object.entries(s.closed)) closed[why] = (closed[why] ?? 0) + n;
    assert.equal(open, SESSIONS, `${when}: ${SESSIONS - open} sessions closed: ${JSON.stringify(closed)}`);
    return statuses;
  };

  it(`logs in ${SESSIONS.toLocaleString('en-US')} devices over TCP (SCRAM) from ${HOLDERS} client processes, all held at once`, async () => {
    for (const h of holders) {
      const limit = openFiles(h.child.pid!);
      assert.ok(limit.soft >= holderFiles, `a client process's soft limit of open files is ${limit.soft}, not at least ${holderFiles}`);
    }
    const results: OpenResult[] = await Promise.all(
      holders.map((h, i) =>
        h.open({
          port: tcpPort,
          first: i * share,
          count: Math.min(share, SESSIONS - i * share),
          serialPrefix: SERIAL,
          keyPrefix: KEY,
          concurrency: 100,
        }),
      ),
    );
    const opened = results.reduce((n, r) => n + r.opened, 0);
    log(`${opened} sessions logged in within ${seconds(Math.max(...results.map((r) => r.ms)))} s`);
    assert.equal(opened, SESSIONS, `logins failed: ${results.flatMap((r) => r.errors).join('; ')}`);
    await stillOpen('after the logins');
  });

  it(`the platform counts ${SESSIONS.toLocaleString('en-US')} live TCP sessions at /metrics`, async () => {
    const text = await metrics();
    assert.equal(
      sample(text, 'conflux_device_sessions', { transport: 'tcp' }),
      SESSIONS,
      text
        .split('\n')
        .filter((l) => l.includes('session'))
        .join('\n'),
    );
  });

  it('every session answers a PING with a PONG', async () => {
    const r = sum(await all((h) => h.ping(60_000)));
    log(`${r.ok} PONGs in ${seconds(r.ms)} s`);
    assert.equal(r.ok, SESSIONS, `${r.failed} sessions did not answer: ${r.errors.join('; ')}`);
  });

  it(`a reading on every ${SAMPLE_EVERY}th session is ACKed and stored`, async () => {
    const outcomes = await all((h) => h.send({ every: SAMPLE_EVERY, sensor: 'held', timeoutMs: 60_000 }));
    const r = sum(outcomes);
    const expected = Array.from({ length: Math.ceil(SESSIONS / SAMPLE_EVERY) }, (_, k) => k * SAMPLE_EVERY);
    log(`${r.ok} readings ACKed in ${seconds(r.ms)} s`);
    assert.equal(r.ok, expected.length, `${r.failed} readings not ACKed: ${r.errors.join('; ')}`);
    // An ACK comes once the flow has finished with the reading: once it is stored.
    const db = await openSql({ connectionString: pgUrl, poolSize: 1 });
    try {
      const { rows } = await db.query<{ name: string; v: number }>(`SELECT name, v FROM readings WHERE tenant_id = 'default' AND name LIKE $1 ORDER BY v`, [
        `${SERIAL}%/held`,
      ]);
      assert.deepEqual(
        rows.map((row) => [row.name, row.v]),
        expected.map((i) => [`${SERIAL}${i}/held`, i]),
      );
    } finally {
      await db.close();
    }
  });

  it(`none is dropped while held: the server's keepalive PINGs every session after ${IDLE_TIMEOUT_MS / 2000} s of silence, and all stay open`, async () => {
    // The sessions' last bytes went out in the round above: from now on each is silent until the
    // server's idle timer sends its PING (half the idle timeout after that session's last byte).
    const since = Date.now();
    const r = sum(await all((h) => h.serverPings(since, IDLE_TIMEOUT_MS)));
    log(`every session PINGed by the server within ${seconds(r.ms)} s of silence`);
    assert.equal(r.ok, SESSIONS, `${r.failed} sessions had no PING from the server: ${r.errors.join('; ')}`);
    const statuses = await stillOpen('after the keepalive round');
    const text = await metrics();
    assert.equal(sample(text, 'conflux_device_sessions', { transport: 'tcp' }), SESSIONS, 'sessions at /metrics after the keepalive round');
    assert.equal(sample(text, 'conflux_device_refusals_total', { transport: 'tcp' }) ?? 0, 0, 'TCP refusals at /metrics');

    const held = await memoryAfterGc(platform!, inspector);
    const perSession = (x: keyof typeof held) => (held[x] - idle[x]) / SESSIONS;
    const clientKiB = statuses.reduce((n, s) => n + s.rssKiB, 0);
    log(
      `platform resident: ${mib(idle.rssKiB)} MiB idle, ${mib(held.rssKiB)} MiB with ${SESSIONS} sessions: ${perSession('rssKiB').toFixed(1)} KiB per session ` +
        `(JS heap ${mib(idle.heapKiB)} → ${mib(held.heapKiB)} MiB: ${perSession('heapKiB').toFixed(1)} KiB per session); the ${HOLDERS} client processes: ${mib(clientKiB)} MiB`,
    );
    if (SESSIONS < 10_000) return;
    assert.ok(perSession('rssKiB') > 0, 'the resident set did not grow with the sessions');
    assert.ok(perSession('rssKiB') <= MAX_KIB_PER_SESSION, `${perSession('rssKiB').toFixed(1)} KiB resident per session: more than ${MAX_KIB_PER_SESSION} KiB`);
  });
});

describe('load: a platform that may open fewer files than its Max sessions need', function () {
  this.timeout(START_TIMEOUT_MS + 30_000);
  const dataDir = tempDataDir();
  let platform: Platform | undefined;

  after(async () => {
    await stop(platform);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('warns at start, naming the limit and what to raise (else devices past it would be cut off without a word)', async () => {
    platform = await start(
      {
        CONFLUX_DATA_DIR: dataDir,
        CONFLUX_TCP_PORT: String(await freePort()),
        CONFLUX_UDP_PORT: String(await freePort()),
        CONFLUX_MQTT_PORT: String(await freePort()),
      },
      { openFilesHard: 4096 },
    );
    assert.equal(openFiles(platform.child.pid!).hard, 4096);
    await waitForOutput(platform, /Max sessions is 10000, but this process may open only 4096 files: about 3072 devices .* at least 11024/);
  });
});
