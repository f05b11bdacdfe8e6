/**
 * What the self-service page relies on, through the REST API's handlers with a real ApiContext on
 * PostgreSQL and a real WebhookSender posting to a local receiver: a delivered event is logged with
 * its status and can be resent (same webhook-id and bytes, through the outbox, logged again); a
 * paused subscription gets nothing from the next event on (at once, not after the sender's cache
 * time) and keeps its log; nobody else's key (another user, the tenant-wide key, another tenant)
 * sees or resends a delivery; a body no longer kept is a 409; pruning drops old log rows and
 * their bodies. Every answer is validated against its operation's schema.
 */
import * as assert from 'node:assert/strict';
import type { ApiStores } from '../../nodes/core/api/operation';
import type { ApiKeyIdentity } from '../../nodes/core/auth/api-key-store';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createEvent, type PlatformEvent } from '../../nodes/core/events/event';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import { webhookRetryPolicy } from '../../nodes/core/webhooks/out-retry';
import { WebhookSender } from '../../nodes/core/webhooks/out-sender';
import { allPages, call, fails } from '../support/api-resources';
import { ENGINES, withMigratedDatabase } from '../support/engines';
import { until } from '../support/wait';
import { Receiver, type Received } from '../support/webhook-receiver';

const postgres = ENGINES.find((e) => e.name === 'PostgreSQL')!;
let seq = 0;
/** An event of type (each test its own, so that the subscriptions of the other tests stay out of it). */
const vehicle = (type: string, tenant = 'acme'): PlatformEvent =>
  createEvent({ type, tenant, subject: `VIN${++seq}`, data: { vin: `VIN${seq}`, images: 3 }, identity: [seq, Date.now()] });
const idOf = (r: Received) => (r.headers as Record<string, string>)['webhook-id'];

