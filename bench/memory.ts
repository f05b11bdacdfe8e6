/**
 * `npm run bench -- memory`: resident memory (VmRSS of the Node process `npm start` runs,
 * `node dist/settings.js`; npm's own process not counted) of the standalone platform with the
 * shipped flow, idle:
 *
 *   embedded   no server configured: PGlite under the data directory, the in-process short-term
 *              store, the embedded MQTT broker; measured on the first start (PGlite's initdb runs
 *              in the process) and on a restart on the same data directory (the usual case);
 *   pg only    CONFLUX_POSTGRES_URL set (the test PostgreSQL), the rest embedded: the difference
 *              to `embedded` (restart) is what the embedded PGlite costs;
 *   external   CONFLUX_POSTGRES_URL, CONFLUX_REDIS_URL and CONFLUX_MQTT_URL (an aedes broker in a
 *              process of its own) set;
 *
 * and, on `external`, the RSS added by SESSIONS idle TCP device sessions (conflux-tcp-in, each
 * logged in with SCRAM by the reference client, tools/device-client/tcp.ts), per 1,000.
 * Each round starts each configuration on a fresh data directory, waits until it answers and
 * has logged its banner, lets it settle SETTLE_MS, and reads VmRSS; ROUNDS rounds, the
 * configurations alternating, median kept, every run listed.
 */
import * as fs from 'node:fs';

const ROUNDS = 5;
const SESSIONS = Number(process.env.BENCH_MEMORY_SESSIONS ?? 1000);
const SETTLE_MS = 5_000;
const TENANT = 'default';
const serial = (i: number) => `mem-${String(i).padStart(5, '0')}`;
const keyOf = (i: number) => `memory bench key ${i}`;

/** VmRSS of a process, MiB. */
function rssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  return kb / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function run(): Promise<boolean> {
  const platform = await import('../test/support/platform');
  const { startServers, freshDatabase } = await import('../test/support/servers');
  const { startBroker } = await import('./broker');
  const { machine, median } = await import('./harness');
  const { openSql } = await import('../nodes/core/db/sql');
  const { migrate } = await import('../nodes/core/db/migrate');
  const { createBusinessStore } = await import('../nodes/core/stores/business');
  const { connect } = await import('../tools/device-client/tcp');

  const servers = startServers();
  const pgUrl = await freshDatabase();
  const broker = await startBroker();
  // Devices for the sessions, provisioned before the first start as an operator would.
  const db = await openSql({ connectionString: pgUrl, poolSize: 4 });
  await migrate(db);
  const store = createBusinessStore(db);
  process.stderr.write(`memory: provisioning ${SESSIONS} devices\n`);
  for (let i = 0; i < SESSIONS; i++) {
    const dev = await store.create(TENANT, 'devices', { serial: serial(i) });
    await store.create(TENANT, 'device_keys', { device_id: dev.id, key: keyOf(i) });
  }
  await db.close();

  type Config = 'embedded' | 'pg only' | 'external';
  const env: Record<Config, Record<string, string>> = {
    embedded: {},
    'pg only': { CONFLUX_POSTGRES_URL: pgUrl },
    external: { CONFLUX_POSTGRES_URL: pgUrl, CONFLUX_REDIS_URL: servers.redisUrl, CONFLUX_MQTT_URL: broker.url },
  };
  const idle: Record<Config, number[]> = { embedded: [], 'pg only': [], external: [] };
  const withSessions: number[] = [];
  const firstStart: number[] = [];
  const perThousand: number[] = [];

  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const config of Object.keys(env) as Config[]) {
        const dataDir = platform.tempDataDir();
        const tcpPort = await platform.freePort();
        const vars = {
          CONFLUX_DATA_DIR: dataDir,
          CONFLUX_TCP_PORT: String(tcpPort),
          CONFLUX_UDP_PORT: String(await platform.freePort()),
          CONFLUX_MQTT_PORT: String(await platform.freePort()),
          ...env[config],
        };
        let p = await platform.start(vars);
        try {
          if (config === 'embedded') {
            await sleep(SETTLE_MS);
            firstStart.push(rssMiB(p.child.pid!));
            await platform.stop(p);
            p = await platform.start(vars);
          }
          await sleep(SETTLE_MS);
          const rss = rssMiB(p.child.pid!);
          idle[config].push(rss);
          let line = `  round ${r + 1}: ${config}: ${config === 'embedded' ? `${firstStart[r].toFixed(1)} MiB idle after the first start, ${rss.toFixed(1)} MiB after a restart` : `${rss.toFixed(1)} MiB idle`}`;
          if (config === 'external') {
            const devices = [];
            for (let i = 0; i < SESSIONS; i += 50) {
              devices.push(
                ...(await Promise.all(
                  Array.from({ length: Math.min(50, SESSIONS - i) }, (_, k) =>
                    connect({ port: tcpPort, serial: serial(i + k), key: keyOf(i + k), timeoutMs: 60_000 }),
                  ),
                )),
              );
            }
            await sleep(SETTLE_MS);
            const busy = rssMiB(p.child.pid!);
            withSessions.push(busy);
            perThousand.push(((busy - rss) * 1000) / SESSIONS);
            line += `, ${busy.toFixed(1)} MiB with ${SESSIONS} sessions (+${(((busy - rss) * 1000) / SESSIONS).toFixed(1)} MiB per 1,000)`;
            await Promise.all(devices.map((d) => d.close()));
          }
          process.stderr.write(`${line}\n`);
        } finally {
          await platform.stop(p);
          fs.rmSync(dataDir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    await broker.stop();
  }

  const f = (x: number) => x.toFixed(1);
  const list = (xs: number[]) => xs.map(f).join(', ');
  console.log(
    `\n### Memory: resident set of the platform (\`node dist/settings.js\`, the shipped flow), idle — ${new Date().toISOString().slice(0, 10)}\n\n${machine()}\n`,
  );
  console.log('| configuration | RSS MiB (median) | every run |\n|---|---:|---|');
  console.log(
    `| embedded defaults (PGlite, in-process short-term, embedded broker), first start on an empty data directory | ${f(median(firstStart))} | ${list(firstStart)} |`,
  );
  console.log(`| embedded defaults, restarted on the same data directory | ${f(median(idle.embedded))} | ${list(idle.embedded)} |`);
  console.log(`| PostgreSQL external, the rest embedded | ${f(median(idle['pg only']))} | ${list(idle['pg only'])} |`);
  console.log(`| external PostgreSQL, Redis and MQTT broker | ${f(median(idle.external))} | ${list(idle.external)} |`);
  console.log(`| external, with ${SESSIONS.toLocaleString('en-US')} idle TCP device sessions | ${f(median(withSessions))} | ${list(withSessions)} |`);
  const pglite = idle.embedded.map((x, i) => x - idle['pg only'][i]);
  const pgliteFirst = firstStart.map((x, i) => x - idle['pg only'][i]);
  console.log(
    `\nWhat the embedded PGlite costs (embedded − PostgreSQL external, per round): after a restart median ${f(median(pglite))} MiB (${list(pglite)}); after the first start median ${f(median(pgliteFirst))} MiB (${list(pgliteFirst)}).`,
  );
  console.log(`Per 1,000 idle TCP device sessions (SCRAM login done, keepalive only): median ${f(median(perThousand))} MiB (${list(perThousand)}).`);
  console.log(
    `\n${ROUNDS} rounds, the configurations alternating, each on a fresh data directory (embedded: started, stopped and started again on it); VmRSS read ${SETTLE_MS / 1000} s after the platform answered (and again ${SETTLE_MS / 1000} s after the last session logged in).`,
  );
  return true;
}
