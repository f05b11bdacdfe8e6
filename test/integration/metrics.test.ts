/**
 * /metrics (issue 13): Prometheus text from prom-client on the admin API, behind its login. From
 * `npm start` with an admin password: refused without a token; with one, the series a reading and
 * two refusals leave (messages per Conflux node, device refusals by reason, API answers by status).
 * On the real PostgreSQL: mailbox depth and age per queue, webhook deliveries and their duration,
 * and device sessions per transport.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { createEvent } from '../../nodes/core/events/event';
import { Mailbox } from '../../nodes/core/mailbox/mailbox';
import { exposition, watchMailboxes } from '../../nodes/core/metrics/metrics';
import { SessionRegistry, type Session } from '../../nodes/core/devices/sessions';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { webhookRetryPolicy } from '../../nodes/core/webhooks/out-retry';
import { WebhookSender } from '../../nodes/core/webhooks/out-sender';
import { root, start, START_TIMEOUT_MS, stop, tempDataDir, waitForOutput, type Platform } from '../support/platform';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import { Receiver } from '../support/webhook-receiver';

/** The value of one series in Prometheus text (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('/metrics from npm start, behind the admin login', function () {
  this.timeout(START_TIMEOUT_MS + 60_000);
  const dataDir = tempDataDir();
  let platform: Platform | undefined;

  after(async () => {
    await stop(platform);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a scrape without a token; with one, counts a reading, the refusals and the API answers', async () => {
    platform = await start({ CONFLUX_DATA_DIR: dataDir, CONFLUX_ADMIN_PASSWORD: 'metrics pass' });
    const [, deviceKey] = await waitForOutput(platform, /demo device demo-0001; its key, shown only this once: (\S+)/);
    assert.equal((await fetch(`${platform.base}/metrics`)).status, 401);
    const login = await fetch(`${platform.base}/auth/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: 'read', username: 'admin', password: 'metrics pass' }),
    });
    assert.equal(login.status, 200);
    const { access_token: token } = (await login.json()) as { access_token: string };

    const basic = (key: string) => `Basic ${Buffer.from(`demo-0001:${key}`).toString('base64')}`;
    const telemetry = (key: string) =>
      fetch(`${platform!.base}/devices/demo-0001/telemetry`, {
        method: 'POST',
        headers: { Authorization: basic(key), 'Content-Type': 'application/json' },
        body: JSON.stringify([{ n: 'temperature', u: 'Cel', v: 21.5, t: Math.floor(Date.now() / 1000) }]),
      });
    assert.equal((await telemetry(deviceKey)).status, 202);
    assert.equal((await telemetry('wrong-key')).status, 401);
    assert.equal((await fetch(`${platform.base}/api/v2/devices`, { headers: { 'EAPI-ELCLV2': 'cfx_not-a-key' } })).status, 401);

    let text = '';
    await until('the reading and the refusals counted', async () => {
      const res = await fetch(`${platform!.base}/metrics`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      text = await res.text();
      return (sample(text, 'conflux_node_messages_total', { type: 'conflux-time-series', direction: 'in' }) ?? 0) >= 1;
    });
    assert.ok((sample(text, 'conflux_node_messages_total', { type: 'conflux-http-in', direction: 'out' }) ?? 0) >= 1, text);
    assert.equal(sample(text, 'conflux_device_refusals_total', { transport: 'http', reason: '401' }), 1, text);
    assert.equal(sample(text, 'conflux_api_requests_total', { status: '401' }), 1, text);
    for (const name of [
      'conflux_device_sessions',
      'conflux_mailbox_depth',
      'conflux_mailbox_oldest_seconds',
      'conflux_deliveries_total',
      'conflux_delivery_seconds',
    ])
      assert.ok(text.includes(`# TYPE ${name} `), `${name} is declared`);
  });
});

describe('/metrics series on PostgreSQL: mailboxes, webhook deliveries, device sessions', function () {
  this.timeout(60_000);
  let db: SqlClient;
  let unwatch: () => void;

  before(async () => {
    db = await openSql({ connectionString: await freshDatabase(), poolSize: 4 });
    await migrate(db);
    unwatch = watchMailboxes(db);
  });
  after(async () => {
    unwatch();
    await db.close();
  });

  it('reports each queue’s depth and the age of its oldest message', async () => {
    const box = new Mailbox(db, 'outbox');
    await box.enqueue('default', 'metrics-q', [
      { messageId: 'a', payload: 1 },
      { messageId: 'b', payload: 2 },
    ]);
    await db.query(`UPDATE outbox SET created_at = now() - interval '90 seconds' WHERE message_id = 'a'`);
    const { text } = await exposition();
    assert.equal(sample(text, 'conflux_mailbox_depth', { box: 'outbox', queue: 'metrics-q' }), 2, text);
    const age = sample(text, 'conflux_mailbox_oldest_seconds', { box: 'outbox', queue: 'metrics-q' })!;
    assert.ok(age >= 90 && age < 120, `oldest ${age}`);
    await db.query(`DELETE FROM outbox WHERE queue = 'metrics-q'`);
    assert.equal(sample((await exposition()).text, 'conflux_mailbox_depth', { box: 'outbox', queue: 'metrics-q' }), undefined, 'an empty queue has no series');
  });

  it('counts webhook deliveries by outcome with their duration', async () => {
    const rx = await new Receiver().start();
    const before = (await exposition()).text;
    const delivered = () => sample(before, 'conflux_deliveries_total', { connector: 'webhooks', outcome: 'delivered' }) ?? 0;
    const timed = () => sample(before, 'conflux_delivery_seconds_count', { connector: 'webhooks' }) ?? 0;
    const [d0, c0] = [delivered(), timed()];
    await createBusinessStore(db).create('default', 'webhook_subscriptions', { url: rx.url, events: ['*'] });
    const sender = new WebhookSender(
      db,
      {
        allowPrivate: true,
        connectTimeoutMs: 2_000,
        responseTimeoutMs: 5_000,
        keepBytes: 64,
        concurrency: 4,
        failureThreshold: 3,
        openMs: 200,
        retry: webhookRetryPolicy([50], 0),
        worker: 'metrics-test',
        capacity: 10,
        leaseMs: 30_000,
        pollMs: 20,
        cacheMs: 100,
        maxWaiting: 10,
        holdMs: 1_000,
        busyDelayMs: 50,
      },
      { publish: () => undefined, onError: () => undefined },
    );
    sender.start();
    try {
      for (let i = 0; i < 3; i++)
        await sender.enqueue(createEvent({ type: 'device.connected', tenant: 'default', subject: `d${i}`, data: {}, identity: ['metrics', i] }));
      await until('3 received', () => rx.received.length === 3);
      await until(
        '3 counted',
        async () => (sample((await exposition()).text, 'conflux_deliveries_total', { connector: 'webhooks', outcome: 'delivered' }) ?? 0) - d0 === 3,
      );
      assert.equal((sample((await exposition()).text, 'conflux_delivery_seconds_count', { connector: 'webhooks' }) ?? 0) - c0, 3);
    } finally {
      await sender.stop();
      await rx.stop();
    }
  });

  it('the Grafana dashboard in docs/ asks only for series the endpoint declares', async () => {
    const dashboard = fs.readFileSync(path.join(root, 'docs', 'grafana-conflux.json'), 'utf8');
    const asked = new Set([...dashboard.matchAll(/conflux_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')));
    assert.ok(asked.size >= 7, [...asked].join(', '));
    const { text } = await exposition();
    for (const name of asked) assert.ok(text.includes(`# TYPE ${name} `), `${name} is not a series of /metrics`);
  });

  it('shows live device sessions per transport', async () => {
    const gauge = async () => sample((await exposition()).text, 'conflux_device_sessions', { transport: 'tcp' }) ?? 0;
    const g0 = await gauge();
    const sessions = new SessionRegistry(10);
    const session = (serial: string): Session => ({
      device: { tenant: 'default', serial } as Session['device'],
      transport: 'tcp',
      send: async () => undefined,
      close: () => undefined,
    });
    const a = session('m-1');
    sessions.add(a);
    sessions.add(session('m-2'));
    assert.equal((await gauge()) - g0, 2);
    sessions.remove(a);
    assert.equal((await gauge()) - g0, 1);
    sessions.closeAll('test over');
    assert.equal(await gauge(), g0);
  });
});
