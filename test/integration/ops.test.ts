/**
 * The operator dashboard's data (nodes/core/ops) on both engines: dead letters retried back into
 * their box and delivered by the drainer, dropped, tenant-scoped and idempotent; devices online
 * and offline with last-seen times; latest values; one sensor's readings and rollups as chart
 * points; mailbox depths per queue and connector.
 */
import { strict as assert } from 'node:assert';
import type { SqlClient } from '../../nodes/core/db/sql';
import { SessionRegistry, type Session } from '../../nodes/core/devices/sessions';
import { deviceRefused } from '../../nodes/core/metrics/metrics';
import { Drainer } from '../../nodes/core/mailbox/drainer';
import { Mailbox, type ClaimedMessage } from '../../nodes/core/mailbox/mailbox';
import { Ops, OpsInputError } from '../../nodes/core/ops/ops';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { createSqlLongTerm } from '../../nodes/core/stores/long-term-sql';
import { createMemoryShortTerm } from '../../nodes/core/stores/short-term-memory';
import { createSqlTimeSeries } from '../../nodes/core/stores/time-series-sql';
import type { Reading } from '../../nodes/core/stores/types';
import { ENGINES, withMigratedDatabase } from '../support/engines';
import { until } from '../support/wait';

const RETRY = { maxAttempts: 1, baseDelayMs: 10, maxDelayMs: 10 };

function session(tenant: string, serial: string, transport: Session['transport']): Session {
  return { device: { tenant, serial, id: 0 }, transport, send: () => Promise.resolve(), close: () => undefined };
}

/** One message into the outbox, claimed and failed for good: a dead letter. Returns its id. */
async function deadLetter(db: SqlClient, tenant: string, queue: string, messageId: string): Promise<string> {
  const box = new Mailbox(db, 'outbox');
  await box.enqueue(tenant, queue, [{ messageId, payload: { hello: messageId }, headers: { h: 1 } }]);
  const [claimed] = await box.claim(queue, { limit: 1, leaseMs: 60_000, worker: 'w1' });
  assert.equal((await box.nack(claimed.id, 'w1', new Error('HTTP 500 from the endpoint'), RETRY)).outcome, 'dead');
  const { rows } = await db.query<{ id: string }>('SELECT id::text AS id FROM dead_letters WHERE message_id = $1 AND tenant_id = $2', [messageId, tenant]);
  return rows[0].id;
}

