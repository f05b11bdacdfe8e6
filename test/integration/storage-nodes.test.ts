/**
 * The storage nodes as an integrator wires them, on the embedded defaults (PGlite in memory,
 * in-process cache) and on the real PostgreSQL and Redis started for the tests.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { catchNode, helper } from '../support/node-red';
import { root } from '../support/platform';
import { until } from '../support/wait';
import { freshDatabase, redisUrl } from '../support/servers';
import postgresNode = require('../../nodes/storage/postgres');
import redisNode = require('../../nodes/storage/redis');
import shortTermNode = require('../../nodes/storage/short-term');
import timeSeriesNode = require('../../nodes/storage/time-series');
import longTermNode = require('../../nodes/storage/long-term');
import businessNode = require('../../nodes/storage/business');
import mailboxNode = require('../../nodes/storage/mailbox');

const NODES = [postgresNode, redisNode, shortTermNode, timeSeriesNode, longTermNode, businessNode, mailboxNode, catchNode];
const T = Date.UTC(2026, 0, 5, 10) / 1000;
type Msg = Record<string, any>;

interface Setup {
  name: string;
  db(): Promise<Record<string, unknown>>;
  cache(): Record<string, unknown>;
}

const SETUPS: Setup[] = [
  { name: 'embedded defaults', db: async () => ({ url: '' }), cache: () => ({ url: '' }) },
  { name: 'PostgreSQL and Redis', db: async () => ({ url: await freshDatabase() }), cache: () => ({ url: redisUrl(), keyPrefix: `t${Date.now()}:` }) },
];

/** A tier chain short-term → time-series → long-term, a business node and two mailboxes, each with its own output. */
async function flow(setup: Setup, extra: Record<string, Record<string, unknown>> = {}): Promise<helper.TestFlows> {
  return [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', ...(await setup.db()) },
    { id: 'cache', type: 'conflux-redis', mode: 'single', ...setup.cache() },
    { id: 'st', type: 'conflux-short-term', z: 'tab', cache: 'cache', wires: [['ts', 'st-out'], ['st-ans']], ...extra.st },
    { id: 'ts', type: 'conflux-time-series', z: 'tab', engine: 'sql', database: 'db', batchDelay: '20', wires: [['lt', 'ts-out'], ['ts-ans']], ...extra.ts },
    { id: 'lt', type: 'conflux-long-term', z: 'tab', database: 'db', batchDelay: '20', wires: [['lt-out'], ['lt-ans']] },
    { id: 'biz', type: 'conflux-business', z: 'tab', database: 'db', wires: [['biz-out']] },
    { id: 'mb-enqueue', type: 'conflux-mailbox', z: 'tab', database: 'db', mode: 'enqueue', box: 'outbox', queue: 'partner', wires: [['enq-out']] },
    {
      id: 'mb-drain',
      type: 'conflux-mailbox',
      z: 'tab',
      database: 'db',
      mode: 'drain',
      box: 'outbox',
      queue: 'partner',
      pollMs: '20',
      baseDelayMs: '10',
      maxDelayMs: '10',
      maxAttempts: '2',
      wires: [['delivered']],
    },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    ...['st-out', 'ts-out', 'lt-out', 'st-ans', 'ts-ans', 'lt-ans', 'biz-out', 'enq-out', 'delivered', 'caught'].map((id) => ({
      id,
      type: 'helper',
      z: 'tab',
    })),
  ] as helper.TestFlows;
}

/** Sends msg into node `to` and resolves with the next message reaching helper `at`. */
function ask(to: string, msg: Msg, at: string): Promise<Msg> {
  return new Promise((resolve) => {
    helper.getNode(at).once('input', resolve);
    helper.getNode(to).receive(msg);
  });
}

function collect(at: string, count: number): Promise<Msg[]> {
  const got: Msg[] = [];
  return new Promise((resolve) => {
    helper.getNode(at).on('input', (msg: Msg) => {
      got.push(msg);
      if (got.length === count) resolve(got);
    });
  });
}

const reading = (device: string, v: number, dt = 0) => ({
  payload: [
    { n: `${device}/temp/c`, t: T + dt, u: 'Cel', v },
    { n: `${device}/door/open`, t: T + dt, vb: v > 20 },
  ],
  device: { tenant: 'acme', id: device },
});

