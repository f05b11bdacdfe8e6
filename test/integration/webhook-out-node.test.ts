/**
 * conflux-webhook-out as an integrator wires it, on the real PostgreSQL: an event and a canonical
 * reading go out signed, with basic auth and the subscription's extra headers; the message leaves
 * the node only once the deliveries are in the outbox; a business node lists the delivery log.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { createEvent, type PlatformEvent } from '../../nodes/core/events/event';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { onEvent } from '../../nodes/shared/event-hub';
import { helper } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import { answer, Receiver } from '../support/webhook-receiver';
import postgresNode = require('../../nodes/storage/postgres');
import businessNode = require('../../nodes/storage/business');
import webhooksNode = require('../../nodes/webhooks/webhooks');
import webhookOutNode = require('../../nodes/webhooks/webhook-out');

type Msg = Record<string, any>;

describe('conflux-webhook-out node', function () {
  this.timeout(60_000);
  let url: string;
  let db: SqlClient;
  let rx: Receiver;

  before(async () => {
    url = await freshDatabase();
    db = await openSql({ connectionString: url, poolSize: 2 });
    await migrate(db);
    rx = await new Receiver().start();
  });
  after(async () => {
    await helper.unload();
    await rx.stop();
    await db.close();
  });

  const flow = (webhooks: Record<string, unknown> = {}) => [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url },
    { id: 'hooks', type: 'conflux-webhooks', database: 'db', allowPrivate: true, schedule: '50ms, 100ms', ...webhooks },
    { id: 'out', type: 'conflux-webhook-out', z: 'tab', webhooks: 'hooks', wires: [['sent']] },
    { id: 'biz', type: 'conflux-business', z: 'tab', database: 'db', wires: [['listed']] },
    { id: 'sent', type: 'helper', z: 'tab' },
    { id: 'listed', type: 'helper', z: 'tab' },
  ];
  const next = (id: string) => new Promise<Msg>((resolve) => helper.getNode(id).once('input', resolve));

  it('delivers an event and a reading, signed, with basic auth and extra headers, stored before the message leaves; the log is listable', async () => {
    const key = `whsec_${randomBytes(32).toString('base64')}`;
    const store = createBusinessStore(db);
    const sub = await store.create('default', 'webhook_subscriptions', {
      url: rx.url,
      events: ['vehicle.*', 'reading.received'],
      username: 'partner',
      password: 's3cret',
      secret: key,
      headers: { 'x-partner': 'p1' },
    });
    assert.equal(sub.has_secret, true);
    assert.equal(sub.has_password, true);
    assert.ok(!('secret' in sub) && !('password' in sub), 'the secret and the password are never returned');
    const other = await store.create('default', 'webhook_subscriptions', { url: rx.url, events: ['device.*'] });

    await helper.load([postgresNode, businessNode, webhooksNode, webhookOutNode], flow());
    const event = createEvent({ type: 'vehicle.processed', tenant: 'default', subject: 'VIN123', data: { km: 42 } });
    let sent = next('sent');
    helper.getNode('out').receive({ payload: event } as never);
    let msg = await sent;
    assert.deepEqual(msg.webhooks, { eventId: event.id, subscriptions: [sub.id] });
    const { rows } = await db.query<{ message_id: string }>(`SELECT message_id FROM outbox UNION ALL SELECT event_id FROM webhook_deliveries`);
    assert.ok(rows.length >= 1, 'stored for delivery before the message left the node');

    sent = next('sent');
    helper.getNode('out').receive({ payload: [{ n: 'dev7/t/temp', t: 1_764_756_000, v: 21.5, u: 'Cel' }], device: { tenant: 'default', id: 'dev7' } } as never);
    msg = await sent;
    assert.deepEqual(msg.webhooks.subscriptions, [sub.id]);
    const readingId = msg.webhooks.eventId as string;

    await until('both delivered', () => rx.received.length >= 2);
    const verifier = new Webhook(key);
    const bodies = rx.received.map((r) => verifier.verify(r.body, r.headers as Record<string, string>) as PlatformEvent);
    assert.deepEqual(bodies.map((b) => b.id).sort(), [event.id, readingId].sort());
    const reading = bodies.find((b) => b.type === 'reading.received')!;
    assert.equal(reading.subject, 'dev7');
    for (const r of rx.received) {
      assert.equal(r.headers.authorization, `Basic ${Buffer.from('partner:s3cret').toString('base64')}`);
      assert.equal(r.headers['x-partner'], 'p1');
    }
    assert.ok(!rx.received.some((r) => r.headers['webhook-id'] === undefined));

    await until('both attempts logged', async () => (await db.query(`SELECT 1 FROM webhook_deliveries`)).rows.length === 2);
    const listed = next('listed');
    helper.getNode('biz').receive({ action: 'list', entity: 'webhook_deliveries', filter: { subscription_id: sub.id } } as never);
    const log = (await listed).payload as Record<string, unknown>[];
    assert.deepEqual(
      log.map((a) => [a.event_id, a.status, a.outcome, a.attempt]).sort(),
      [
        [event.id, 204, 'delivered', 1],
        [readingId, 204, 'delivered', 1],
      ].sort(),
    );
    assert.equal((await store.list('default', 'webhook_deliveries', { filter: { subscription_id: other.id as number } })).items.length, 0);
  });

  it('publishes subscription.disabled on the runtime hub when a receiver answers 410', async () => {
    await helper.unload();
    const store = createBusinessStore(db);
    const gone = await new Receiver().start();
    gone.handler = answer(410);
    try {
      const sub = await store.create('default', 'webhook_subscriptions', { url: gone.url, events: ['alarm.*'] });
      await helper.load([postgresNode, businessNode, webhooksNode, webhookOutNode], flow());
      const seen: PlatformEvent[] = [];
      // The hub is keyed by the runtime's event emitter, which the helper hands the nodes as RED.events.
      const runtime = { events: (helper as unknown as { _events: object })._events } as Parameters<typeof onEvent>[0];
      const off = onEvent(runtime, (e) => seen.push(e));
      try {
        helper.getNode('out').receive({ payload: createEvent({ type: 'alarm.raised', tenant: 'default', subject: 'd', data: {} }) } as never);
        await until('subscription.disabled on the hub', () => seen.some((e) => e.type === 'subscription.disabled' && e.subject === String(sub.id)));
      } finally {
        off();
      }
    } finally {
      await gone.stop();
    }
  });
});
