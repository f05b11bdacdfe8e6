/**
 * Commands across instances (issue 14, item 1), in the core: two gateway instances — each its own
 * SessionRegistry, GatewayCluster and CommandRouter — on one database, talking over the real
 * LISTEN/NOTIFY (on PostgreSQL two SqlClients, each with its own LISTEN connection; on PGlite one
 * client, as two gateways in one process share it). Devices are in-memory sessions that answer
 * through their instance's router, as a TCP listener hands a COMMAND_RESULT to it. A command sent
 * on A reaches a device connected to B and the answer (or the refusal) comes back to A; a command
 * queued through A goes out when the device connects to B; B stopping mid-command leaves A with
 * its timeout; a device connecting to B closes its older session on A; a dead instance's devices
 * count as offline. The Node-RED version with a real TCP device and a killed runtime is
 * commands-instances.test.ts.
 */
import { strict as assert } from 'node:assert';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { GatewayCluster } from '../../nodes/core/devices/cluster';
import { CommandError, CommandRouter } from '../../nodes/core/devices/commands';
import type { DeviceIdentity } from '../../nodes/core/devices/directory';
import { SessionRegistry, type Session } from '../../nodes/core/devices/sessions';
import type { PlatformEvent } from '../../nodes/core/events/event';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { ENGINES, OPEN_TIMEOUT_MS, type Engine } from '../support/engines';
import { postgresUrl } from '../support/servers';
import { until } from '../support/wait';

type Msg = Record<string, any>;

interface Instance {
  name: string;
  sql: SqlClient;
  sessions: SessionRegistry;
  cluster: GatewayCluster;
  router: CommandRouter;
  events: PlatformEvent[];
  close(): Promise<void>;
}

/** What a device does with a command: answer it, refuse it, or say nothing. */
type Behaviour = (command: Msg) => { result: unknown } | { error: string } | 'silent';

interface Device extends Session {
  got: Msg[];
  closedWith?: string;
}

const LONG = 30_000; // an answer on a busy machine; the caller waits no longer than the answer takes

