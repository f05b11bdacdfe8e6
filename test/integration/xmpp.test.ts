/**
 * XMPP federation through the real Prosody of the test servers, outbox and inbox on the real
 * PostgreSQL: conflux-xmpp-out as proxy alice, conflux-xmpp-in as proxy bob, in Node-RED
 * (node-red-node-test-helper).
 *  - Sen1Message and SenML XML bodies round-trip; the peer's receipts empty the outbox;
 *  - STARTTLS and direct TLS with the test CA;
 *  - Prosody stopped mid-stream and started again: every accepted message reaches bob's flow
 *    exactly once;
 *  - a wrong password and a server that is down: Node-RED keeps running, the status says why,
 *    messages wait in the outbox;
 *  - a stanza id sent twice is stored once and answered twice;
 *  - two resources of one JID (two instances of proxy bob, one database): each message reaches
 *    one flow once.
 * Prosody keeps messages for an offline bare JID (mod_offline) across tests: every test counts
 * only the ids it sent.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { Mailbox } from '../../nodes/core/mailbox/mailbox';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { XmppConnection } from '../../nodes/core/xmpp/connection';
import { classify, messageStanza } from '../../nodes/core/xmpp/stanza';
import { encodeSen1 } from '../../nodes/core/codecs/sen1';
import { catchNode, helper } from '../support/node-red';
import { freshDatabase, prosody, startProsody, stopProsody } from '../support/servers';
import { until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import xmppNode = require('../../nodes/xmpp/xmpp');
import xmppOutNode = require('../../nodes/xmpp/xmpp-out');
import xmppInNode = require('../../nodes/xmpp/xmpp-in');
const tlsNode = require('@node-red/nodes/core/network/05-tls.js');

type Msg = Record<string, any>;
const NODES = [postgresNode, xmppNode, xmppOutNode, xmppInNode, tlsNode, catchNode];
const T = 1_764_000_000;
const reading = (i: number): ResolvedRecord[] => [{ n: 'station1/temperature', t: T + i, u: 'Cel', v: 20 + i / 10 }];

function collect(id: string, prefix: string): Msg[] {
  const got: Msg[] = [];
  helper.getNode(id).on('input', (m: Msg) => {
    if (typeof m.messageId === 'string' && m.messageId.startsWith(prefix)) got.push(m);
  });
  return got;
}

describe('XMPP federation (Prosody, mailboxes on PostgreSQL)', function () {
  this.timeout(120_000);
  let dbUrl: string;
  let sql: SqlClient | undefined;
  let prefix: string;

  before(() => helper.startServer());
  after(() => helper.stopServer());
  beforeEach(async () => {
    prefix = `t${randomBytes(4).toString('hex')}-`;
    dbUrl = await freshDatabase();
    sql = await openSql({ connectionString: dbUrl, poolSize: 2 });
    await migrate(sql);
  });
  afterEach(async () => {
    await helper.unload();
    await sql?.close();
  });

  const account = (id: string, user: string, extra: Msg = {}) => ({
    id,
    type: 'conflux-xmpp',
    jid: `${user}@${prosody().domain}`,
    host: prosody().host,
    port: String(prosody().port),
    tlsMode: 'none',
    resource: `${id}-${prefix}`,
    ...extra,
  });
  const creds = (...ids: string[]) => Object.fromEntries(ids.map((id) => [id, { password: prosody().password }]));
  const proxies = (outExtra: Msg = {}) =>
    [
      { id: 'db', type: 'conflux-postgres', url: dbUrl },
      account('alice', 'alice'),
      account('bob', 'bob'),
      {
        id: 'out',
        type: 'conflux-xmpp-out',
        xmpp: 'alice',
        database: 'db',
        to: `bob@${prosody().domain}`,
        username: 'jdoe',
        receiptTimeout: '5',
        wires: [['sent']],
        ...outExtra,
      },
      { id: 'sent', type: 'helper' },
      { id: 'in', type: 'conflux-xmpp-in', xmpp: 'bob', database: 'db', wires: [['got']] },
      { id: 'got', type: 'helper' },
    ] as Parameters<typeof helper.load>[1];
  const online = (id: string) => until(`${id} online`, () => (helper.getNode(id) as unknown as { xmpp: XmppConnection }).xmpp.online);
  const outboxDepth = () => new Mailbox(sql!, 'outbox').depth(`xmpp:alice@${prosody().domain}`);

  it('carries Sen1Message and SenML XML bodies; the receipts empty the outbox', async () => {
    await helper.load(NODES, proxies(), creds('alice', 'bob'));
    const got = collect('got', prefix);
    const sent = collect('sent', prefix);
    await Promise.all([online('alice'), online('bob')]);
    const out = helper.getNode('out');
    out.receive({ payload: reading(1), messageId: `${prefix}sen1`, sen1: { applicationSrc: 'appA', applicationDst: 'appB' } });
    out.receive({ payload: [...reading(2), { n: 'station1/door', t: T + 2, vb: true }], messageId: `${prefix}senml` });
    await until('three messages through', () => got.length >= 3);
    assert.deepEqual(got.map((m) => m.messageId).sort(), [`${prefix}sen1`, `${prefix}senml:0`, `${prefix}senml:1`]);
    const sen1 = got.find((m) => m.messageId === `${prefix}sen1`)!;
    assert.deepEqual(sen1.payload, reading(1));
    assert.equal(sen1.source.format, 'sen1');
    assert.equal(sen1.sen1.username, 'jdoe');
    assert.equal(sen1.sen1.applicationSrc, 'appA');
    assert.match(sen1.xmpp.from, new RegExp(`^alice@${prosody().domain}/`));
    assert.equal(sen1.xmpp.id, `${prefix}sen1`);
    // Two record kinds make two Sen1 messages, with :0 and :1 ids.
    await until('both passed on', () => sent.length === 2);
    assert.deepEqual(sent.find((m) => m.messageIds.length === 2)?.messageIds, [`${prefix}senml:0`, `${prefix}senml:1`]);
    await until('the receipts empty the outbox', async () => (await outboxDepth()) === 0);

    // The same readings as SenML XML.
    await helper.unload();
    await helper.load(NODES, proxies({ format: 'senml-xml' }), creds('alice', 'bob'));
    const got2 = collect('got', prefix);
    await Promise.all([online('alice'), online('bob')]);
    const records = [...reading(3), { n: 'station1/label', t: T + 3, vs: 'ok' }];
    helper.getNode('out').receive({ payload: records, messageId: `${prefix}xml` });
    await until('the SenML XML message through', () => got2.length === 1);
    assert.equal(got2[0].source.format, 'senml-xml');
    assert.deepEqual(got2[0].payload, records);
    await until('the outbox empty', async () => (await outboxDepth()) === 0);
  });

  it('logs in over STARTTLS and direct TLS with the test CA', async () => {
    const tls = { id: 'tls', type: 'tls-config', cert: '', key: '', ca: prosody().caFile, verifyservercert: true };
    await helper.load(
      NODES,
      [
        { id: 'db', type: 'conflux-postgres', url: dbUrl },
        tls,
        account('alice', 'alice', { tlsMode: 'starttls', tls: 'tls' }),
        account('bob', 'bob', { tlsMode: 'direct', tls: 'tls', port: String(prosody().tlsPort) }),
        { id: 'out', type: 'conflux-xmpp-out', xmpp: 'alice', database: 'db', to: `bob@${prosody().domain}`, username: 'jdoe', wires: [[]] },
        { id: 'in', type: 'conflux-xmpp-in', xmpp: 'bob', database: 'db', wires: [['got']] },
        { id: 'got', type: 'helper' },
      ] as Parameters<typeof helper.load>[1],
      creds('alice', 'bob'),
    );
    const got = collect('got', prefix);
    await Promise.all([online('alice'), online('bob')]);
    helper.getNode('out').receive({ payload: reading(1), messageId: `${prefix}tls` });
    await until('the message through', () => got.length === 1);
  });

  it('Prosody stopped mid-stream and restarted: every accepted message arrives once', async function () {
    this.timeout(240_000);
    const TOTAL = 600;
    await helper.load(NODES, proxies({ receiptTimeout: '3' }), creds('alice', 'bob'));
    const got = collect('got', prefix);
    const sent = collect('sent', prefix);
    await Promise.all([online('alice'), online('bob')]);
    const out = helper.getNode('out');
    let i = 0;
    const feed = async (upTo: number) => {
      for (; i < upTo; i++) {
        out.receive({ payload: reading(i), messageId: `${prefix}${i}` });
        if (i % 50 === 0) await until('the outbox to keep up', () => sent.length >= i - 100);
      }
    };
    await feed(TOTAL / 3);
    await until('some through', () => got.length >= 50);
    const stopping = stopProsody();
    let starting: Promise<void> | undefined;
    let waiting: number | undefined;
    try {
      await feed(TOTAL / 2);
      await stopping;
      await feed((TOTAL * 3) / 4); // accepted into the outbox while the server is down
      await until('all accepted so far', () => sent.length === (TOTAL * 3) / 4);
      waiting = await outboxDepth();
    } finally {
      await stopping.catch(() => undefined);
      starting = startProsody(); // whatever happened: the later tests need the server
    }
    assert.ok(waiting !== undefined && waiting > 0, `messages wait in the outbox while Prosody is down (${waiting})`);
    await feed(TOTAL);
    await starting;
    await until(`all ${TOTAL} accepted`, () => sent.length === TOTAL);
    await until(
      () => `the outbox empty (${got.length} received)`,
      async () => (await outboxDepth()) === 0,
      180_000,
    );
    await until(
      () => `all ${TOTAL} received (${got.length})`,
      () => new Set(got.map((m) => m.messageId)).size === TOTAL,
      60_000,
    );
    const ids = got.map((m) => m.messageId as string);
    assert.equal(ids.length, TOTAL, `${ids.length - new Set(ids).size} messages reached the flow twice`);
    await until('the inbox empty once the flow has finished', async () => (await new Mailbox(sql!, 'inbox').depth(`xmpp:bob@${prosody().domain}`)) === 0);
  });

  it('a wrong password and a server that is down leave Node-RED running, with the reason in the status', async () => {
    await helper.load(
      NODES,
      [
        { id: 'db', type: 'conflux-postgres', url: dbUrl },
        account('wrong', 'alice'),
        account('down', 'alice', { port: '1' }),
        { id: 'out1', type: 'conflux-xmpp-out', xmpp: 'wrong', database: 'db', to: `bob@${prosody().domain}`, username: 'jdoe', wires: [['sent']] },
        { id: 'out2', type: 'conflux-xmpp-out', xmpp: 'down', database: 'db', to: `bob@${prosody().domain}`, username: 'jdoe', wires: [['sent']] },
        { id: 'sent', type: 'helper' },
      ] as Parameters<typeof helper.load>[1],
      { wrong: { password: 'not-the-password' }, down: { password: prosody().password } },
    );
    const statuses: Record<string, string[]> = { out1: [], out2: [] };
    for (const id of ['out1', 'out2']) {
      const n = helper.getNode(id) as unknown as { status(s: { text?: string }): void };
      const original = n.status.bind(n);
      n.status = (s) => {
        statuses[id].push(String(s.text ?? ''));
        original(s);
      };
    }
    const conn = (id: string) => (helper.getNode(id) as unknown as { xmpp: XmppConnection }).xmpp;
    await until('the login refused twice', () => conn('wrong').state === 'reconnecting' && /login refused/.test(conn('wrong').detail));
    await until('the connection refused', () => conn('down').state === 'reconnecting' && /connection refused/.test(conn('down').detail));
    await until(
      'the reasons in the nodes’ status',
      () => statuses.out1.some((s) => /login refused/.test(s)) && statuses.out2.some((s) => /connection refused/.test(s)),
    );
    const sent = collect('sent', prefix);
    helper.getNode('out1').receive({ payload: reading(1), messageId: `${prefix}a` });
    helper.getNode('out2').receive({ payload: reading(2), messageId: `${prefix}b` });
    await until('both accepted into the outbox', () => sent.length === 2);
    assert.equal(await outboxDepth(), 2);
  });

  it('stores a repeated stanza id once and answers it with a receipt each time', async () => {
    await helper.load(NODES, proxies(), creds('alice', 'bob'));
    const got = collect('got', prefix);
    await online('bob');
    const carol = new XmppConnection({
      host: prosody().host,
      port: prosody().port,
      jid: `carol@${prosody().domain}`,
      password: prosody().password,
      resource: prefix,
      tls: 'none',
    });
    const receipts: string[] = [];
    carol.onStanza((s) => {
      const c = classify(s);
      if (c.kind === 'receipt') receipts.push(c.id);
    });
    carol.start();
    try {
      await until('carol online', () => carol.online);
      const [body] = encodeSen1(reading(7), { username: 'jdoe' });
      const stanza = { peer: `bob@${prosody().domain}`, id: `${prefix}dup`, format: 'sen1' as const, body };
      await carol.send(messageStanza(carol.xml!, stanza));
      await until('the first receipt', () => receipts.length === 1);
      await until('the flow has it', () => got.length === 1);
      await carol.send(messageStanza(carol.xml!, stanza));
      await until('the second receipt', () => receipts.length === 2);
      await carol.send(messageStanza(carol.xml!, { ...stanza, id: `${prefix}next` }));
      await until('the next message and its receipt', () => got.length >= 2 && receipts.length >= 3);
      assert.deepEqual(
        got.map((m) => m.messageId),
        [`${prefix}dup`, `${prefix}next`],
        'the repeat did not reach the flow',
      );
      assert.deepEqual(receipts, [`${prefix}dup`, `${prefix}dup`, `${prefix}next`]);
    } finally {
      await carol.close();
    }
  });

  it('two resources of one JID: each message reaches one flow once', async () => {
    const TOTAL = 200;
    await helper.load(
      NODES,
      [
        { id: 'db', type: 'conflux-postgres', url: dbUrl },
        account('alice1', 'alice'),
        account('alice2', 'alice'),
        account('bob1', 'bob'),
        account('bob2', 'bob'),
        {
          id: 'out1',
          type: 'conflux-xmpp-out',
          xmpp: 'alice1',
          database: 'db',
          to: `bob@${prosody().domain}`,
          username: 'jdoe',
          receiptTimeout: '3',
          wires: [[]],
        },
        {
          id: 'out2',
          type: 'conflux-xmpp-out',
          xmpp: 'alice2',
          database: 'db',
          to: `bob@${prosody().domain}`,
          username: 'jdoe',
          receiptTimeout: '3',
          wires: [[]],
        },
        { id: 'in1', type: 'conflux-xmpp-in', xmpp: 'bob1', database: 'db', wires: [['got']] },
        { id: 'in2', type: 'conflux-xmpp-in', xmpp: 'bob2', database: 'db', wires: [['got']] },
        { id: 'got', type: 'helper' },
      ] as Parameters<typeof helper.load>[1],
      creds('alice1', 'alice2', 'bob1', 'bob2'),
    );
    const got = collect('got', prefix);
    await Promise.all(['alice1', 'alice2', 'bob1', 'bob2'].map(online));
    const storedBy = (id: string) => (helper.getNode(id) as unknown as { xmpp: XmppConnection }).xmpp;
    for (let i = 0; i < TOTAL; i++) helper.getNode(i % 2 ? 'out1' : 'out2').receive({ payload: reading(i), messageId: `${prefix}${i}` });
    await until(
      () => `all ${TOTAL} received (${got.length})`,
      () => got.length >= TOTAL,
    );
    await until('the outbox empty', async () => (await outboxDepth()) === 0);
    const ids = got.map((m) => m.messageId as string);
    assert.equal(new Set(ids).size, TOTAL);
    assert.equal(ids.length, TOTAL, 'no message reached the flows twice');
    assert.notEqual(storedBy('bob1').boundJid, storedBy('bob2').boundJid);
  });
});
