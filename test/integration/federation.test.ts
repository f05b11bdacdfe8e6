/**
 * The federation's jobs around the XMPP nodes, in a real Node-RED flow on the real PostgreSQL, with
 * a legacy "local system" on loopback (test/support/local-system.ts):
 *
 *   - seed 003's entities managed from a flow (conflux-business), tenant by tenant;
 *   - Push Outbox (conflux-federation-push): per consumer, the readings its user may see and it
 *     selects, one message per datum and consumer addressed to the target App's JID, ids mapped, the
 *     Sen1 header filled; a stable message id; never the same reading twice, across a failed flow
 *     and a restart of Node-RED on the same database;
 *   - delivery (conflux-federation-deliver): an incoming message written with the credentials of
 *     the user it names (a password, or a secret_ref naming an environment variable), ids mapped
 *     back; a local system that fails or is down fails the message (done(err)), so conflux-xmpp-in
 *     keeps it in its inbox.
 *
 * A `test-outbox` node stands where conflux-xmpp-out goes: it completes a message (stored) or fails it.
 */
import { strict as assert } from 'node:assert';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore, createTenant, type BusinessStore } from '../../nodes/core/stores/business';
import { SETTINGS_KEY } from '../../nodes/core/federation/settings';
import { LocalSystem } from '../support/local-system';
import { catchNode, helper, nextMessage } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import businessNode = require('../../nodes/storage/business');
import pushNode = require('../../nodes/federation/federation-push');
import deliverNode = require('../../nodes/federation/federation-deliver');

type Msg = Record<string, any>;

let outbox: 'store' | 'fail' = 'store';
function testNodes(RED: NodeAPI): void {
  RED.nodes.registerType('test-outbox', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (msg, send, done) => {
      if (outbox === 'fail') return done(new Error('the outbox refuses this message'));
      send(msg);
      done();
    });
  });
}

const NODES = [postgresNode, businessNode, pushNode, deliverNode, testNodes, catchNode];
const BOB_SECRET_ENV = 'CONFLUX_TEST_FED_BOB_PW';

interface Ids {
  legacy: number;
  partner: number;
  other: number;
  alice: number;
  bob: number;
  consumers: number[];
}

