/**
 * conflux-ftp-out as an integrator wires it (seed 002), on the real PostgreSQL:
 * - 400 targets in the business store, one per client, each with its own credentials: every
 *   delivery arrives under its client's naming rules (zip with metadata JSON, or files one by one),
 *   a user with his own server gets his files there, and the servers never see more open
 *   connections than the node's bound;
 * - files of one target reuse the pooled connections;
 * - a name that would leave the folder is refused (Catch sees why) and nothing is stored;
 * - a server that is down or refuses the login leaves Node-RED running, the status says so, and
 *   the files arrive once the server is there;
 * - FTPS with explicit TLS against the real pure-ftpd, trusting its test CA (tls-config node).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { strFromU8, unzipSync } from 'fflate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { FtpFarm } from '../support/ftp-farm';
import { catchNode, helper } from '../support/node-red';
import { freshDatabase, ftpsServer } from '../support/servers';
import { until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import ftpNode = require('../../nodes/ftp/ftp');
import ftpOutNode = require('../../nodes/ftp/ftp-out');

const tlsNode = require('@node-red/nodes/core/network/05-tls.js');

type Msg = Record<string, any>;
type FlowNode = { id: string; type: string } & Msg;
const NODES = [postgresNode, ftpNode, ftpOutNode, catchNode, tlsNode];
const jpeg = (i: number, side: number) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(3_000 + side, (i + side) & 0xff)]);

describe('conflux-ftp-out node', function () {
  this.timeout(120_000);
  let url: string;
  let db: SqlClient;
  before(async () => {
    url = await freshDatabase();
    db = await openSql({ connectionString: url, poolSize: 2 });
    await migrate(db);
  });
  afterEach(async () => helper.unload());
  after(async () => db?.close());

  const flow = (out: Msg, extra: FlowNode[] = []): FlowNode[] => [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url },
    { id: 'out', type: 'conflux-ftp-out', z: 'tab', database: 'db', wires: [['sent']], ...out },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'sent', type: 'helper', z: 'tab' },
    { id: 'caught', type: 'helper', z: 'tab' },
    ...extra,
  ];
  /** Sends each message and resolves with what left the node (or what the Catch node got) for each. */
  async function sendAll(msgs: Msg[]): Promise<Msg[]> {
    const out: Msg[] = [];
    const done = new Promise<void>((resolve) => {
      const take = (m: Msg) => {
        out.push(m);
        if (out.length === msgs.length) resolve();
      };
      helper.getNode('sent').on('input', take);
      helper.getNode('caught').on('input', take);
    });
    for (const m of msgs) helper.getNode('out').receive(m as never);
    await done;
    return out;
  }

  it('delivers to 400 targets with their own credentials and rules, never more connections open than the bound', async () => {
    const N = 400;
    const BOUND = 12;
    const farm = await FtpFarm.start(N);
    try {
      const store = createBusinessStore(db);
      const acme = 'acme';
      await db.query(`INSERT INTO tenants (id, name) VALUES ($1, 'Acme') ON CONFLICT DO NOTHING`, [acme]);
      for (const s of farm.servers) {
        const zip = s.index % 2 === 0;
        await store.create(acme, 'ftp_targets', {
          name: `client-${s.index}`,
          client: `c${s.index}`,
          host: '127.0.0.1',
          port: s.port,
          protocol: 'ftp',
          username: s.user,
          password: s.password,
          directory: zip ? '/vehicles' : '/',
          naming: zip ? '{vin}_{nn:02}.{ext}' : '{date:YYYYMMDD}/{vin}-{nn:03}.{ext}',
          archive: zip ? '{vin}.zip' : null,
          metadata: '{vin}.json',
        });
      }
      // Ana, a user of client c0, has her own server: server 1's login, another folder.
      const own = farm.servers[1];
      await store.create(acme, 'ftp_targets', {
        name: 'ana',
        client: 'c0',
        user_ref: 'ana',
        host: '127.0.0.1',
        port: own.port,
        protocol: 'ftp',
        username: own.user,
        password: own.password,
        directory: '/ana',
      });

      await helper.load(NODES, flow({ tenant: acme, maxConnections: String(BOUND), perTarget: '2' }));
      const msgs: Msg[] = farm.servers.map((s) => ({
        client: `c${s.index}`,
        user: `u${s.index}`,
        vin: `WVW${String(s.index).padStart(5, '0')}`,
        time: '2026-03-07T10:00:00Z',
        metadata: { uploadedBy: `u${s.index}`, dealer: `c${s.index}` },
        files: [
          { name: 'front.jpg', data: jpeg(s.index, 1) },
          { name: 'rear.JPG', data: jpeg(s.index, 2) },
        ],
      }));
      msgs.push({ client: 'c0', user: 'ana', vin: 'ANA1', files: [{ name: 'x.png', data: 'png' }] });
      const left = await sendAll(msgs);
      assert.deepEqual(
        left.filter((m) => m.error),
        [],
        'every message accepted',
      );
      assert.ok(left.every((m) => typeof m.ftp?.messageId === 'string'));

      const expected = (i: number) =>
        i % 2 === 0
          ? [`vehicles/WVW${String(i).padStart(5, '0')}.zip`]
          : [
              `20260307/WVW${String(i).padStart(5, '0')}-001.jpg`,
              `20260307/WVW${String(i).padStart(5, '0')}-002.jpg`,
              `WVW${String(i).padStart(5, '0')}.json`,
            ].sort();
      await until(
        () =>
          `every file on its server (${farm.servers.filter((s) => farm.files(s.index).length < expected(s.index).length).length} servers still missing some)`,
        () => farm.servers.every((s) => farm.files(s.index).filter((f) => !f.startsWith('ana/')).length === expected(s.index).length),
        90_000,
      );
      for (const s of farm.servers) {
        const vin = `WVW${String(s.index).padStart(5, '0')}`;
        assert.deepEqual(
          farm.files(s.index).filter((f) => !f.startsWith('ana/')),
          expected(s.index),
          `server ${s.index}`,
        );
        if (s.index % 2 === 0) {
          const entries = unzipSync(farm.read(s.index, `vehicles/${vin}.zip`));
          assert.deepEqual(Object.keys(entries), [`${vin}_01.jpg`, `${vin}_02.jpg`, `${vin}.json`]);
          assert.ok(Buffer.from(entries[`${vin}_02.jpg`]).equals(jpeg(s.index, 2)));
          assert.deepEqual(JSON.parse(strFromU8(entries[`${vin}.json`])), { uploadedBy: `u${s.index}`, dealer: `c${s.index}` });
        } else {
          assert.ok(farm.read(s.index, `20260307/${vin}-001.jpg`).equals(jpeg(s.index, 1)));
          assert.equal(JSON.parse(farm.read(s.index, `${vin}.json`).toString()).uploadedBy, `u${s.index}`);
        }
      }
      assert.deepEqual(
        farm.files(1).filter((f) => f.startsWith('ana/')),
        ['ana/ANA1_01.png'],
        "Ana's own server, not her client's",
      );
      assert.ok(farm.peak <= BOUND, `at most ${BOUND} connections open at once on the servers' side, saw ${farm.peak}`);
      assert.ok(farm.peak >= Math.min(BOUND, 4), `deliveries ran in parallel (peak ${farm.peak})`);
      await until(
        'the outbox is empty',
        async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM outbox WHERE queue = 'ftp:out'`)).rows[0].n) === 0,
      );
    } finally {
      await helper.unload();
      await farm.stop();
    }
  });

  it('reuses the connections of a target across files and deliveries; refuses names that leave the folder', async () => {
    const farm = await FtpFarm.start(1);
    const s = farm.servers[0];
    try {
      await helper.load(
        NODES,
        flow({ ftp: 'target', naming: '{vin}_{nn:02}.{ext}', perTarget: '2' }, [
          { id: 'target', type: 'conflux-ftp', host: '127.0.0.1', port: String(s.port), secure: 'none', folder: '/in', maxConnections: '2' },
        ]),
        { target: { user: s.user, password: s.password } },
      );
      const msgs = Array.from({ length: 30 }, (_, i) => ({ vin: `V${i}`, files: [1, 2, 3].map((k) => ({ name: `p${k}.jpg`, data: `${i}-${k}` })) }));
      const left = await sendAll(msgs);
      assert.equal(left.filter((m) => m.error).length, 0);
      await until('90 files', () => farm.files(0).length === 90);
      assert.ok(farm.logins <= 3, `30 deliveries of 3 files over at most 2 pooled connections (${farm.logins} logins)`);
      assert.equal(farm.read(0, 'in/V7_02.jpg').toString(), '7-2');

      for (const vin of ['../../etc/x', 'a/b', 'x\u0000y', '..\\..\\x']) {
        const [caught] = await sendAll([{ vin, files: [{ name: 'a.jpg', data: 'x' }] }]);
        assert.match(caught.error?.message ?? '', /slash, a backslash or a control character/, vin);
      }
      const [absolute] = await sendAll([{ vin: 'V', files: [{ name: 'a.jpg', data: 'x' }], messageId: 'abs', ftpTarget: 'x' }]);
      assert.equal(absolute.error, undefined, 'a fixed target ignores msg.ftpTarget');
      await helper.unload();
      await helper.load(
        NODES,
        flow({ ftp: 'target', naming: '/etc/{vin}.{ext}' }, [{ id: 'target', type: 'conflux-ftp', host: '127.0.0.1', port: String(s.port), secure: 'none' }]),
        { target: { user: s.user, password: s.password } },
      );
      const [escaped] = await sendAll([{ vin: 'V1', files: [{ name: 'a.jpg', data: 'x' }], messageId: 'escape-1' }]);
      assert.match(escaped.error?.message ?? '', /is absolute: names are relative to the target's folder/);
      const stored = await db.query(`SELECT 1 FROM outbox WHERE message_id = 'escape-1'`);
      assert.equal(stored.rowCount, 0, 'nothing stored for a refused name');
    } finally {
      await helper.unload();
      await farm.stop();
    }
  });

  it('a server that is down or refuses the login leaves Node-RED running; the files arrive once the server is up', async () => {
    const farm = await FtpFarm.start(2);
    const [s, other] = farm.servers;
    await farm.stopOne(0);
    try {
      await helper.load(
        NODES,
        [
          ...flow({ ftp: 'down', naming: '{vin}.{ext}' }, [
            { id: 'down', type: 'conflux-ftp', host: '127.0.0.1', port: String(s.port), secure: 'none' },
            { id: 'badlogin', type: 'conflux-ftp', host: '127.0.0.1', port: String(other.port), secure: 'none' },
            { id: 'out2', type: 'conflux-ftp-out', z: 'tab', database: 'db', ftp: 'badlogin', naming: '{vin}.{ext}', wires: [['sent']] },
          ]),
        ],
        { down: { user: s.user, password: s.password }, badlogin: { user: other.user, password: 'wrong' } },
      );
      const statuses: Msg[] = [];
      (helper.getNode('out') as any).on('call:status', (call: { args: Msg[] }) => statuses.push(call.args[0]));
      const left = await sendAll([1, 2, 3].map((i) => ({ vin: `DOWN${i}`, files: [{ name: 'a.zip', data: `zip-${i}` }] })));
      assert.equal(left.filter((m) => m.error).length, 0, 'accepted into the outbox while the server is down');
      const refused: Msg[] = [];
      (helper.getNode('out2') as any).on('call:status', (call: { args: Msg[] }) => refused.push(call.args[0]));
      helper.getNode('out2').receive({ vin: 'X', files: [{ name: 'a.zip', data: 'x' }] } as never);
      await until('the status shows the failures', () => statuses.some((st) => /failed/.test(String(st.text))));
      await until('the refused login shows on the other node', () => refused.some((st) => /failed/.test(String(st.text)) && st.fill !== 'green'));
      assert.equal(farm.files(1).length, 0);
      assert.equal(farm.files(0).length, 0);

      await farm.startOne(0);
      await until('the files arrived once the server was up', () => farm.files(0).length === 3, 60_000);
      assert.deepEqual(farm.files(0), ['DOWN1.zip', 'DOWN2.zip', 'DOWN3.zip']);
      assert.equal(farm.read(0, 'DOWN2.zip').toString(), 'zip-2');
      await until('the status counts them', () => statuses.some((st) => /^3 delivered/.test(String(st.text)) && st.shape === 'dot'));
    } finally {
      await helper.unload();
      await farm.stop();
    }
  });

  it('FTPS with explicit TLS against the real pure-ftpd, trusting its test CA', async () => {
    const server = ftpsServer();
    const u = new URL(server.url);
    await helper.load(
      NODES,
      flow({ ftp: 'ftps', naming: '{vin}_{nn:02}.{ext}', zip: true, archive: '{vin}.zip', metadata: '{vin}.json' }, [
        { id: 'ftps', type: 'conflux-ftp', host: 'localhost', port: u.port, secure: 'explicit', folder: '/deliveries', tls: 'ca' },
        { id: 'ca', type: 'tls-config', ca: server.ca, cert: '', key: '', verifyservercert: true },
      ]),
      { ftps: { user: decodeURIComponent(u.username), password: decodeURIComponent(u.password) } },
    );
    const [left] = await sendAll([{ vin: 'TLS0001', metadata: { uploadedBy: 'ana' }, files: [{ name: 'a.jpg', data: jpeg(1, 1) }] }]);
    assert.equal(left.error, undefined);
    const file = path.join(server.root, 'deliveries', 'TLS0001.zip');
    await until('the zip is on the FTPS server', () => fs.existsSync(file));
    const entries = unzipSync(fs.readFileSync(file));
    assert.deepEqual(Object.keys(entries), ['TLS0001_01.jpg', 'TLS0001.json']);
    assert.ok(Buffer.from(entries['TLS0001_01.jpg']).equals(jpeg(1, 1)));
    assert.deepEqual(
      fs.readdirSync(path.dirname(file)).filter((f) => f.endsWith('.part')),
      [],
    );
  });
});