describe('self-service webhooks API on PostgreSQL: resend, pause, isolation', function () {
  this.timeout(60_000);
  let db: SqlClient;
  let stores: ApiStores;
  let sender: WebhookSender;
  let receiver: Receiver;
  let alice: ApiKeyIdentity;
  let bob: ApiKeyIdentity;
  const tenantWide: ApiKeyIdentity = { tenant: 'acme', id: 3, user_id: null, scopes: [] };
  const globex: ApiKeyIdentity = { tenant: 'globex', id: 4, user_id: null, scopes: [] };

  withMigratedDatabase(postgres, (opened) => (db = opened));

  before(async () => {
    const business = createBusinessStore(db);
    await createTenant(db, { id: 'acme', name: 'Acme' });
    await createTenant(db, { id: 'globex', name: 'Globex' });
    alice = { tenant: 'acme', id: 1, user_id: (await business.create('acme', 'users', { username: 'alice' })).id as number, scopes: [] };
    bob = { tenant: 'acme', id: 2, user_id: (await business.create('acme', 'users', { username: 'bob' })).id as number, scopes: [] };
    stores = { db, catalogue: () => [] };
    receiver = await new Receiver().start();
    sender = new WebhookSender(
      db,
      {
        allowPrivate: true,
        connectTimeoutMs: 2_000,
        responseTimeoutMs: 5_000,
        keepBytes: 1_024,
        concurrency: 4,
        failureThreshold: 3,
        openMs: 200,
        retry: webhookRetryPolicy([50, 100, 200], 0),
        worker: 'self-service-test',
        capacity: 100,
        leaseMs: 30_000,
        pollMs: 20,
        // Long on purpose: a pause must count from the next event, not once this cache expires.
        cacheMs: 600_000,
        maxWaiting: 50,
        holdMs: 1_000,
        busyDelayMs: 50,
      },
      { publish: () => undefined, onError: () => undefined },
    );
    sender.start();
  });

  after(async () => {
    await sender?.stop();
    await receiver?.stop();
  });

  const subscribe = async (identity: ApiKeyIdentity, path: string, type: string) =>
    String((await call(stores, 'createWebhook', { identity, version: 2, body: { url: `${receiver.url}/${path}`, events: [type] } })).body!.id);
  const deliveries = async (identity: ApiKeyIdentity, id: string) =>
    (await allPages(stores, 'listWebhookDeliveries', { identity, version: 2, params: { id } }, 50)).items;
  const at = (path: string) => receiver.received.filter((r) => r.path === `/hook/${path}`);

  it('logs a delivered event with its status and answer, and resends it with the same webhook-id and body', async () => {
    await sender.subscriptions.all('acme'); // cached before the subscription exists: the API's change must still count
    const id = await subscribe(alice, 'resend', 'vehicle.processed');
    const event = vehicle('vehicle.processed');
    assert.deepEqual(await sender.enqueue(event), [Number(id)]);
    await until('the first delivery', () => at('resend').length === 1);
    await until('the attempt in the log', async () => (await deliveries(alice, id)).length === 1);
    const [first] = await deliveries(alice, id);
    assert.deepEqual([first.eventId, first.eventType, first.status, first.outcome], [event.id, 'vehicle.processed', 204, 'delivered']);

    const answer = await call(stores, 'resendWebhookDelivery', { identity: alice, version: 2, params: { id, deliveryId: String(first.id) } });
    assert.equal(answer.status, 202);
    assert.deepEqual(answer.body, { eventId: event.id, eventType: 'vehicle.processed', version: '2.0' });
    await until('the resent delivery', () => at('resend').length === 2);
    const [a, b] = at('resend');
    assert.deepEqual([idOf(a), idOf(b)], [event.id, event.id], 'the same webhook-id both times');
    assert.equal(b.body, a.body, 'the same bytes');
    assert.equal(JSON.parse(b.body).data.vin, event.data && (event.data as { vin: string }).vin);
    await until('the resend in the log', async () => (await deliveries(alice, id)).length === 2);
    const log = await deliveries(alice, id);
    assert.deepEqual(
      log.map((d) => [d.eventId, d.outcome, d.status]),
      [
        [event.id, 'delivered', 204],
        [event.id, 'delivered', 204],
      ],
    );
  });

  it('pauses at once: the next event is not sent, the log stays, a resend is refused; resumed, the next one arrives', async () => {
    const id = await subscribe(alice, 'pause', 'vehicle.paused');
    const witness = await subscribe(alice, 'witness', 'vehicle.paused'); // same events, never paused: shows when an event has gone out
    assert.deepEqual((await sender.enqueue(vehicle('vehicle.paused'))).sort(), [Number(id), Number(witness)].sort());
    await until('the first delivery', () => at('pause').length === 1 && at('witness').length === 1);
    await until('its log', async () => (await deliveries(alice, id)).length === 1);

    const paused = await call(stores, 'updateWebhook', { identity: alice, version: 2, params: { id }, body: { enabled: false } });
    assert.equal(paused.body!.enabled, false);
    assert.deepEqual(await sender.enqueue(vehicle('vehicle.paused')), [Number(witness)], 'the paused subscription gets nothing');
    await until('the witness to get the second event', () => at('witness').length === 2);
    assert.equal(at('pause').length, 1);
    const kept = await deliveries(alice, id);
    assert.equal(kept.length, 1, 'the log stays');
    await fails(stores, 'resendWebhookDelivery', { identity: alice, params: { id, deliveryId: String(kept[0].id) } }, 'conflict');

    await call(stores, 'updateWebhook', { identity: alice, params: { id }, body: { enabled: true } });
    const third = vehicle('vehicle.paused');
    await sender.enqueue(third);
    await until('the third event after resuming', () => at('pause').length === 2);
    assert.equal(idOf(at('pause')[1]), third.id);
  });

  it('shows and resends a delivery only to the key that owns the subscription', async () => {
    const id = await subscribe(alice, 'mine', 'vehicle.owned');
    const bobs = await subscribe(bob, 'bobs', 'vehicle.owned');
    await sender.enqueue(vehicle('vehicle.owned'));
    await until('both deliveries logged', async () => (await deliveries(alice, id)).length === 1 && (await deliveries(bob, bobs)).length === 1);
    const [delivery] = await deliveries(alice, id);
    const params = { id, deliveryId: String(delivery.id) };
    for (const other of [bob, tenantWide, globex]) {
      await fails(stores, 'listWebhookDeliveries', { identity: other, params: { id } }, 'not-found');
      await fails(stores, 'resendWebhookDelivery', { identity: other, params }, 'not-found');
    }
    // Alice's delivery id through Bob's own subscription: not his delivery.
    await fails(stores, 'resendWebhookDelivery', { identity: bob, params: { id: bobs, deliveryId: String(delivery.id) } }, 'not-found');
    // Another tenant's lists hold none of acme's subscriptions.
    assert.equal((await allPages(stores, 'listWebhooks', { identity: globex }, 50)).items.length, 0);
    const wide = await subscribe(tenantWide, 'wide', 'vehicle.wide');
    const aliceSees = (await allPages(stores, 'listWebhooks', { identity: alice }, 50)).items.map((s) => String(s.id));
    assert.ok(aliceSees.includes(id) && !aliceSees.includes(bobs) && !aliceSees.includes(wide));
  });

  it('refuses a resend whose body is no longer kept, and prunes old log rows with their bodies', async () => {
    const id = await subscribe(alice, 'prune', 'vehicle.pruned');
    const event = vehicle('vehicle.pruned');
    await sender.enqueue(event);
    await until('the delivery logged', async () => (await deliveries(alice, id)).length === 1);
    const [delivery] = await deliveries(alice, id);
    const params = { id, deliveryId: String(delivery.id) };
    const body = await db.query<{ body: string }>('SELECT body FROM webhook_events WHERE tenant_id = $1 AND event_id = $2', ['acme', event.id]);
    assert.equal(JSON.parse(body.rows[0].body).id, event.id);

    await db.query(`UPDATE webhook_deliveries SET attempted_at = now() - interval '40 days' WHERE tenant_id = 'acme' AND event_id = $1`, [event.id]);
    await db.query(`UPDATE webhook_events SET created_at = now() - interval '40 days' WHERE tenant_id = 'acme' AND event_id = $1`, [event.id]);
    const pruned = await sender.subscriptions.prune(30);
    assert.equal(pruned, 1);
    assert.equal((await deliveries(alice, id)).length, 0);
    const left = await db.query('SELECT 1 FROM webhook_events WHERE tenant_id = $1 AND event_id = $2', ['acme', event.id]);
    assert.equal(left.rowCount, 0, 'the body went with its log');
    await fails(stores, 'resendWebhookDelivery', { identity: alice, params }, 'not-found');

    // A log row whose body is gone (logged before migration 012): 409.
    const again = vehicle('vehicle.pruned');
    await sender.enqueue(again);
    await until('the next delivery logged', async () => (await deliveries(alice, id)).length === 1);
    await db.query('DELETE FROM webhook_events WHERE tenant_id = $1 AND event_id = $2', ['acme', again.id]);
    const [next] = await deliveries(alice, id);
    await fails(stores, 'resendWebhookDelivery', { identity: alice, params: { id, deliveryId: String(next.id) } }, 'conflict');
  });
});
