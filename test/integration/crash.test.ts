/**
 * Acceptance (issue 8, item 8): what the platform acknowledged survives a SIGKILL, once.
 *
 * The platform runs as `npm start` runs it (dist/settings.js, embedded PGlite and MQTT broker,
 * a throwaway data directory). Devices send over HTTP, TCP and MQTT as fast as their window of
 * unacknowledged readings allows (tools/device-load); the platform is killed with SIGKILL after a
 * given number of acknowledgements (or time under load), then started again on the same data directory, where the
 * devices send again what was not acknowledged, as real devices do. Three rounds kill it at
 * different moments. Then, with the platform stopped, the readings table must hold every
 * acknowledged reading exactly once, and the hour and day rollups must agree with the readings.
 * A reading is found by its name, value and device time; the devices are provisioned in the
 * business store before the first start. First, PGlite alone: a COMMIT that returned survives.
 * The same three kills run again with CONFLUX_POSTGRES_URL set: the real server, where large
 * batches take the COPY path.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { DeviceLoad, LOAD_TRANSPORTS, type LoadDevice, type LoadTarget } from '../../tools/device-load/load';
import { describePhase, examples, phaseKept, reconcile } from '../../tools/device-load/reconcile';
import { freePort, start, START_TIMEOUT_MS, stop, tempDataDir, type Platform } from '../support/platform';
import { freshDatabase } from '../support/servers';

const DEVICES_PER_TRANSPORT = 3;
/** Readings a device leaves unacknowledged at most. */
const WINDOW = 8;
/**
 * When each round kills the platform: after this many acknowledgements of the round's readings,
 * or this long after its first one, whichever comes first (the time bounds the spec's length
 * whatever the platform's throughput).
 */
const KILLS = [
  { acks: 300, orAfterMs: 1_000 },
  { acks: 2_500, orAfterMs: 3_000 },
  { acks: 6_000, orAfterMs: 6_000 },
];
const SETTLE_TIMEOUT_MS = 60_000;
const COMMITS_BEFORE_KILL = 100;

interface Kill {
  /** ms since the epoch */
  at: number;
  /** Acknowledgements of the round's readings by then. */
  acks: number;
}

interface RoundLog {
  /** When the killed platform had exited: acknowledgements after it came from the restarted one. */
  exitedAt: number;
  killAfterS: number;
  acksAtKill: number;
  restartS: number;
}

