/**
 * Issue 10's acceptance, as a user meets it: `npm start` (dist/settings.js) with a RabbitMQ, the
 * shipped seed-002 (webhooks) and seed-004 (AMQP queues) flows deployed together through the admin
 * API as the editor deploys them, with the settings an operator makes in the editor (private
 * destinations allowed, the webhook-in's signature mode and secret).
 * A reading goes out as a signed webhook and onto the customer's AMQP queue; a third party's
 * webhook and an AMQP message come in, decoded into the canonical message.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as amqplib from 'amqplib';
import { Webhook } from 'standardwebhooks';
import { debugSidebar, press, root, usePlatform, type DebugEvent } from '../support/platform';
import { amqpUrl } from '../support/servers';
import { freePort, freeUdpPort } from '../support/ports';
import { until } from '../support/wait';
import { Receiver } from '../support/webhook-receiver';

type FlowNode = Record<string, unknown> & { id: string; type: string; name?: string };

const OUT_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const IN_SECRET = 'whsec_' + Buffer.from('a partner secret of 32 bytes....').toString('base64');

describe('the push directions of the shipped seed-002 and seed-004 flows under npm start', function () {
  this.timeout(240_000);
  const rx = new Receiver();
  before(() => rx.start());
  after(() => rx.stop());
  // The getting-started flow's listeners on free ports, so that another platform on this machine does not meet them.
  const ports: Record<string, string> = {};
  before(async () => {
    Object.assign(ports, {
      CONFLUX_TCP_PORT: String(await freePort()),
      CONFLUX_UDP_PORT: String(await freeUdpPort()),
      CONFLUX_MQTT_PORT: String(await freePort()),
    });
  });
  const ctx = usePlatform(() => ({ ...ports, CONFLUX_AMQP_URL: amqpUrl(), CONFLUX_WEBHOOK_URL: rx.url, CONFLUX_WEBHOOK_SECRET: OUT_SECRET }));

  const read = (file: string) => JSON.parse(fs.readFileSync(path.join(root, 'flows', file), 'utf8')) as FlowNode[];
  const webhooks = read('seed-002-third-party-connections.json');
  const queues = read('seed-004-cloud-logger.json');
  const byName = (flow: FlowNode[], type: string, name?: string): FlowNode => {
    const n = flow.find((x) => x.type === type && (name === undefined || x.name === name));
    if (!n) throw new Error(`the flow has no ${type} ${name ?? ''}`);
    return n;
  };
  let sidebar: Awaited<ReturnType<typeof debugSidebar>>;
  let conn: amqplib.ChannelModel;
  let ch: amqplib.Channel;

  before(async () => {
    const base = ctx.platform.base;
    const v2 = { 'Node-RED-API-Version': 'v2' };
    const current = (await (await fetch(`${base}/flows`, { headers: { ...v2, Accept: 'application/json' } })).json()) as { rev: string; flows: FlowNode[] };
    // What an operator sets in the editor: loopback receivers allowed, and the partner's secret.
    const deployed = [...webhooks, ...queues].map((n) => {
      if (n.type === 'conflux-webhooks') return { ...n, allowPrivate: true };
      if (n.type === 'conflux-webhook-in') return { ...n, auth: 'signature', credentials: { secrets: IN_SECRET } };
      return n;
    });
    const res = await fetch(`${base}/flows`, {
      method: 'POST',
      headers: { ...v2, 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify({ rev: current.rev, flows: [...current.flows, ...deployed] }),
    });
    assert.equal(res.status, 200, await res.text());
    sidebar = await debugSidebar(ctx.platform);
    conn = await amqplib.connect(amqpUrl());
    ch = await conn.createChannel();
  });
  after(async () => {
    sidebar?.close();
    await conn?.close().catch(() => undefined);
  });

  const seen = (name: string, test: (e: DebugEvent) => boolean) => sidebar.events.some((e) => e.name === name && test(e));
  // On a failure, what the flow showed and logged is the first thing to read.
  afterEach(function () {
    if (this.currentTest?.state !== 'failed') return;
    console.log(JSON.stringify(sidebar?.events.slice(-20), null, 1).slice(0, 6000));
    console.log(ctx.platform.output().slice(-3000));
  });

  it('deploys with no unknown node and no error in the log', () => {
    const log = ctx.platform.output();
    assert.doesNotMatch(log, /unknown type|Waiting for missing types/i);
    assert.doesNotMatch(log, /\[error\]/);
  });

  it("delivers a reading's event to the subscribed webhook receiver, signed, and onto the customer's AMQP queue", async () => {
    await press(ctx.platform, byName(webhooks, 'inject', 'subscribe').id);
    await until('the subscription is created', () => seen('subscriptions and log', (e) => /webhook_subscriptions|"url"/.test(e.msg)));
    // Pressed again until the webhook-out node's subscription cache has the new row: the same
    // reading is the same event (one id), so repeats are stored once.
    const reading = byName(webhooks, 'inject', 'a reading (eapi_measurement_new)').id;
    await until(
      'the receiver gets reading.received',
      async () => {
        if (rx.received.some((r) => r.body.includes('"reading.received"'))) return true;
        await press(ctx.platform, reading);
        return rx.received.some((r) => r.body.includes('"reading.received"'));
      },
      90_000,
    );
    const delivery = rx.received.find((r) => r.body.includes('"reading.received"'))!;
    const event = new Webhook(OUT_SECRET).verify(delivery.body, delivery.headers as Record<string, string>) as {
      id: string;
      data: { records: { v: number }[] };
    };
    assert.equal(delivery.headers['webhook-id'], event.id);
    assert.equal(delivery.headers['x-sender'], 'conflux');
    assert.equal(event.data.records[0].v, 24.6);
    const ids = new Set(rx.received.filter((r) => r.body.includes('"reading.received"')).map((r) => JSON.parse(r.body).id));
    assert.equal(ids.size, 1, 'every press of the same reading is one event');

    // The same reading from seed 004's flow onto the customer's queue (which may carry device events as JSON too).
    await press(ctx.platform, byName(queues, 'inject', 'a reading (eapi_measurement_new)').id);
    const taken: amqplib.GetMessage[] = [];
    await until('customer.default holds the eapi_measurement_new', async () => {
      // A channel of its own each time: a get on a queue not declared yet closes the channel.
      const probe = await conn.createChannel();
      probe.on('error', () => undefined);
      try {
        for (let m = await probe.get('customer.default', { noAck: true }); m !== false; m = await probe.get('customer.default', { noAck: true })) taken.push(m);
        await probe.close();
      } catch {
        // not declared yet
      }
      return taken.some((m) => m.fields.routingKey === 'default.eapi_measurement_new');
    });
    const got = taken.find((m) => m.fields.routingKey === 'default.eapi_measurement_new')!;
    const body = JSON.parse(got.content.toString()) as { type: string; data: { value: number; deviceId: string } };
    assert.equal(body.type, 'eapi_measurement_new');
    assert.equal(body.data.value, 24.6);
    assert.equal(body.data.deviceId, '951FF00000340');
  });

  it("takes in a third party's signed webhook and an AMQP message, decoded into the canonical message", async () => {
    const partnerEvent = {
      id: 'evt_partner_1',
      type: 'vehicle.processed',
      tenant: 'default',
      occurredAt: '2026-03-02T08:15:00.000Z',
      subject: 'VIN123',
      data: { images: 24 },
    };
    const body = JSON.stringify(partnerEvent);
    const at = new Date();
    const headers = {
      'content-type': 'application/json',
      'webhook-id': 'msg_partner_1',
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': new Webhook(IN_SECRET).sign('msg_partner_1', at, body),
    };
    const res = await fetch(`${ctx.platform.base}/partners/webhooks`, { method: 'POST', headers, body });
    assert.equal(res.status, 202, await res.text());
    await until('the webhook reaches the flow', () => seen('came in', (e) => e.msg.includes('VIN123')));
    const bad = await fetch(`${ctx.platform.base}/partners/webhooks`, { method: 'POST', headers: { ...headers, 'webhook-id': 'msg_forged' }, body });
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('content-type') ?? '', /application\/problem\+json/);

    await until('amqp-in has declared partner.in', async () => {
      const probe = await conn.createChannel();
      probe.on('error', () => undefined);
      return probe.checkQueue('partner.in').then(
        () => probe.close().then(() => true),
        () => false,
      );
    });
    const eapi = {
      type: 'eapi_measurement_new',
      data: { timeStamp: '2026-03-02T09:00:00+00:00', value: 7.5, unit: '°C', unitType: 'temperature', deviceId: 'PARTNER0001', sensorId: '42' },
    };
    ch.sendToQueue('partner.in', Buffer.from(JSON.stringify(eapi)), { persistent: true, messageId: 'partner-amqp-1' });
    await until('the AMQP message reaches the flow', () => seen('came in (canonical)', (e) => e.msg.includes('PARTNER0001') && e.msg.includes('7.5')));
    assert.ok(!sidebar.events.some((e) => e.name === 'why'), 'nothing reached a Catch node');
  });
});
