/**
 * AMQP customer queues on the real RabbitMQ of the test servers, with the outbox on the real
 * PostgreSQL: conflux-amqp-out and conflux-amqp-in in Node-RED (node-red-node-test-helper), and
 * amqplib as the customer's client.
 *  - the eapi mapping round-trips: readings out as eapi_* messages, in again as the same records;
 *  - RabbitMQ restarted mid-stream: every accepted message arrives, none is lost;
 *  - TTL and dead-lettering, seen with rabbitmqctl on the broker;
 *  - a consumer flow that fails: retried, then dead-lettered, not lost; an undecodable body at once;
 *  - two consumers compete on one queue; a consumer whose queue is deleted comes back by itself.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { Mailbox } from '../../nodes/core/mailbox/mailbox';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { catchNode, helper } from '../support/node-red';
import { amqpUrl, freshDatabase, rabbitmqctl, startRabbitMQ, stopRabbitMQ } from '../support/servers';
import { until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import amqpNode = require('../../nodes/amqp/amqp');
import amqpOutNode = require('../../nodes/amqp/amqp-out');
import amqpInNode = require('../../nodes/amqp/amqp-in');
const functionNode = require('@node-red/nodes/core/function/10-function.js');

type Msg = Record<string, any>;
const NODES = [postgresNode, amqpNode, amqpOutNode, amqpInNode, functionNode, catchNode];
const T = 1_764_000_000;

const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

/** One eapi measurement reading of device d, sensor s, at T + i. */
const measurement = (i: number, device = 'dev1', sensor = 5368): ResolvedRecord[] => [
  { n: `${device}/${sensor}/temperature`, t: T + i, u: 'Cel', v: 20 + (i % 100) / 10 },
];

/** Collects what reaches a helper node. */
function collect(id: string): Msg[] {
  const got: Msg[] = [];
  helper.getNode(id).on('input', (m: Msg) => got.push(m));
  return got;
}

/** Every message now in a queue, taken (acknowledged) with basic.get. */
async function takeAll(queue: string): Promise<amqp.GetMessage[]> {
  const conn = await amqp.connect(amqpUrl());
  try {
    const ch = await conn.createChannel();
    const out: amqp.GetMessage[] = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (m === false) return out;
      out.push(m);
    }
  } finally {
    await conn.close();
  }
}

/** Messages ready in a queue; rejects when it does not exist. */
async function messageCount(queue: string): Promise<number> {
  const conn = await amqp.connect(amqpUrl());
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined); // a missing queue closes the channel: the rejection says it
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}

/** The rows of `rabbitmqctl list_queues name messages arguments` for our queues. */
function brokerQueues(prefix: string): Map<string, { messages: number; arguments: string }> {
  const rows = new Map<string, { messages: number; arguments: string }>();
  for (const line of rabbitmqctl('list_queues', 'name', 'messages', 'arguments').split('\n')) {
    const [name, messages, args] = line.split('\t');
    if (name?.startsWith(prefix)) rows.set(name, { messages: Number(messages), arguments: args ?? '' });
  }
  return rows;
}

