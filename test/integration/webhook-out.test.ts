/**
 * Webhooks out against the real PostgreSQL and real HTTP receivers on 127.0.0.1. Every signature
 * is checked with the reference `standardwebhooks` library (Webhook#verify), never with our code.
 * Retries run on a short schedule given through the options, as the config node allows.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { createEvent, type PlatformEvent } from '../../nodes/core/events/event';
import { createBusinessStore, type BusinessStore } from '../../nodes/core/stores/business';
import { webhookRetryPolicy } from '../../nodes/core/webhooks/out-retry';
import { WebhookSender, type SenderOptions } from '../../nodes/core/webhooks/out-sender';
import { freshDatabase } from '../support/servers';
import { elapse, until } from '../support/wait';
import { answer, Receiver, type Received } from '../support/webhook-receiver';

const secret = () => `whsec_${randomBytes(24).toString('base64')}`;
let seq = 0;
const event = (i: number, type = 'device.connected', tenant = 'default'): PlatformEvent =>
  createEvent({ type, tenant, subject: `dev${i}`, data: { i }, identity: [i, seq] });
const headersOf = (r: Received) => r.headers as Record<string, string>;
const idsOf = (rs: Received[]) => rs.map((r) => headersOf(r)['webhook-id']);

interface Attempt {
  subscription_id: number;
  event_id: string;
  attempt: number;
  status: number | null;
  outcome: string;
  error: string | null;
  response: string | null;
  duration_ms: number;
}

describe('conflux-webhook-out sender on PostgreSQL', function () {
  this.timeout(60_000);
  let db: SqlClient;
  let store: BusinessStore;
  let sender: WebhookSender | undefined;
  let published: PlatformEvent[];
  const receivers: Receiver[] = [];

  beforeEach(async () => {
    seq++;
    db = await openSql({ connectionString: await freshDatabase(), poolSize: 8 });
    await migrate(db);
    store = createBusinessStore(db);
    published = [];
  });
  afterEach(async () => {
    await sender?.stop();
    sender = undefined;
    await Promise.all(receivers.splice(0).map((r) => r.stop()));
    await db.close();
  });

  async function receiver(): Promise<Receiver> {
    const r = await new Receiver().start();
    receivers.push(r);
    return r;
  }

  function start(options: Partial<SenderOptions> = {}): WebhookSender {
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
        retry: webhookRetryPolicy([50, 100, 200, 400, 800, 1_600, 3_200, 6_400], 0),
        worker: `test-${seq}`,
        capacity: 200,
        leaseMs: 30_000,
        pollMs: 20,
        cacheMs: 100,
        maxWaiting: 100,
        holdMs: 1_000,
        busyDelayMs: 50,
        ...options,
      },
      { publish: (e) => published.push(e), onError: () => undefined },
    );
    sender.start();
    return sender;
  }

  const subscribe = (fields: Record<string, unknown>) => store.create('default', 'webhook_subscriptions', { events: ['*'], ...fields });
  const attempts = async (subscription?: unknown) =>
    (
      await db.query<Attempt>(
        `SELECT subscription_id, event_id, attempt, status, outcome, error, response, duration_ms FROM webhook_deliveries
         ${subscription === undefined ? '' : 'WHERE subscription_id = $1'} ORDER BY id`,
        subscription === undefined ? [] : [subscription],
      )
    ).rows;
  const deadLetters = async () => (await db.query<{ message_id: string; attempts: number }>(`SELECT message_id, attempts FROM dead_letters ORDER BY id`)).rows;
  const depth = async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM outbox`)).rows[0].n);

  it('a receiver down for a while, then back: every event arrives signed, none missing, no id delivered as two different events', async () => {
    const rx = await receiver();
    const key = secret();
    const sub = await subscribe({ url: rx.url, events: ['device.*'], secret: key });
    const out = start();
    const events = Array.from({ length: 41 }, (_, i) => event(i));
    assert.deepEqual(await out.enqueue(events[0]), [sub.id]);
    await until('the first delivery', () => rx.received.length >= 1);

    await rx.stop();
    for (const e of events.slice(1)) await out.enqueue(e);
    assert.deepEqual(await out.enqueue(events[1]), [sub.id], 'enqueued again: the box keeps one');
    await until('five failed attempts while the receiver is down', async () => (await attempts()).filter((a) => a.outcome === 'retry').length >= 5);
    await rx.start();

    const expected = new Set(events.map((e) => e.id));
    await until(
      () => `all ${expected.size} events (got ${new Set(idsOf(rx.received)).size})`,
      () => [...expected].every((id) => idsOf(rx.received).includes(id)),
    );
    await until(
      'the outbox to empty and every delivery logged',
      async () => (await depth()) === 0 && (await attempts()).filter((a) => a.outcome === 'delivered').length >= expected.size,
    );

    const verifier = new Webhook(key);
    const bodies = new Map<string, string>();
    for (const r of rx.received) {
      const payload = verifier.verify(r.body, headersOf(r)) as PlatformEvent;
      const id = headersOf(r)['webhook-id'];
      assert.equal(payload.id, id, 'webhook-id is the event id');
      assert.equal(r.headers['content-type'], 'application/json');
      if (bodies.has(id)) assert.equal(r.body, bodies.get(id), `${id} delivered twice with different bodies`);
      bodies.set(id, r.body);
    }
    assert.deepEqual(new Set(bodies.keys()), expected);
    for (const e of events) assert.deepEqual(JSON.parse(bodies.get(e.id)!), e);
    assert.deepEqual(await deadLetters(), []);
    const log = await attempts(sub.id);
    assert.ok(
      log.some((a) => a.outcome === 'retry' && a.status === null && /ECONNREFUSED/.test(a.error ?? '')),
      'the refused attempts are logged',
    );
    assert.equal(new Set(log.filter((a) => a.outcome === 'delivered').map((a) => a.event_id)).size, expected.size);
  });

  it('410 Gone disables the subscription and emits subscription.disabled', async () => {
    const rx = await receiver();
    rx.handler = answer(410, { 'content-type': 'text/plain' }, 'we closed this endpoint');
    const sub = await subscribe({ url: rx.url });
    const out = start();
    const e1 = event(1);
    await out.enqueue(e1);
    await until('subscription.disabled', () => published.some((e) => e.type === 'subscription.disabled'));
    const row = await store.read('default', 'webhook_subscriptions', sub.id as number);
    assert.equal(row.enabled, false);
    assert.match(String(row.disabled_reason), /410/);
    const disabled = published.find((e) => e.type === 'subscription.disabled')!;
    assert.equal(disabled.subject, String(sub.id));
    assert.deepEqual(disabled.data, { subscription: String(sub.id), url: rx.url, reason: `410 Gone on event ${e1.id}`, status: 410 });
    const log = await attempts(sub.id);
    assert.deepEqual(
      log.map((a) => [a.status, a.outcome, a.response]),
      [[410, 'disabled', 'we closed this endpoint']],
    );
    assert.deepEqual(await out.enqueue(event(2)), [], 'a disabled subscription takes no more events');
    await until('the outbox to empty', async () => (await depth()) === 0);
    assert.equal(rx.received.length, 1);
  });

  it('429 and 503 wait for Retry-After (seconds or an HTTP date), not the schedule', async () => {
    const a = await receiver();
    const b = await receiver();
    a.handler = (_r, res, i) => (i === 0 ? answer(429, { 'retry-after': '2' })(_r, res, i) : answer(200)(_r, res, i));
    b.handler = (_r, res, i) => (i === 0 ? answer(503, { 'retry-after': new Date(Date.now() + 2_000).toUTCString() })(_r, res, i) : answer(200)(_r, res, i));
    await subscribe({ url: a.url });
    await subscribe({ url: b.url });
    start(); // the schedule's first retry would come after 50 ms
    await sender!.enqueue(event(1));
    await until('both retried and logged', async () => a.received.length === 2 && b.received.length === 2 && (await attempts()).length === 4);
    assert.ok(a.received[1].at - a.received[0].at >= 1_950, `429: retried after ${a.received[1].at - a.received[0].at} ms`);
    assert.ok(b.received[1].at - b.received[0].at >= 950, `503: retried after ${b.received[1].at - b.received[0].at} ms`);
    assert.deepEqual((await attempts()).map((x) => [x.status, x.outcome]).sort(), [
      [200, 'delivered'],
      [200, 'delivered'],
      [429, 'retry'],
      [503, 'retry'],
    ]);
  });

  it('a redirect is not followed: it counts as a failure, and the last one goes to dead letters with delivery.failed', async () => {
    const target = await receiver();
    const rx = await receiver();
    rx.handler = answer(302, { location: target.url });
    const sub = await subscribe({ url: rx.url });
    start({ retry: webhookRetryPolicy([20, 20], 0) });
    const e = event(1);
    await sender!.enqueue(e);
    await until('dead letter, logged', async () => (await attempts()).some((a) => a.outcome === 'dead'));
    assert.deepEqual(await deadLetters(), [{ message_id: `${sub.id}:${e.id}`, attempts: 3 }]);
    assert.equal(target.received.length, 0, 'the redirect target got nothing');
    assert.deepEqual(
      (await attempts(sub.id)).map((a) => [a.attempt, a.status, a.outcome]),
      [
        [1, 302, 'retry'],
        [2, 302, 'retry'],
        [3, 302, 'dead'],
      ],
    );
    await until('delivery.failed', () => published.some((p) => p.type === 'delivery.failed'));
    const failed = published.find((p) => p.type === 'delivery.failed')!;
    assert.deepEqual(failed.data, {
      channel: 'webhook',
      subscription: String(sub.id),
      eventId: e.id,
      eventType: e.type,
      attempts: 3,
      lastError: 'HTTP 302',
      lastStatus: 302,
    });
  });

  it('dead letters after the last try of a failing endpoint, every attempt logged with the first bytes of the answer', async () => {
    const rx = await receiver();
    rx.handler = answer(500, {}, 'x'.repeat(5_000));
    const sub = await subscribe({ url: rx.url });
    start({ retry: webhookRetryPolicy([20, 20, 20], 0), failureThreshold: 100 });
    await sender!.enqueue(event(1));
    await until('dead letter, logged', async () => (await attempts()).some((a) => a.outcome === 'dead'));
    assert.equal((await deadLetters()).length, 1);
    const log = await attempts(sub.id);
    assert.deepEqual(
      log.map((a) => [a.attempt, a.status, a.outcome]),
      [
        [1, 500, 'retry'],
        [2, 500, 'retry'],
        [3, 500, 'retry'],
        [4, 500, 'dead'],
      ],
    );
    assert.ok(log.every((a) => a.response === 'x'.repeat(1_024) && a.duration_ms >= 0));
    assert.equal(rx.received.length, 4);
    await until('delivery.failed', () => published.some((p) => p.type === 'delivery.failed'));
  });

  it('a binary answer with NUL bytes is logged (as U+FFFD) and the delivery acked once, not retried', async () => {
    const rx = await receiver();
    rx.handler = answer(200, {}, Buffer.from([0x6f, 0x6b, 0x00, 0x01]));
    const sub = await subscribe({ url: rx.url });
    start();
    await sender!.enqueue(event(1));
    await until('logged', async () => (await attempts(sub.id)).length === 1);
    const [a] = await attempts(sub.id);
    assert.deepEqual([a.status, a.outcome, a.response], [200, 'delivered', 'ok\uFFFD\u0001']);
    await until('acked', async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM outbox`)).rows[0].n) === 0);
    assert.equal(rx.received.length, 1);
  });

  it('private destinations are refused unless allowed: an IP literal and a name that resolves to loopback', async () => {
    const rx = await receiver();
    const literal = await subscribe({ url: rx.url });
    const named = await subscribe({ url: `http://localhost:${rx.port}/hook` });
    start({ allowPrivate: false, retry: webhookRetryPolicy([20], 0) });
    await sender!.enqueue(event(1));
    await until('both dead, logged', async () => (await attempts()).filter((a) => a.outcome === 'dead').length === 2);
    assert.equal((await deadLetters()).length, 2);
    assert.equal(rx.received.length, 0);
    const log = await attempts();
    assert.ok(
      log.filter((a) => a.subscription_id === literal.id).every((a) => /127\.0\.0\.1, a loopback address: refused/.test(a.error ?? '')),
      JSON.stringify(log),
    );
    assert.ok(
      log.filter((a) => a.subscription_id === named.id).every((a) => /localhost resolves to .*a loopback address: refused/.test(a.error ?? '')),
      JSON.stringify(log),
    );
  });

  /** A receiver that holds every request unanswered until release(), then answers 200 (those held and any after). */
  async function holding(): Promise<{ rx: Receiver; release(): void }> {
    const rx = await receiver();
    const held: (() => void)[] = [];
    rx.handler = (r, res, i) => held.push(() => answer(200)(r, res, i));
    const release = () => {
      rx.handler = answer(200);
      held.splice(0).forEach((go) => go());
    };
    return { rx, release };
  }

  it('a slow endpoint beside a fast one: the fast one gets everything while the slow one holds its few connections', async () => {
    const fast = await receiver();
    const { rx: slow, release } = await holding();
    await subscribe({ url: fast.url });
    await subscribe({ url: slow.url });
    start({ concurrency: 2, responseTimeoutMs: 30_000 });
    const events = Array.from({ length: 30 }, (_, i) => event(i));
    for (const e of events) await sender!.enqueue(e);
    await until('the fast endpoint to get all 30', () => new Set(idsOf(fast.received)).size === 30);
    assert.ok(slow.received.length <= 2, `the slow endpoint had ${slow.received.length} requests open (limit 2)`);
    release();
    await until('the slow endpoint to get all 30 too', () => new Set(idsOf(slow.received)).size === 30);
    await until(
      'every delivery logged and acked',
      async () => (await attempts()).filter((a) => a.outcome === 'delivered').length === 60 && (await depth()) === 0,
    );
    assert.equal((await attempts()).length, 60, 'messages given back for a full endpoint were not attempts');
  });

  it('an endpoint alone may fill the whole capacity with its line; beside a busy one, each line stops at maxWaiting', async () => {
    const first = await holding();
    const firstSub = await subscribe({ url: first.rx.url });
    const out = start({ concurrency: 1, capacity: 30, maxWaiting: 10, holdMs: 60_000 });
    for (let i = 0; i < 30; i++) await out.enqueue(event(i));
    await until(
      () => `29 waiting in memory behind the one in flight (${out.stats.waiting})`,
      () => out.stats.waiting === 29,
    );
    first.release();
    await until('all 30 delivered', () => new Set(idsOf(first.rx.received)).size === 30);

    await store.update('default', 'webhook_subscriptions', firstSub.id as number, { enabled: false });
    const a = await holding();
    const b = await holding();
    await subscribe({ url: a.rx.url });
    await subscribe({ url: b.rx.url });
    await until('the sender to see the change of subscriptions', async () => {
      const subs = await out.subscriptions.all('default');
      return subs.filter((x) => x.enabled).length === 2;
    });
    for (let i = 100; i < 115; i++) await out.enqueue(event(i));
    await until(
      () => `10 waiting for each endpoint (${out.stats.waiting})`,
      () => out.stats.waiting === 20,
    );
    await elapse(300); // a negative check: the rest stays in the box
    assert.equal(out.stats.waiting, 20, 'a line grew past maxWaiting while another endpoint was busy');
    a.release();
    b.release();
    await until('all 15 delivered to each', () => new Set(idsOf(a.rx.received)).size === 15 && new Set(idsOf(b.rx.received)).size === 15);
  });

  it('an answer that does not come within the response timeout is a failed attempt', async () => {
    const rx = await receiver();
    rx.handler = () => undefined; // never answers
    const sub = await subscribe({ url: rx.url });
    start({ responseTimeoutMs: 300, retry: webhookRetryPolicy([20], 0) });
    await sender!.enqueue(event(1));
    await until('dead letter, logged', async () => (await attempts()).some((a) => a.outcome === 'dead'));
    const log = await attempts(sub.id);
    assert.ok(log.length === 2 && log.every((a) => a.status === null && /no complete answer within 300 ms/.test(a.error ?? '')), JSON.stringify(log));
    assert.ok(log.every((a) => a.duration_ms >= 290));
  });
});