for (const engine of ENGINES) {
  describe(`operator dashboard data (nodes/core/ops) on ${engine.name}`, function () {
    this.timeout(60_000);
    let db: SqlClient;
    let ops: Ops;
    let other: Ops;
    let sessions: SessionRegistry;
    let now = Date.parse('2026-12-03T12:00:00Z');
    withMigratedDatabase(engine, (opened) => {
      db = opened;
      sessions = new SessionRegistry(10);
      const stores = { db, timeSeries: createSqlTimeSeries(db, { rollups: true }), longTerm: createSqlLongTerm(db), sessions };
      ops = new Ops({ tenant: 'acme', ...stores }, () => now);
      other = new Ops({ tenant: 'globex', ...stores }, () => now);
    });

    describe('dead letters', () => {
      it('lists a dead letter with its queue, connector and last error', async () => {
        const id = await deadLetter(db, 'acme', 'webhooks', 'list-1');
        const answer = await ops.answer('dead-letters', undefined);
        const row = (answer.payload as { id: string }[]).find((r) => r.id === id) as Record<string, unknown>;
        assert.deepEqual(
          { box: row.box, queue: row.queue, connector: row.connector, messageId: row.messageId, attempts: row.attempts, lastError: row.lastError },
          { box: 'outbox', queue: 'webhooks', connector: 'webhooks', messageId: 'list-1', attempts: 1, lastError: 'HTTP 500 from the endpoint' },
        );
        assert.deepEqual((await other.answer('dead-letters', undefined)).payload, [], 'another tenant sees none of them');
      });

      it('retry puts it back into its box and queue, and the drainer delivers it', async () => {
        const queue = 'amqp:retry-test';
        const id = await deadLetter(db, 'acme', queue, 'retry-1');
        assert.equal(((await other.answer('retry', { id })).outcome as { outcome: string }).outcome, 'absent', "another tenant's retry changes nothing");
        const answer = await ops.answer('retry', { id });
        assert.deepEqual(answer.outcome, { action: 'retry', id, outcome: 'retried' });
        assert.equal(answer.topic, 'dead-letters');
        assert.ok(!(answer.payload as { id: string }[]).some((r) => r.id === id), 'no longer a dead letter');
        const { rows } = await db.query<{ attempts: number; payload: unknown; headers: unknown }>(
          'SELECT attempts, payload, headers FROM outbox WHERE queue = $1',
          [queue],
        );
        assert.deepEqual(rows, [{ attempts: 0, payload: { hello: 'retry-1' }, headers: { h: 1 } }]);
        assert.deepEqual(((await ops.answer('retry', id)).outcome as { outcome: string }).outcome, 'absent', 'a second retry changes nothing');

        const delivered: ClaimedMessage[] = [];
        const drainer = new Drainer(new Mailbox(db, 'outbox'), {
          queue,
          worker: 'drainer-1',
          capacity: 10,
          leaseMs: 30_000,
          pollMs: 20,
          retry: RETRY,
          deliver: (m) => {
            delivered.push(m);
            void drainer.ack(m.id);
          },
        });
        drainer.start();
        try {
          await until('the drainer delivers the retried message', () => delivered.length === 1);
          assert.equal(delivered[0].messageId, 'retry-1');
          assert.deepEqual(delivered[0].payload, { hello: 'retry-1' });
          await until('the delivered message is acknowledged (gone from the outbox)', async () => {
            const { rows: left } = await db.query('SELECT 1 FROM outbox WHERE queue = $1', [queue]);
            return left.length === 0;
          });
        } finally {
          await drainer.stop();
        }
      });

      it('drop deletes it; a second drop, or another tenant, changes nothing', async () => {
        const id = await deadLetter(db, 'acme', 'ftp:drop-test', 'drop-1');
        assert.equal(((await other.answer('drop', { id })).outcome as { outcome: string }).outcome, 'absent');
        assert.equal(((await ops.answer('drop', { id })).outcome as { outcome: string }).outcome, 'dropped');
        assert.equal(((await ops.answer('drop', { id })).outcome as { outcome: string }).outcome, 'absent');
        const { rows } = await db.query('SELECT 1 FROM dead_letters WHERE id = $1 UNION ALL SELECT 1 FROM outbox WHERE queue = $2', [id, 'ftp:drop-test']);
        assert.equal(rows.length, 0);
      });

      it('refuses an id that is not a positive integer', async () => {
        await assert.rejects(ops.answer('retry', { id: '1; DROP TABLE x' }), OpsInputError);
        await assert.rejects(ops.answer('drop', {}), OpsInputError);
      });
    });

    describe('devices', () => {
      before(async () => {
        const store = createBusinessStore(db);
        await db.query(`INSERT INTO tenants (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING`);
        for (const serial of ['dev-a', 'dev-b', 'dev-c']) await store.create('acme', 'devices', { serial, name: `device ${serial}` });
        await createSqlTimeSeries(db, { rollups: true }).append([{ tenant: 'acme', record: { n: 'dev-b/temperature', t: 1_700_000_000, v: 20, u: 'Cel' } }]);
      });

      it('shows online the devices with a session, offline the others, with last-seen times', async () => {
        sessions.add(session('acme', 'dev-a', 'mqtt'));
        deviceRefused('tcp', 'bad-key');
        const answer = await ops.answer('devices', undefined);
        const rows = answer.payload as { serial: string; state: string; transport: string; lastSeen: string }[];
        const bySerial = new Map(rows.map((r) => [r.serial, r]));
        assert.equal(bySerial.get('dev-a')?.state, 'online');
        assert.equal(bySerial.get('dev-a')?.transport, 'mqtt');
        assert.ok(Date.now() - Date.parse(bySerial.get('dev-a')!.lastSeen) < 60_000, 'an online device was seen when its session started');
        assert.equal(bySerial.get('dev-b')?.state, 'offline');
        assert.equal(bySerial.get('dev-b')?.lastSeen, '2023-11-14T22:13:20.000Z', 'last seen at its newest reading');
        assert.equal(bySerial.get('dev-c')?.lastSeen, '', 'never seen');
        assert.deepEqual(
          answer.summary && { online: (answer.summary as { online: number }).online, offline: (answer.summary as { offline: number }).offline },
          {
            online: 1,
            offline: 2,
          },
        );
        const refusal = (answer.refusals as { transport: string; reason: string; count: number }[]).find((r) => r.reason === 'bad-key');
        assert.ok(refusal && refusal.transport === 'tcp' && refusal.count >= 1, JSON.stringify(answer.refusals));
        assert.deepEqual((await other.answer('devices', undefined)).payload, [], "another tenant's devices are not listed");
        sessions.closeAll('test over');
        const after = (await ops.answer('devices', undefined)).payload as { serial: string; state: string }[];
        assert.equal(after.find((r) => r.serial === 'dev-a')?.state, 'offline');
      });
    });

    describe('readings', () => {
      const t0 = Date.parse('2026-12-03T09:00:00Z') / 1000;
      before(async () => {
        const readings: Reading[] = [];
        for (let i = 0; i < 6; i++) readings.push({ tenant: 'acme', record: { n: 'pump-1/flow', t: t0 + i * 1800, v: i, u: 'l/s' } });
        readings.push({ tenant: 'globex', record: { n: 'pump-1/flow', t: t0, v: 99 } });
        await createSqlTimeSeries(db, { rollups: true }).append(readings);
      });

      it('series: the readings of one sensor in the range as chart points', async () => {
        const answer = await ops.answer('series', { sensor: 'pump-1/flow', from: t0 + 1800, to: t0 + 4 * 1800 });
        assert.deepEqual(
          answer.payload,
          [1, 2, 3].map((i) => ({ x: (t0 + i * 1800) * 1000, y: i, series: 'pump-1/flow' })),
        );
        assert.equal(answer.action, 'replace');
      });

      it('series with rollup hour: avg, min and max per hour', async () => {
        const answer = await ops.answer('series', { sensor: 'pump-1/flow', from: new Date((t0 + 1) * 1000).toISOString(), to: t0 + 3 * 3600, rollup: 'hour' });
        const points = answer.payload as { x: number; y: number; series: string }[];
        assert.deepEqual(
          points.filter((p) => p.series === 'avg'),
          [0.5, 2.5, 4.5].map((y, h) => ({ x: (t0 + h * 3600) * 1000, y, series: 'avg' })),
        );
        assert.deepEqual(
          points.filter((p) => p.series === 'max').map((p) => p.y),
          [1, 3, 5],
        );
      });

      it('series defaults to the last 24 hours and refuses a request without a sensor', async () => {
        now = (t0 + 3 * 3600) * 1000;
        assert.equal(((await ops.answer('series', { sensor: 'pump-1/flow' })).payload as unknown[]).length, 6);
        await assert.rejects(ops.answer('series', { from: 0 }), OpsInputError);
        await assert.rejects(ops.answer('series', { sensor: 'x', rollup: 'week' }), OpsInputError);
      });

      it('sensors: the names with numeric readings, also as dropdown options', async () => {
        const answer = await ops.answer('sensors', undefined);
        assert.ok((answer.payload as string[]).includes('pump-1/flow'));
        assert.ok((answer.options as { value: string }[]).some((o) => o.value === 'pump-1/flow'));
      });

      it("latest: each name's newest value, from the rollups or from the short-term tier", async () => {
        const fromRollups = (await ops.answer('latest', undefined)).payload as { name: string; value: unknown; time: string }[];
        assert.deepEqual(
          fromRollups.find((r) => r.name === 'pump-1/flow'),
          { name: 'pump-1/flow', value: 5, unit: '', time: new Date((t0 + 5 * 1800) * 1000).toISOString() },
        );
        const shortTerm = createMemoryShortTerm({ ttlSeconds: 60, windowSize: 10, windowSeconds: 60 });
        await shortTerm.write([{ tenant: 'acme', record: { n: 'pump-1/state', t: t0, vs: 'running' } }]);
        const withCache = new Ops({ tenant: 'acme', db, shortTerm, timeSeries: createSqlTimeSeries(db), longTerm: createSqlLongTerm(db) });
        assert.deepEqual((await withCache.answer('latest', undefined)).payload, [
          { name: 'pump-1/state', value: 'running', unit: '', time: new Date(t0 * 1000).toISOString() },
        ]);
        await shortTerm.close();
      });
    });

    describe('mailboxes', () => {
      it('depth and oldest age per queue, and per connector with deliveries', async () => {
        const outbox = new Mailbox(db, 'outbox');
        await outbox.enqueue('acme', 'xmpp:peer@example.org', [
          { messageId: 'x1', payload: 1 },
          { messageId: 'x2', payload: 2 },
        ]);
        await new Mailbox(db, 'inbox').enqueue('acme', 'webhook:/in', [{ messageId: 'i1', payload: 1 }]);
        await outbox.enqueue('globex', 'xmpp:peer@example.org', [{ messageId: 'g1', payload: 1 }]);
        const rows = (await ops.answer('mailboxes', undefined)).payload as { box: string; queue: string; connector: string; depth: number }[];
        assert.deepEqual(
          rows.find((r) => r.queue === 'xmpp:peer@example.org') && { ...rows.find((r) => r.queue === 'xmpp:peer@example.org'), oldestSeconds: 0 },
          { box: 'outbox', queue: 'xmpp:peer@example.org', connector: 'xmpp', depth: 2, oldestSeconds: 0, deadLetters: 0 },
        );
        assert.equal(rows.find((r) => r.queue === 'webhook:/in')?.connector, 'webhooks');
        const connectors = (await ops.answer('deliveries', undefined)).payload as { connector: string; waiting: number }[];
        assert.deepEqual(
          connectors.slice(0, 4).map((c) => c.connector),
          ['webhooks', 'amqp', 'ftp', 'xmpp'],
        );
        assert.equal(connectors.find((c) => c.connector === 'xmpp')?.waiting, 2, "only this tenant's messages");
      });

      it('refuses an unknown topic', async () => {
        await assert.rejects(ops.answer('everything', undefined), /msg.topic must be one of/);
      });
    });
  });
}