describe('AMQP customer queues (RabbitMQ, outbox on PostgreSQL)', function () {
  this.timeout(120_000);
  let dbUrl: string;
  let sql: SqlClient;

  before(async () => {
    dbUrl = await freshDatabase();
    sql = await openSql({ connectionString: dbUrl, poolSize: 2 });
    await migrate(sql);
    await helper.startServer();
  });
  after(async () => {
    await sql?.close();
    await helper.stopServer();
  });
  afterEach(() => helper.unload());

  const base = (extra: Msg[] = []): Parameters<typeof helper.load>[1] =>
    [{ id: 'db', type: 'conflux-postgres', url: dbUrl }, { id: 'mq', type: 'conflux-amqp', urls: amqpUrl(), heartbeat: '5' }, ...extra] as Parameters<
      typeof helper.load
    >[1];

  it('round-trips the five eapi_* types: readings out, the same records in', async () => {
    const customer = unique('rt');
    await helper.load(
      NODES,
      base([
        { id: 'out', type: 'conflux-amqp-out', amqp: 'mq', database: 'db', customer, wires: [['sent']] },
        { id: 'sent', type: 'helper' },
        { id: 'in', type: 'conflux-amqp-in', amqp: 'mq', queue: `customer.${customer}`, codec: 'eapi', tenant: 'acme', wires: [['got']] },
        { id: 'got', type: 'helper' },
      ]),
    );
    const got = collect('got');
    const sent = collect('sent');
    const records: ResolvedRecord[] = [
      { n: '951FF00000340/5368/temperature', t: T, u: 'Cel', v: 24.6 },
      { n: '951FF00000340/5369/latitude', t: T + 1, u: 'lat', v: 47.19999075 },
      { n: '951FF00000340/5369/longitude', t: T + 1, u: 'lon', v: 9.50875282 },
      { n: '951FF00000340/5369/accuracy', t: T + 1, u: 'm', v: 2316 },
      { n: '951FF00000340/5369/LoggerStatusChange', t: T + 2, vs: 'LogDelayed' },
      { n: '951FF00000340/5369/LoggerStatusChange/previous', t: T + 2, vs: 'Start' },
      { n: '951FF00000340/5763/deviation/limit', t: T + 3, vb: true },
      { n: '951FF00000340/5763/deviation/limit/reason', t: T + 3, vs: 'upper_limit_alarm' },
      { n: '951FF00000340/5763/deviation/limit', t: T + 4, vb: false },
      { n: '951FF00000340/5763/deviation/limit/reason', t: T + 4, vs: 'upper_limit_alarm' },
    ];
    helper.getNode('out').receive({ payload: records, device: { tenant: 'acme', id: '951FF00000340' } });
    await until('five messages through the queue', () => got.length === 5);
    assert.equal(sent[0].messageIds.length, 5);
    const keys = got.map((m) => m.amqp.routingKey).sort();
    assert.deepEqual(
      keys,
      ['deviation_enter', 'deviation_leave', 'geodata_new', 'measurement_new', 'occurrence_new'].map((t) => `${customer}.eapi_${t}`),
    );
    const back = got.flatMap((m) => m.payload as ResolvedRecord[]);
    const key = (r: ResolvedRecord) => JSON.stringify([r.n, r.t, r.v, r.vs, r.vb, r.u]);
    assert.deepEqual(back.map(key).sort(), records.map(key).sort());
    assert.deepEqual(got.map((m) => m.messageId).sort(), [...sent[0].messageIds].sort(), 'the ids consumers see are the ones the out node gave');
    assert.deepEqual(got[0].device, { tenant: 'acme', id: '951FF00000340' });
    assert.equal(got[0].source.format, 'eapi');

    // The same reading sent again gets the same ids: a consumer (and the outbox) de-duplicate on them.
    helper.getNode('out').receive({ payload: records, device: { tenant: 'acme', id: '951FF00000340' } });
    await until('the second answer', () => sent.length === 2);
    assert.deepEqual(sent[1].messageIds, sent[0].messageIds);
  });

  it('RabbitMQ restarted mid-stream: every accepted message arrives', async function () {
    this.timeout(240_000);
    const customer = unique('restart');
    const TOTAL = 3_000;
    await helper.load(
      NODES,
      base([
        { id: 'out', type: 'conflux-amqp-out', amqp: 'mq', database: 'db', customer, wires: [['sent']] },
        { id: 'sent', type: 'helper' },
      ]),
    );
    const sent = collect('sent');
    const out = helper.getNode('out');
    const box = new Mailbox(sql, 'outbox');
    // A first message declares the queue; then the stream.
    out.receive({ payload: measurement(0), device: { tenant: 'acme' } });
    await until('the queue declared', async () => (await messageCount(`customer.${customer}`).catch(() => -1)) === 1);
    let i = 1;
    const feed = async (upTo: number) => {
      for (; i < upTo; i++) {
        out.receive({ payload: measurement(i), device: { tenant: 'acme' } });
        if (i % 100 === 0) await until('the outbox to keep up', () => sent.length >= i - 500);
      }
    };
    await feed(TOTAL / 3);
    const stopping = stopRabbitMQ(); // while the first third is still being published
    let depthDown: number | undefined;
    let starting: Promise<void> | undefined;
    try {
      await feed(TOTAL / 2);
      await stopping;
      await feed((TOTAL * 3) / 4); // accepted into the outbox while the broker is down
      await until('the last accepted into the outbox', () => sent.length === (TOTAL * 3) / 4);
      depthDown = await box.depth('amqp:out');
    } finally {
      await stopping.catch(() => undefined);
      starting = startRabbitMQ(); // whatever happened above: the later tests need the broker
    }
    assert.ok(depthDown !== undefined && depthDown >= TOTAL / 4, `messages wait in the outbox while RabbitMQ is down (${depthDown})`);
    await feed(TOTAL); // and while it starts
    await starting;
    await until(`all ${TOTAL} accepted`, () => sent.length === TOTAL);
    await until('the outbox empty', async () => (await box.depth('amqp:out')) === 0, 120_000);
    const expected = new Set(sent.flatMap((m) => m.messageIds as string[]));
    assert.equal(expected.size, TOTAL);
    const arrived = await takeAll(`customer.${customer}`);
    const ids = new Set(arrived.map((m) => m.properties.messageId as string));
    const missing = [...expected].filter((id) => !ids.has(id));
    assert.deepEqual(missing.length, 0, `${missing.length} of ${TOTAL} accepted messages never arrived`);
    assert.ok(
      arrived.every((m) => m.properties.deliveryMode === 2),
      'persistent',
    );
    console.log(
      `      ${TOTAL} accepted, ${depthDown} waiting in the outbox while RabbitMQ was down, ${arrived.length} delivered (${arrived.length - ids.size} duplicates, de-duplicated by message-id)`,
    );
  });

  it('expires messages after the TTL into the dead-letter queue, seen on the broker', async () => {
    const customer = unique('ttl');
    await helper.load(
      NODES,
      base([
        // 0.0004 h = 1.44 s
        { id: 'out', type: 'conflux-amqp-out', amqp: 'mq', database: 'db', customer, ttlHours: '0.0004', wires: [['sent']] },
        { id: 'sent', type: 'helper' },
      ]),
    );
    const sent = collect('sent');
    for (let i = 0; i < 5; i++) helper.getNode('out').receive({ payload: measurement(i), device: { tenant: 'acme' } });
    await until('accepted', () => sent.length === 5);
    const q = `customer.${customer}`;
    await until(
      'the five messages expired into the dead-letter queue',
      () => {
        const rows = brokerQueues(q);
        return rows.get(q)?.messages === 0 && rows.get(`${q}.dead`)?.messages === 5;
      },
      60_000,
    );
    const rows = brokerQueues(q);
    assert.match(rows.get(q)!.arguments, /x-message-ttl.*1440/);
    assert.match(rows.get(q)!.arguments, /x-dead-letter-exchange.*conflux\.dlx/);
    const dead = await takeAll(`${q}.dead`);
    assert.equal(dead.length, 5);
    const death = (dead[0].properties.headers?.['x-death'] as unknown as Array<Record<string, unknown>>)[0];
    assert.equal(death.reason, 'expired');
    assert.equal(death.queue, q);
    assert.equal(dead[0].fields.routingKey, `${customer}.eapi_measurement_new`);
  });

  it('a consumer flow that fails: retried, then dead-lettered with the reason, none lost; an undecodable body at once', async () => {
    const customer = unique('fail');
    const q = `customer.${customer}`;
    await helper.load(
      NODES,
      base([
        { id: 'out', type: 'conflux-amqp-out', amqp: 'mq', database: 'db', customer, wires: [[]] },
        { id: 'in', type: 'conflux-amqp-in', amqp: 'mq', queue: q, codec: 'eapi', maxRetries: '2', wires: [['check']] },
        // Refuses the reading at T + 13, keeps the others.
        {
          id: 'check',
          type: 'function',
          func: 'if (msg.payload[0].t === ' + (T + 13) + ') throw new Error("refused by the flow"); return msg;',
          outputs: 1,
          wires: [['got']],
        },
        { id: 'got', type: 'helper' },
        { id: 'c1', type: 'catch', scope: ['in'], uncaught: false, wires: [['caught']] },
        { id: 'caught', type: 'helper' },
      ]),
    );
    const got = collect('got');
    const caught = collect('caught');
    for (let i = 10; i < 16; i++) helper.getNode('out').receive({ payload: measurement(i), device: { tenant: 'acme' } });
    await until('five kept', () => got.length === 5);
    await until('the refused one dead-lettered', async () => (await messageCount(`${q}.dead`)) === 1);
    // A body that is no eapi message: dead-lettered without retries, reported to Catch.
    const conn = await amqp.connect(amqpUrl());
    try {
      const ch = await conn.createConfirmChannel();
      ch.sendToQueue(q, Buffer.from('{"type":"eapi_nonsense"}'), { messageId: 'garbage-1' });
      await ch.waitForConfirms();
    } finally {
      await conn.close();
    }
    await until('the undecodable one dead-lettered', async () => (await messageCount(`${q}.dead`)) === 2);
    await until('reported to Catch', () => caught.length === 1);
    assert.match(caught[0].error.message, /cannot be decoded as eapi/);
    assert.equal(await messageCount(q), 0, 'nothing left behind');
    const dead = await takeAll(`${q}.dead`);
    const refused = dead.find((m) => m.properties.messageId !== 'garbage-1')!;
    assert.equal(refused.properties.headers?.['x-conflux-retries'], 2);
    assert.match(String(refused.properties.headers?.['x-conflux-error']), /refused by the flow/);
    assert.equal((refused.properties.headers?.['x-death'] as unknown as Array<Record<string, unknown>>)[0].reason, 'rejected');
    assert.equal(JSON.parse(refused.content.toString()).data.timeStamp, new Date((T + 13) * 1000).toISOString().replace('.000Z', '+00:00'));
    const garbage = dead.find((m) => m.properties.messageId === 'garbage-1')!;
    assert.equal(garbage.properties.headers?.['x-conflux-retries'], undefined, 'not retried');
  });

  it('two consumers compete on one queue, each message to one; a consumer whose queue is deleted comes back', async () => {
    const customer = unique('compete');
    const q = `customer.${customer}`;
    await helper.load(
      NODES,
      base([
        { id: 'out', type: 'conflux-amqp-out', amqp: 'mq', database: 'db', customer, wires: [[]] },
        { id: 'in1', type: 'conflux-amqp-in', amqp: 'mq', queue: q, prefetch: '10', wires: [['got1']] },
        { id: 'in2', type: 'conflux-amqp-in', amqp: 'mq', queue: q, prefetch: '10', wires: [['got2']] },
        { id: 'got1', type: 'helper' },
        { id: 'got2', type: 'helper' },
      ]),
    );
    const got1 = collect('got1');
    const got2 = collect('got2');
    const got: Msg[] = [];
    for (const id of ['got1', 'got2']) helper.getNode(id).on('input', (m: Msg) => got.push(m));
    for (let i = 0; i < 400; i++) helper.getNode('out').receive({ payload: measurement(i), device: { tenant: 'acme' } });
    await until('400 received', () => got.length === 400);
    const ids = got.map((m) => m.messageId);
    assert.equal(new Set(ids).size, 400, 'each message once');
    assert.ok(got1.length > 0 && got2.length > 0, `both consumers took some (${got1.length} and ${got2.length})`);

    // The queue deleted under the consumers: they are cancelled, and subscribe again once it is back.
    const conn = await amqp.connect(amqpUrl());
    try {
      const ch = await conn.createChannel();
      await ch.deleteQueue(q);
    } finally {
      await conn.close();
    }
    helper.getNode('out').receive({ payload: measurement(1_000), device: { tenant: 'acme' } }); // declares the queue again
    await until('the message after the deletion received', () => got.length === 401, 60_000);
    assert.equal(got[400].payload[0].t, T + 1_000);
  });
});