describe('commands across instances on one database (core)', function () {
  this.timeout(120_000);

  for (const engine of ENGINES) {
    describe(engine.name, () => {
      let main: SqlClient;
      let second: SqlClient | undefined;
      const open: Instance[] = [];
      const devices = new Map<string, DeviceIdentity>();

      before(async function () {
        this.timeout(OPEN_TIMEOUT_MS);
        main = await engine.open();
        await migrate(main);
        const store = createBusinessStore(main);
        for (const serial of ['SN-1', 'SN-2', 'SN-3', 'SN-4', 'SN-5', 'SN-6']) {
          const d = await store.create('default', 'devices', { serial });
          devices.set(serial, { tenant: 'default', serial, id: d.id as number });
        }
        second = await secondClient(engine, main);
      });
      afterEach(async () => {
        for (const i of open.splice(0)) await i.close();
      });
      after(async () => {
        if (second !== main) await second?.close();
        await main?.close();
      });

      function instance(name: string, sql: SqlClient, options: { heartbeatMs?: number; ttlMs?: number } = {}): Instance {
        const events: PlatformEvent[] = [];
        const sessions = new SessionRegistry(100);
        const cluster = new GatewayCluster({ sessions, sql: async () => sql, heartbeatMs: options.heartbeatMs ?? 500, ttlMs: options.ttlMs ?? 5_000 });
        const router = new CommandRouter({
          sessions,
          sql: async () => sql,
          lookup: async (serial) => devices.get(serial),
          peers: cluster,
          onEvent: (e) => events.push(e),
        });
        let closed = false;
        const i: Instance = {
          name,
          sql,
          sessions,
          cluster,
          router,
          events,
          // As the gateway node closes: the router, the cluster (its rows), then the sessions.
          close: async () => {
            if (closed) return;
            closed = true;
            router.close();
            await cluster.close();
            sessions.closeAll('the gateway is stopping');
          },
        };
        open.push(i);
        return i;
      }

      function connect(on: Instance, serial: string, behaviour: Behaviour): Device {
        const identity = devices.get(serial)!;
        const device: Device = {
          device: identity,
          transport: 'tcp',
          got: [],
          async send(_kind, payload) {
            const command = payload as Msg;
            device.got.push(command);
            const answer = behaviour(command);
            if (answer !== 'silent') setImmediate(() => on.router.result(identity, { id: command.id, ...answer }));
          },
          close(reason) {
            device.closedWith = reason;
            on.sessions.remove(device, reason);
          },
        };
        on.sessions.add(device);
        return device;
      }

      async function heldBy(serial: string): Promise<string | undefined> {
        const { rows } = await main.query<{ instance_id: string }>('SELECT instance_id FROM device_sessions WHERE serial = $1', [serial]);
        return rows[0]?.instance_id;
      }

      async function row(id: string): Promise<Msg> {
        return (await main.query('SELECT status, result, error, origin, attempts FROM device_commands WHERE correlation_id = $1', [id])).rows[0];
      }

      const options = (timeoutMs = LONG) => ({ timeoutMs, queueIfOffline: true, expiresInMs: 3_600_000 });

      it('a command sent on A reaches the device on B; the answer, and a refusal, come back to A', async () => {
        const a = instance('A', main);
        const b = instance('B', second!);
        const device = connect(b, 'SN-1', (c) => (c.name === 'dim' ? { error: 'busy updating' } : { result: { rebooted: true, delay: c.params.delay } }));
        await until("B's session is in the database", async () => (await heldBy('SN-1')) === b.cluster.instanceId);

        const ticket = await a.router.send('default', 'SN-1', { name: 'reboot', params: { delay: 5 } }, options());
        assert.equal(ticket.queued, false, 'the device is online: the caller waits for its answer');
        assert.deepEqual(await ticket.answer, { rebooted: true, delay: 5 });
        assert.deepEqual(
          device.got.map((c) => [c.id, c.name, c.params]),
          [[ticket.id, 'reboot', { delay: 5 }]],
          'the device got the command once, with the id the caller holds',
        );
        assert.deepEqual(await row(ticket.id), {
          status: 'answered',
          result: { rebooted: true, delay: 5 },
          error: null,
          origin: a.cluster.instanceId,
          attempts: 1,
        });

        const refused = await a.router.send('default', 'SN-1', { name: 'dim', params: 40 }, options());
        await assert.rejects(refused.answer, (err: CommandError) => {
          assert.equal(err.code, 'refused');
          assert.match(err.message, /device "SN-1" refused the command "dim": busy updating/);
          return true;
        });
        // The instance that delivered it announces the outcome, once.
        await until('B announced both answers', () => b.events.length === 2);
        assert.deepEqual(
          b.events.map((e) => [e.type, (e.data as Msg).ok]),
          [
            ['command.answered', true],
            ['command.answered', false],
          ],
        );
        assert.deepEqual(a.events, [], 'A announces nothing B announced');
      });

      it('a command queued through A goes out when the device connects to B, and A gets the answer', async () => {
        const a = instance('A', main);
        const b = instance('B', second!);
        const ticket = await a.router.send('default', 'SN-2', { name: 'config', params: { rate: 10 } }, options());
        assert.equal(ticket.queued, true);
        assert.equal((await row(ticket.id)).status, 'queued');
        connect(b, 'SN-2', (c) => ({ result: { applied: c.params.rate } }));
        assert.deepEqual(await ticket.answer, { applied: 10 });
        assert.deepEqual(await row(ticket.id), { status: 'answered', result: { applied: 10 }, error: null, origin: a.cluster.instanceId, attempts: 1 });
      });

      it('B stops while its device holds a command: A gets its timeout, nothing hangs, nothing is delivered later', async () => {
        const a = instance('A', main);
        const b = instance('B', second!);
        const device = connect(b, 'SN-3', () => 'silent');
        await until("B's session is in the database", async () => (await heldBy('SN-3')) === b.cluster.instanceId);
        const ticket = await a.router.send('default', 'SN-3', { name: 'slow' }, options(3_000));
        await until('the device got the command', () => device.got.length === 1);
        await b.close();
        assert.equal(await heldBy('SN-3'), undefined, 'a stopped instance leaves no session behind');
        const started = Date.now();
        await assert.rejects(ticket.answer, (err: CommandError) => err.code === 'timeout' && /within 3000 ms/.test(err.message));
        assert.ok(Date.now() - started < 10_000);

        // Routed to an instance that never takes it (it went away between the look and the send):
        // the command expires with the caller's timeout instead of waiting for the device.
        const c = instance('C', second!);
        connect(c, 'SN-3', () => ({ result: 'late' }));
        await until("C's session is in the database", async () => (await heldBy('SN-3')) === c.cluster.instanceId);
        await c.cluster.close(); // C hears nothing any more, its session stays in the registry
        await main.query(`INSERT INTO gateway_instances (id) VALUES ($1)`, [c.cluster.instanceId]);
        await main.query(`INSERT INTO device_sessions (tenant_id, serial, instance_id, session_id, transport) VALUES ('default', 'SN-3', $1, 'x', 'tcp')`, [
          c.cluster.instanceId,
        ]);
        const lost = await a.router.send('default', 'SN-3', { name: 'lost' }, options(500));
        assert.equal(lost.queued, false);
        await assert.rejects(lost.answer, (err: CommandError) => err.code === 'timeout');
        await until('its row expired', async () => (await row(lost.id)).status === 'expired');
        assert.deepEqual(
          a.events.map((e) => [e.type, (e.data as Msg).reason]),
          [
            ['command.timed_out', 'timeout'],
            ['command.timed_out', 'timeout'],
          ],
          'A announces timeouts no other instance took on',
        );
      });

      it('a device connecting to B closes its older session on A; commands then go to B', async () => {
        const a = instance('A', main);
        const b = instance('B', second!);
        const old = connect(a, 'SN-4', () => ({ result: 'from A' }));
        await until("A's session is in the database", async () => (await heldBy('SN-4')) === a.cluster.instanceId);
        connect(b, 'SN-4', () => ({ result: 'from B' }));
        await until('A closed its session', () => old.closedWith !== undefined);
        assert.equal(old.closedWith, 'replaced by a newer session of this device on another instance');
        assert.equal(a.sessions.get('default', 'SN-4'), undefined);
        assert.equal(await heldBy('SN-4'), b.cluster.instanceId);
        const ticket = await a.router.send('default', 'SN-4', { name: 'who' }, options());
        assert.equal(await ticket.answer, 'from B');
      });

      it("a dead instance's devices count as offline: commands for them are queued, its rows are cleared", async () => {
        const a = instance('A', main, { ttlMs: 2_000 });
        // B's heartbeat never comes again after its start: as if its process had been killed.
        const b = instance('B', second!, { heartbeatMs: 3_600_000 });
        connect(b, 'SN-5', () => ({ result: 'never' }));
        await until("B's session is in the database", async () => (await heldBy('SN-5')) === b.cluster.instanceId);
        await main.query(`UPDATE gateway_instances SET seen_at = now() - interval '1 hour' WHERE id = $1`, [b.cluster.instanceId]);
        const ticket = await a.router.send('default', 'SN-5', { name: 'later' }, options());
        assert.equal(ticket.queued, true, 'not routed to a dead instance');
        a.router.abandon(ticket.id);
        await until("A's heartbeat cleared B's rows", async () => (await heldBy('SN-5')) === undefined);
        const { rows } = await main.query('SELECT id FROM gateway_instances WHERE id = $1', [b.cluster.instanceId]);
        assert.deepEqual(rows, []);
      });

      if (engine.name === 'PGlite') {
        it('the embedded database: sessions left by an earlier run of the process are dropped at start, not waited out', async () => {
          // A crash a moment ago: its heartbeat is fresh, but it started before this process did.
          await main.query(`INSERT INTO gateway_instances (id, started_at, seen_at) VALUES ('crashed', now() - interval '1 day', now())`);
          await main.query(
            `INSERT INTO device_sessions (tenant_id, serial, instance_id, session_id, transport) VALUES ('default', 'SN-6', 'crashed', 'x', 'tcp')`,
          );
          const a = instance('A', main);
          const ticket = await a.router.send('default', 'SN-6', { name: 'later' }, options());
          assert.equal(ticket.queued, true, 'queued for the device, not sent to the dead instance');
          a.router.abandon(ticket.id);
          assert.equal(await heldBy('SN-6'), undefined);
        });
      }

      if (engine.name === 'PostgreSQL') {
        it("A's LISTEN connection lost while B answers: A reconnects, looks again, and gets the answer", async () => {
          // A on a client of its own, so that its LISTEN connection is the one named conflux-a-listen.
          const own = await openSql({ connectionString: await urlOf(main), poolSize: 2, applicationName: 'conflux-a' });
          try {
            const a = instance('A', own);
            const b = instance('B', second!);
            const device = connect(b, 'SN-6', () => 'silent');
            await until("B's session is in the database", async () => (await heldBy('SN-6')) === b.cluster.instanceId);
            const ticket = await a.router.send('default', 'SN-6', { name: 'measure' }, options());
            await until('the device got the command', () => device.got.length === 1);
            const { rowCount } = await main.query(
              `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'conflux-a-listen'`,
            );
            assert.equal(rowCount, 1);
            // B's 'done' goes to a channel no one listens on now: A must find the answer by itself.
            b.router.result(devices.get('SN-6')!, { id: ticket.id, result: 42 });
            assert.equal(await ticket.answer, 42);
            assert.equal((await row(ticket.id)).status, 'answered');
            await a.close();
          } finally {
            await own.close();
          }
        });
      }
    });
  }
});

/** On PostgreSQL a second client with its own pool and LISTEN connection; PGlite is one process's database. */
async function secondClient(engine: Engine, main: SqlClient): Promise<SqlClient> {
  if (engine.name === 'PGlite') return main;
  return openSql({ connectionString: await urlOf(main), poolSize: 5 });
}

/** The URL of the database `sql` is connected to, on the test server. */
async function urlOf(sql: SqlClient): Promise<string> {
  const { rows } = await sql.query<{ db: string }>(`SELECT current_database() AS db`);
  const url = new URL(postgresUrl());
  url.pathname = `/${rows[0].db}`;
  return url.toString();
}