describe('storage nodes', () => {
  before(() => helper.startServer());
  after(() => helper.stopServer());

  for (const setup of SETUPS) {
    describe(`on ${setup.name}`, function () {
      this.timeout(30_000);
      afterEach(() => helper.unload());

      it('a canonical message passes short-term → time series → long-term, each storing it, and each answers queries', async () => {
        await helper.load(NODES, await flow(setup));
        const arrived = collect('lt-out', 3);
        helper.getNode('st').receive(reading('d1', 19));
        helper.getNode('st').receive(reading('d1', 23, 60));
        helper.getNode('st').receive(reading('d2', 5));
        await arrived;

        const latest = await ask('st', { query: { name: 'd1/temp/c' }, device: { tenant: 'acme' } }, 'st-ans');
        assert.deepEqual(latest.payload, { n: 'd1/temp/c', t: T + 60, u: 'Cel', v: 23 });
        const other = await ask('st', { query: { name: 'd1/temp/c' }, tenant: 'other' }, 'st-ans');
        assert.equal(other.payload, null, 'another tenant sees nothing');

        const series = await ask('ts', { query: { prefix: 'd1/', limit: 3 }, tenant: 'acme' }, 'ts-ans');
        assert.deepEqual(
          series.payload.map((r: Msg) => [r.n, r.t]),
          [
            ['d1/door/open', T],
            ['d1/temp/c', T],
            ['d1/door/open', T + 60],
          ],
        );
        assert.equal(typeof series.cursor, 'string');
        const rest = await ask('ts', { query: { prefix: 'd1/', limit: 3, cursor: series.cursor }, tenant: 'acme' }, 'ts-ans');
        assert.deepEqual(
          rest.payload.map((r: Msg) => [r.n, r.t, r.v]),
          [['d1/temp/c', T + 60, 23]],
        );

        const all = await ask('ts', { query: { prefix: '' }, tenant: 'acme' }, 'ts-ans');
        assert.equal(all.payload.length, 6, 'answers to queries were not stored as readings');
        const rollup = await ask('lt', { query: { name: 'd1/temp/c', size: 'hour' }, tenant: 'acme' }, 'lt-ans');
        assert.equal(rollup.payload.length, 1);
        assert.deepEqual((({ count, min, max, sum, avg, last }) => ({ count, min, max, sum, avg, last }))(rollup.payload[0]), {
          count: 2,
          min: 19,
          max: 23,
          sum: 42,
          avg: 21,
          last: 23,
        });
      });

      it('a message sent twice is stored once and counted once: time series rolls up what is new, long-term passes it on', async () => {
        await helper.load(NODES, await flow(setup));
        const arrived = collect('lt-out', 3);
        helper.getNode('st').receive(reading('d1', 19));
        // The device did not see the acknowledgement and sends the same readings again, and a new one.
        helper.getNode('st').receive(reading('d1', 19));
        helper.getNode('st').receive(reading('d1', 23, 60));
        const out = await arrived;
        const db = helper.getNode('db') as unknown as { identity: string };
        assert.ok(
          out.every((m) => m.rolledUp === db.identity),
          'marked with the database whose rollups hold them',
        );

        const all = await ask('ts', { query: { prefix: 'd1/' }, tenant: 'acme' }, 'ts-ans');
        assert.equal(all.payload.length, 4, 'two records, twice over, and two new ones: four stored');
        const rollup = await ask('lt', { query: { name: 'd1/temp/c', size: 'hour' }, tenant: 'acme' }, 'lt-ans');
        assert.deepEqual((({ count, sum, last }) => ({ count, sum, last }))(rollup.payload[0]), { count: 2, sum: 42, last: 23 });
      });

      it('with rolling up off, the time series stores once and the long-term node counts what reaches it', async () => {
        await helper.load(NODES, await flow(setup, { ts: { rollups: false } }));
        const arrived = collect('lt-out', 2);
        helper.getNode('st').receive(reading('d1', 19));
        helper.getNode('st').receive(reading('d1', 19));
        const out = await arrived;
        assert.ok(out.every((m) => m.rolledUp === undefined));
        assert.equal((await ask('ts', { query: { prefix: 'd1/' }, tenant: 'acme' }, 'ts-ans')).payload.length, 2);
        const rollup = await ask('lt', { query: { name: 'd1/temp/c', size: 'hour' }, tenant: 'acme' }, 'lt-ans');
        assert.equal(rollup.payload[0].count, 2, 'the documented limit: long-term alone cannot tell a repeat');
      });

      it('a malformed message goes to Catch with the reason and the next one is stored', async () => {
        await helper.load(NODES, await flow(setup));
        const caught = new Promise<Msg>((resolve) => helper.getNode('caught').once('input', resolve));
        helper.getNode('ts').receive({ payload: [{ n: 'bad name!', t: T, v: 1 }], tenant: 'acme' });
        assert.match((await caught).error.message, /name/);
        await ask('ts', { payload: [{ n: 'ok/1', t: T, v: 1 }], tenant: 'acme' }, 'ts-out');
        const page = await ask('ts', { query: { name: 'ok/1' }, tenant: 'acme' }, 'ts-ans');
        assert.equal(page.payload.length, 1);
        const badQuery = new Promise<Msg>((resolve) => helper.getNode('caught').once('input', resolve));
        helper.getNode('ts').receive({ query: { name: 'x', limit: 0 } });
        assert.match((await badQuery).error.message, /limit/);
      });

      it('a full write queue sends the surplus to Catch instead of holding it', async () => {
        await helper.load(NODES, await flow(setup, { ts: { batchSize: '1', maxPending: '2', batchDelay: '0' } }));
        const caught: Msg[] = [];
        helper.getNode('caught').on('input', (m: Msg) => caught.push(m));
        const stored = collect('ts-out', 2);
        for (let i = 0; i < 10; i++) helper.getNode('ts').receive({ payload: [{ n: 'burst/x', t: T + i, v: i }], tenant: 'acme' });
        await stored;
        assert.equal(caught.length, 8);
        assert.match(caught[0].error.message, /queue full/);
        assert.deepEqual(
          caught.map((m) => m.payload[0].v),
          [2, 3, 4, 5, 6, 7, 8, 9],
          'the refused messages reach Catch whole',
        );
      });

      it('business: create, read, list and a tenant that cannot see another tenant’s device', async () => {
        await helper.load(NODES, await flow(setup));
        const created = await ask('biz', { action: 'create', entity: 'devices', payload: { serial: 'SN-1', name: 'boiler' }, tenant: 'default' }, 'biz-out');
        assert.equal(created.payload.serial, 'SN-1');
        const read = await ask('biz', { action: 'read', entity: 'devices', id: created.payload.id, tenant: 'default' }, 'biz-out');
        assert.equal(read.payload.name, 'boiler');
        const list = await ask('biz', { action: 'list', entity: 'devices', tenant: 'default' }, 'biz-out');
        assert.deepEqual(
          list.payload.map((d: Msg) => d.serial),
          ['SN-1'],
        );
        const caught = new Promise<Msg>((resolve) => helper.getNode('caught').once('input', resolve));
        helper.getNode('biz').receive({ action: 'read', entity: 'devices', id: created.payload.id, tenant: 'acme' });
        assert.match((await caught).error.message, /no row with id/);
      });

      it('mailbox: enqueued messages are drained, acked when they come back, retried and dead-lettered on msg.error', async () => {
        await helper.load(NODES, await flow(setup));
        const delivered = collect('delivered', 3);
        for (const id of ['a', 'b']) await ask('mb-enqueue', { payload: { id }, messageId: id, topic: 'orders' }, 'enq-out');
        await ask('mb-enqueue', { payload: Buffer.from([1, 2, 3]), messageId: 'bin' }, 'enq-out');
        await ask('mb-enqueue', { payload: { id: 'a', again: true }, messageId: 'a' }, 'enq-out'); // same id: not added twice
        const got = await delivered;
        assert.deepEqual(got.map((m) => m.messageId).sort(), ['a', 'b', 'bin']);
        assert.deepEqual(got.find((m) => m.messageId === 'a')!.payload, { id: 'a' });
        assert.equal(got.find((m) => m.messageId === 'a')!.topic, 'orders');
        assert.deepEqual(got.find((m) => m.messageId === 'bin')!.payload, Buffer.from([1, 2, 3]));

        // a and bin delivered; b failed twice: retried once, then a dead letter.
        const retried = new Promise<Msg>((resolve) => helper.getNode('delivered').once('input', resolve));
        const drain = helper.getNode('mb-drain');
        for (const m of got) drain.receive(m.messageId === 'b' ? { ...m, error: { message: 'peer said 503' } } : m);
        const again = await retried;
        assert.equal(again.messageId, 'b');
        assert.equal(again.mailbox.attempts, 2);
        drain.receive({ ...again, error: { message: 'peer said 503' } });
        const db = await (helper.getNode('db') as unknown as { sql(): Promise<import('../../nodes/core/db/sql').SqlClient> }).sql();
        await until('the dead letter', async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM dead_letters')).rows[0].n === 1);
        const left = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM outbox WHERE queue = 'partner'");
        const dead = await db.query<{ message_id: string; last_error: string }>('SELECT message_id, last_error FROM dead_letters');
        assert.equal(left.rows[0].n, 0);
        assert.deepEqual(dead.rows, [{ message_id: 'b', last_error: 'peer said 503' }]);
      });
    });
  }

  describe('a cache that is down (Redis unreachable)', function () {
    this.timeout(30_000);
    afterEach(() => helper.unload());
    const down = { name: 'Redis down', db: async () => ({ url: '' }), cache: () => ({ url: 'redis://127.0.0.1:1' }) };

    it('If the cache fails = pass (the default): the message goes on to the time series, the failure to Catch and the status', async () => {
      await helper.load(NODES, await flow(down));
      const caught = new Promise<Msg>((resolve) => helper.getNode('caught').once('input', resolve));
      const statuses: Array<{ fill?: string; text?: string }> = [];
      (helper.getNode('st') as any).on('call:status', (call: { args: [{ fill?: string; text?: string }] }) => statuses.push(call.args[0]));
      await ask('st', reading('d1', 19), 'ts-out');
      assert.match((await caught).error.message, /passed on without it/);
      // Once the connection was lost, the next ones fail at once rather than waiting for Redis.
      const t0 = Date.now();
      await ask('st', reading('d1', 20, 1), 'ts-out');
      assert.ok(Date.now() - t0 < 1_000, `the second write waited ${Date.now() - t0} ms`);
      const page = await ask('ts', { query: { name: 'd1/temp/c' }, tenant: 'acme' }, 'ts-ans');
      assert.equal(page.payload.length, 2, 'both stored by the time series');
      await until('a red status', () => statuses.some((st) => st.fill === 'red'));
    });

    it('If the cache fails = fail: the message goes to Catch with the reason, and no further', async () => {
      await helper.load(NODES, await flow(down, { st: { onFailure: 'fail' } }));
      const caught = new Promise<Msg>((resolve) => helper.getNode('caught').once('input', resolve));
      let passed = 0;
      helper.getNode('ts-out').on('input', () => passed++);
      helper.getNode('st').receive(reading('d1', 19));
      const msg = await caught;
      assert.doesNotMatch(msg.error.message, /passed on/);
      assert.deepEqual(msg.payload[0].v, 19, 'the message itself reaches Catch');
      assert.equal(passed, 0);
    });
  });
});

describe('example flow: business data and mailboxes', function () {
  this.timeout(30_000);
  const example = JSON.parse(fs.readFileSync(path.join(root, 'flows', 'business-and-mailboxes.json'), 'utf8')) as Msg[];
  const core = [
    require('@node-red/nodes/core/common/20-inject.js'),
    require('@node-red/nodes/core/common/21-debug.js'),
    require('@node-red/nodes/core/function/15-change.js'),
    require('@node-red/nodes/core/common/90-comment.js'),
  ];
  const named = (name: string) => example.find((n) => n.name === name)!.id as string;

  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(() => helper.unload());

  it('creates and lists a device, and an enqueued order is delivered and acknowledged', async () => {
    await helper.load([...NODES, ...core], example as helper.TestFlows);
    const db = await (
      helper.getNode(example.find((n) => n.type === 'conflux-postgres')!.id) as unknown as { sql(): Promise<import('../../nodes/core/db/sql').SqlClient> }
    ).sql();
    const delivered = new Promise<Msg>((resolve) => helper.getNode(named('delivered')).on('input', resolve));
    helper.getNode(named('create device SN-0001')).receive({});
    helper.getNode(named('an order for the partner')).receive({});
    const msg = await delivered;
    assert.deepEqual(msg.payload, { order: 42, qty: 3 });
    assert.equal(msg.topic, 'orders');
    await until('the delivered message acknowledged', async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox')).rows[0].n === 0);
    const left = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox');
    assert.equal(left.rows[0].n, 0, 'the delivered message was acknowledged');
    const devices = await db.query<{ serial: string }>('SELECT serial FROM devices');
    assert.deepEqual(
      devices.rows.map((r) => r.serial),
      ['SN-0001'],
    );
  });
});