describe('crash: SIGKILL while devices send over HTTP, TCP and MQTT, then a restart', function () {
  this.timeout(2 * KILLS.length * (START_TIMEOUT_MS + SETTLE_TIMEOUT_MS) + 120_000);
  const dataDir = tempDataDir();
  let platform: Platform | undefined;

  after(async () => {
    if (platform) platform.child.kill('SIGKILL');
    await platform?.exited;
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('PGlite itself keeps every committed transaction across a SIGKILL', async () => {
    // The platform's promise rests on this: a COMMIT that returned is on disk, even if the process
    // dies the next instant. A child commits numbered transactions and says so after each; it is
    // killed mid-stream, and every transaction it reported must be there, whole.
    const dir = path.join(dataDir, 'pglite-commits');
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'support', 'pglite-commits.js'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let reported = 0;
    const lines = readline.createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      lines.on('line', (line) => {
        const m = /^committed (\d+)$/.exec(line);
        if (!m) return;
        reported = Number(m[1]);
        if (reported === COMMITS_BEFORE_KILL) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`the committing child exited with ${code} after ${reported} commits`)));
    });
    await exited;
    const db = await openSql({ dataDir: dir });
    try {
      const { rows } = await db.query<{ tx: number; n: number }>('SELECT tx, count(*)::int AS n FROM commits GROUP BY tx ORDER BY tx');
      const whole = rows.filter((r) => r.n === 10).map((r) => r.tx);
      assert.ok(
        rows.every((r) => r.n === 10),
        `torn transactions: ${JSON.stringify(rows.filter((r) => r.n !== 10))}`,
      );
      const missing = Array.from({ length: reported }, (_, i) => i + 1).filter((tx) => !whole.includes(tx));
      assert.deepEqual(missing, [], `${missing.length} of ${reported} reported commits missing after the SIGKILL`);
    } finally {
      await db.close();
    }
  });

  for (const engine of ['PGlite', 'PostgreSQL'] as const) {
    it(`stores every acknowledged reading exactly once, and the rollups agree, over three kills (${engine})`, async () => {
      const url = engine === 'PostgreSQL' ? await freshDatabase() : undefined;
      const open = (): Promise<SqlClient> => (url ? openSql({ connectionString: url, poolSize: 2 }) : openSql({ dataDir: path.join(dataDir, 'pglite') }));
      await killThreeTimes(engine.toLowerCase(), open, url ? { CONFLUX_POSTGRES_URL: url } : {});
    });
  }

  async function killThreeTimes(name: string, open: () => Promise<SqlClient>, env: Record<string, string>): Promise<void> {
    const devices: LoadDevice[] = LOAD_TRANSPORTS.flatMap((transport) =>
      Array.from({ length: DEVICES_PER_TRANSPORT }, (_, i) => ({
        transport,
        serial: `crash-${name}-${transport}-${i + 1}`,
        key: `key of crash-${transport}-${i + 1}`,
      })),
    );
    // Devices are provisioned before the first start, as an operator would through the business store.
    const setup = await open();
    try {
      await migrate(setup);
      const store = createBusinessStore(setup);
      for (const d of devices) {
        const row = await store.create('default', 'devices', { serial: d.serial });
        await store.create('default', 'device_keys', { device_id: row.id, key: d.key });
      }
    } finally {
      await setup.close();
    }

    const vars = {
      ...env,
      CONFLUX_DATA_DIR: dataDir,
      CONFLUX_PORT: String(await freePort()),
      CONFLUX_TCP_PORT: String(await freePort()),
      CONFLUX_UDP_PORT: String(await freePort()),
      CONFLUX_MQTT_PORT: String(await freePort()),
    };
    const target: LoadTarget = {
      httpBase: `http://127.0.0.1:${vars.CONFLUX_PORT}/devices`,
      tcpPort: Number(vars.CONFLUX_TCP_PORT),
      mqttPort: Number(vars.CONFLUX_MQTT_PORT),
    };

    let round: { acks: number; orAfterMs: number; timer?: NodeJS.Timeout; killed(kill: Kill): void } | undefined;
    const kill = () => {
      if (!round) return;
      const { killed, timer } = round;
      round = undefined;
      clearTimeout(timer);
      platform!.child.kill('SIGKILL');
      load.stopGenerating();
      killed({ at: Date.now(), acks: load.acked.total });
    };
    const load = new DeviceLoad(devices, {
      window: WINDOW,
      onAck: (_reading, counts) => {
        if (!round) return;
        if (counts.total === 1) round.timer = setTimeout(kill, round.orAfterMs);
        if (counts.total >= round.acks) kill();
      },
    });

    const rounds: RoundLog[] = [];
    platform = await start(vars);
    try {
      for (const [i, when] of KILLS.entries()) {
        const begun = Date.now();
        const killed = new Promise<Kill>((resolve) => (round = { ...when, killed: resolve }));
        load.start(target, `round-${i + 1}`);
        let stuck: NodeJS.Timeout | undefined;
        const tooSlow = new Promise<never>((_, reject) => {
          stuck = setTimeout(
            () =>
              reject(
                new Error(`round ${i + 1}: ${load.acked.total} acknowledgements in ${SETTLE_TIMEOUT_MS} ms; last errors: ${load.errors.join('; ') || 'none'}`),
              ),
            SETTLE_TIMEOUT_MS,
          );
        });
        const { at, acks: acksAtKill } = await Promise.race([killed, tooSlow]).finally(() => clearTimeout(stuck));
        const killAfterS = (at - begun) / 1000;
        await platform.exited;
        const exitedAt = Date.now();
        platform = await start(vars);
        await load.settled(SETTLE_TIMEOUT_MS);
        rounds.push({ exitedAt, killAfterS, acksAtKill, restartS: (Date.now() - exitedAt) / 1000 });
      }
    } finally {
      await load.stop();
    }
    assert.equal(await stop(platform), 0, `the platform did not stop cleanly:\n${platform.output().slice(-3000)}`);
    platform = undefined;

    const db = await open();
    let reports;
    try {
      reports = await reconcile(db, load.readings);
    } finally {
      await db.close();
    }
    const failures: string[] = [];
    for (const [i, report] of reports.entries()) {
      const r = rounds[i];
      const resent = load.readings.filter((x) => x.phase === report.phase && x.attempts > 1).length;
      const line = `crash round ${i + 1} on ${name} (kill after ${r.killAfterS.toFixed(1)} s at ${r.acksAtKill} acks, restart and resend ${r.restartS.toFixed(1)} s, ${resent} resent): ${describePhase(report)}`;
      console.log(`      ${line}`);
      if (!phaseKept(report)) {
        // Acknowledged by the restarted platform: lost by a later kill or the final SIGTERM, not by this kill.
        const late = LOAD_TRANSPORTS.reduce((n, t) => n + report.transports[t].lostReadings.filter((x) => x.ackedAt! > r.exitedAt).length, 0);
        const when = late ? ` (${late} of the lost acknowledged after the restart)` : '';
        failures.push(`${line}${when}\n        e.g. ${examples(report).join('; ')}`);
      }
    }
    if (failures.length > 0) assert.fail(`acknowledged readings not kept exactly once:\n${failures.join('\n')}`);
  }
});