describe('federation: consumers, Push Outbox and delivery (PostgreSQL)', function () {
  this.timeout(60_000);
  let url: string;
  let local: LocalSystem;
  let sql: SqlClient;
  let store: BusinessStore;
  let ids: Ids;
  let sent: Msg[];
  let caught: Msg[];

  const flow = () => [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url },
    { id: 'push', type: 'conflux-federation-push', z: 'tab', database: 'db', tenant: 'acme', timeout: '5', wires: [['outbox']] },
    { id: 'outbox', type: 'test-outbox', z: 'tab', wires: [['sent']] },
    { id: 'sent', type: 'helper', z: 'tab' },
    { id: 'deliver', type: 'conflux-federation-deliver', z: 'tab', database: 'db', tenant: 'acme', timeout: '5', wires: [['delivered']] },
    { id: 'delivered', type: 'helper', z: 'tab' },
    { id: 'biz', type: 'conflux-business', z: 'tab', database: 'db', tenant: 'acme', wires: [['bizout']] },
    { id: 'bizout', type: 'helper', z: 'tab' },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];

  async function start(): Promise<void> {
    await helper.load(NODES, flow() as never);
    sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
    store = createBusinessStore(sql);
    sent = [];
    caught = [];
    helper.getNode('sent').on('input', (msg: Msg) => sent.push(msg));
    helper.getNode('caught').on('input', (msg: Msg) => caught.push(msg));
  }

  /** Hands msg to a node and resolves when that node has completed it: the error, or undefined. */
  function complete(nodeId: string, msg: Msg): Promise<Error | undefined> {
    const node = helper.getNode(nodeId) as unknown as Node & { receive(msg: Msg): void };
    const hooks = (helper as unknown as { _RED: { hooks: { add(n: string, f: (e: any) => void): void; remove(n: string): void } } })._RED.hooks;
    const id = `m-${Math.random().toString(36).slice(2)}`;
    return new Promise((resolve) => {
      const name = `onComplete.fed-test-${id}`;
      hooks.add(name, (e: { msg?: Msg; node?: { id?: string }; error?: Error }) => {
        if (e.node?.id !== nodeId || e.msg?._msgid !== id) return;
        hooks.remove(name);
        resolve(e.error);
      });
      node.receive({ ...msg, _msgid: id });
    });
  }

  before(async () => {
    process.env[BOB_SECRET_ENV] = 'bob-pw';
    local = await LocalSystem.start({ alice: 'alice-pw', bob: 'bob-pw' });
    url = await freshDatabase();
    await start();
    await createTenant(sql, { id: 'acme', name: 'Acme' });
    await createTenant(sql, { id: 'globex', name: 'Globex' });
    await sql.query('INSERT INTO config (tenant_id, key, value) VALUES ($1, $2, $3::jsonb)', [
      'acme',
      SETTINGS_KEY,
      JSON.stringify({ application: 'legacy', baseUrl: local.url, pageSize: 2 }),
    ]);
    const app = async (name: string, jid: string) => (await store.create('acme', 'applications', { name, jid })).id as number;
    const legacy = await app('legacy', 'proxy-a@fed.example');
    const partner = await app('partner', 'proxy-b@fed.example');
    const other = await app('other', 'proxy-c@fed.example');
    const alice = (await store.create('acme', 'users', { username: 'alice', federation_id: 'alice@fed' })).id as number;
    const bob = (await store.create('acme', 'users', { username: 'bob', federation_id: 'bob@fed' })).id as number;
    await store.create('acme', 'user_applications', { user_id: alice, application_id: legacy, login: 'alice', password: 'alice-pw' });
    await store.create('acme', 'user_applications', { user_id: bob, application_id: legacy, login: 'bob', secret_ref: BOB_SECRET_ENV });
    const consumer = async (data: Record<string, unknown>) => (await store.create('acme', 'consumers', data)).id as number;
    ids = {
      legacy,
      partner,
      other,
      alice,
      bob,
      consumers: [
        await consumer({
          user_id: alice,
          target_application_id: partner,
          source: { objects: ['5368'], names: ['temperature'] },
          mapping: { '5368': 'room-1' },
        }),
        await consumer({ user_id: bob, target_application_id: other, source: { names: ['humidity'] } }),
        await consumer({ user_id: alice, target_application_id: other, source: { objects: ['9'] }, enabled: false }),
      ],
    };
  });
  after(async () => {
    delete process.env[BOB_SECRET_ENV];
    await helper.unload();
    await local?.down();
  });

  it('manages seed 003’s entities from a flow, each tenant seeing only its own', async () => {
    const biz = async (msg: Msg) => {
      const out = nextMessage('bizout');
      const err = await complete('biz', msg);
      if (err) throw err;
      return (await out).payload as Msg;
    };
    const app = await biz({ action: 'create', entity: 'applications', payload: { name: 'crm', jid: 'crm@fed.example' } });
    const user = await biz({ action: 'create', entity: 'users', payload: { username: 'carol', federation_id: 'carol@fed' } });
    const login = await biz({
      action: 'create',
      entity: 'user_applications',
      payload: { user_id: user.id, application_id: app.id, login: 'carol', password: 'c-pw' },
    });
    assert.equal(login.has_password, true);
    assert.ok(!JSON.stringify(login).includes('c-pw'), 'the password is never returned');
    const consumer = await biz({
      action: 'create',
      entity: 'consumers',
      payload: { user_id: user.id, user_application_id: login.id, target_application_id: app.id, source: { names: ['co2'] }, mapping: { a: 'b' } },
    });
    assert.deepEqual((await biz({ action: 'read', entity: 'consumers', id: consumer.id })).mapping, { a: 'b' });
    assert.equal((await biz({ action: 'update', entity: 'consumers', id: consumer.id, payload: { enabled: false } })).enabled, false);
    const settings = await biz({ action: 'read', entity: 'config', id: SETTINGS_KEY });
    assert.equal(settings.value.application, 'legacy');

    // Another tenant neither sees nor reaches them.
    const err = await complete('biz', { action: 'read', entity: 'consumers', id: consumer.id, tenant: 'globex' });
    assert.match(String(err?.message), /no row with id .* in this tenant/);
    const globexList = await biz({ action: 'list', entity: 'applications', tenant: 'globex' });
    assert.deepEqual(globexList, []);
    const refused = await complete('biz', {
      action: 'create',
      entity: 'consumers',
      tenant: 'globex',
      payload: { user_id: user.id, target_application_id: app.id, source: {} },
    });
    assert.ok(refused, 'a consumer cannot point at another tenant’s user');

    await biz({ action: 'delete', entity: 'users', id: user.id }); // its login and consumer go with it
    assert.deepEqual(await biz({ action: 'list', entity: 'consumers', filter: { user_id: user.id } }), []);
    await biz({ action: 'delete', entity: 'applications', id: app.id });
  });

  it('Push Outbox: one message per datum and consumer, to the target’s JID, ids mapped, Sen1 header filled, stable ids', async () => {
    const t1 = local.add({ object: '5368', name: 'temperature', value: 21.5, unit: 'Cel', owner: 'alice' });
    local.add({ object: '5368', name: 'pressure', value: 1013, unit: 'hPa' }); // nobody's consumer takes it
    const h1 = local.add({ object: '5368', name: 'humidity', value: 40, unit: '%RH', owner: 'bob' });
    const t2 = local.add({ object: '5368', name: 'temperature', value: 22, unit: 'Cel', owner: 'alice' });
    local.add({ object: '5368', name: 'temperature', value: 99, unit: 'Cel', owner: 'bob' }); // alice cannot see it
    const h2 = local.add({ object: '7', name: 'humidity', value: 'high', owner: 'bob' });
    local.add({ object: '9', name: 'temperature', value: true }); // the disabled consumer's

    assert.equal(await complete('push', { payload: 'tick' }), undefined);
    const summary = sent.map((m) => [m.to, m.payload[0].n, m.federation.datum]);
    assert.deepEqual(summary, [
      ['proxy-b@fed.example', 'room-1/temperature', String(t1.id)],
      ['proxy-b@fed.example', 'room-1/temperature', String(t2.id)],
      ['proxy-c@fed.example', '5368/humidity', String(h1.id)],
      ['proxy-c@fed.example', '7/humidity', String(h2.id)],
    ]);
    assert.deepEqual(sent[0].payload, [{ n: 'room-1/temperature', t: Date.parse(t1.time) / 1000, v: 21.5, u: 'Cel' }]);
    assert.deepEqual(sent[0].sen1, {
      username: 'alice@fed',
      name: 'room-1/temperature',
      type: 'dt_numeric',
      unite: 'Cel',
      applicationSrc: 'legacy',
      applicationDst: 'partner',
    });
    assert.deepEqual(sent[3].sen1, { username: 'bob@fed', name: '7/humidity', type: 'dt_string', applicationSrc: 'legacy', applicationDst: 'other' });
    assert.equal(new Set(sent.map((m) => m.messageId)).size, 4, 'one id per datum and consumer');
    // Each user's readings were asked for with that user's login (bob's password from secret_ref).
    assert.ok((local.reads.get('alice') ?? 0) >= 1 && (local.reads.get('bob') ?? 0) >= 1);

    const { rows } = await sql.query<{ key: string; watermark: unknown }>("SELECT key, watermark FROM pull_sources WHERE tenant_id = 'acme' ORDER BY key");
    assert.deepEqual(rows, [
      { key: `federation/consumer/${ids.consumers[0]}`, watermark: t2.id },
      { key: `federation/consumer/${ids.consumers[1]}`, watermark: h2.id },
    ]);
  });

  it('Push Outbox: a failed outbox leaves the watermark (the same ids come again), and a restart takes nothing twice', async () => {
    const before = sent.length;
    const t3 = local.add({ object: '5368', name: 'temperature', value: 23, unit: 'Cel', owner: 'alice' });
    outbox = 'fail';
    try {
      const err = await complete('push', { payload: 'tick' });
      assert.match(String(err?.message), new RegExp(`consumer ${ids.consumers[0]}: .*refuses`));
    } finally {
      outbox = 'store';
    }
    assert.equal(sent.length, before, 'nothing passed the outbox');

    // Node-RED restarts on the same database.
    await helper.unload();
    await start();
    assert.equal(await complete('push', { payload: 'tick' }), undefined);
    assert.deepEqual(
      sent.map((m) => m.federation.datum),
      [String(t3.id)],
      'only the reading the outbox refused, and nothing taken before the restart',
    );
    const again = sent[0].messageId;
    assert.equal(await complete('push', { payload: 'tick' }), undefined);
    assert.equal(sent.length, 1, 'a run with nothing new sends nothing');

    // The id is the datum's and the consumer's: re-sending after a reset gives the same ids.
    await sql.query('DELETE FROM pull_sources WHERE key = $1', [`federation/consumer/${ids.consumers[0]}`]);
    assert.equal(await complete('push', { payload: 'tick' }), undefined);
    assert.ok(
      sent.slice(1).some((m) => m.messageId === again),
      'the same datum is the same message id',
    );
  });

  it('Push Outbox: a consumer with a wrong password or a wrong mapping fails alone, the others go on', async () => {
    const carl = (await store.create('acme', 'users', { username: 'carl', federation_id: 'carl@fed' })).id as number;
    await store.create('acme', 'user_applications', { user_id: carl, application_id: ids.legacy, login: 'alice', password: 'wrong' });
    const wrongPassword = (await store.create('acme', 'consumers', { user_id: carl, target_application_id: ids.partner, source: {} })).id as number;
    const wrongMapping = (
      await store.create('acme', 'consumers', {
        user_id: ids.alice,
        target_application_id: ids.other,
        source: { objects: ['8'] },
        mapping: { '8': 'room eight' },
      })
    ).id as number;
    try {
      local.add({ object: '8', name: 'co2', value: 410 });
      const t4 = local.add({ object: '5368', name: 'temperature', value: 24, unit: 'Cel', owner: 'alice' });
      const count = sent.length;
      const err = await complete('push', { payload: 'tick' });
      assert.match(String(err?.message), new RegExp(`consumer ${wrongPassword}: .*401`));
      assert.match(String(err?.message), new RegExp(`consumer ${wrongMapping}: .*room eight`));
      assert.deepEqual(
        sent.slice(count).map((m) => m.federation),
        [{ consumer: ids.consumers[0], datum: String(t4.id) }],
      );
      const { rows } = await sql.query('SELECT key FROM pull_sources WHERE key = ANY($1)', [
        [`federation/consumer/${wrongPassword}`, `federation/consumer/${wrongMapping}`],
      ]);
      assert.deepEqual(rows, [], 'the failing consumers took nothing');
    } finally {
      await store.delete('acme', 'users', carl);
      await store.delete('acme', 'consumers', wrongMapping);
    }
    assert.equal(await complete('push', { payload: 'tick' }), undefined);
  });

  it('delivers an incoming message with the named user’s credentials, ids mapped back', async () => {
    const t = 1_767_225_600; // 2026-01-01T00:00:00Z
    const passed = nextMessage('delivered');
    const err = await complete('deliver', {
      payload: [{ n: 'room-1/temperature', t, v: 19.5, u: 'Cel' }],
      sen1: { username: 'alice@fed', name: 'room-1/temperature', type: 'dt_numeric' },
      xmpp: { from: 'proxy-b@fed.example/instance-1', to: 'proxy-a@fed.example', id: 'stanza-1' },
      messageId: 'stanza-1',
    });
    assert.equal(err, undefined);
    assert.deepEqual(local.ingested.at(-1), {
      login: 'alice',
      messageId: 'stanza-1',
      user: 'alice@fed',
      items: [{ object: '5368', name: 'temperature', value: 19.5, unit: 'Cel', time: '2026-01-01T00:00:00.000Z' }],
    });
    assert.deepEqual((await passed).federation, { delivered: 1, user: ids.alice, login: 'alice' });

    // Bob's password is the environment variable his secret_ref names; no mapping towards this sender.
    assert.equal(
      await complete('deliver', {
        payload: [{ n: 'room-1/humidity', t, vs: 'dry' }],
        sen1: { username: 'bob@fed' },
        xmpp: { from: 'proxy-b@fed.example' },
        messageId: 'stanza-2',
      }),
      undefined,
    );
    assert.deepEqual(local.ingested.at(-1), {
      login: 'bob',
      messageId: 'stanza-2',
      user: 'bob@fed',
      items: [{ object: 'room-1', name: 'humidity', value: 'dry', time: '2026-01-01T00:00:00.000Z' }],
    });
  });

  it('fails the message when the local system fails, is down or the user is unknown, so it stays in the inbox', async () => {
    const msg = { payload: [{ n: 'room-1/temperature', t: 1_767_225_600, v: 18 }], sen1: { username: 'alice@fed' }, xmpp: { from: 'proxy-b@fed.example' } };
    const count = local.ingested.length;
    local.failIngest = true;
    try {
      const err = await complete('deliver', { ...msg, messageId: 'stanza-3' });
      assert.match(String(err?.message), /answered 503/);
    } finally {
      local.failIngest = false;
    }
    assert.equal(local.ingested.length, count);
    await until('a Catch node sees the failure', () => caught.some((m) => m.messageId === 'stanza-3'));

    await local.down();
    try {
      assert.match(String((await complete('deliver', { ...msg, messageId: 'stanza-4' }))?.message), /did not answer/);
    } finally {
      await local.up();
    }
    assert.match(String((await complete('deliver', { ...msg, sen1: { username: 'mallory@fed' } }))?.message), /no user with federation id/);

    // The retry (conflux-xmpp-in's Fetch Inbox) succeeds once the local system is back.
    assert.equal(await complete('deliver', { ...msg, messageId: 'stanza-3' }), undefined);
    assert.equal(local.ingested.at(-1)?.messageId, 'stanza-3');
  });
});
