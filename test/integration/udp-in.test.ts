/**
 * UDP telemetry on real sockets (127.0.0.1): single-use tokens, what is dropped and counted, a
 * thousand readings, and the conflux-udp-in node as an integrator wires it (gateway, embedded
 * database, Catch node), including that closing it frees the port.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import type { DeviceIdentity } from '../../nodes/core/devices/directory';
import { TenantRateLimiter } from '../../nodes/core/devices/tenant-rate';
import { UdpTokens } from '../../nodes/core/devices/udp-tokens';
import type { CanonicalMessage } from '../../nodes/core/model/message';
import { UdpServer, type UdpDropReason, type UdpServerOptions } from '../../nodes/core/protocol/udp-server';
import { createBusinessStore } from '../../nodes/core/stores/business';
import type { GatewayConfigNode } from '../../nodes/shared/config-nodes';
import { buildDatagram, openUdpSender, sendReading, type UdpReading, type UdpSender } from '../../tools/device-client/udp';
import { catchNode, helper } from '../support/node-red';
import { freeUdpPort as freePort } from '../support/ports';
import { freshDatabase } from '../support/servers';
import { elapse, until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import gatewayNode = require('../../nodes/devices/gateway');
import udpInNode = require('../../nodes/devices/udp-in');
const delayNode = require('@node-red/nodes/core/function/89-delay.js');

type Msg = Record<string, any>;
const HOST = '127.0.0.1';
const ACME_1: DeviceIdentity = { tenant: 'acme', serial: 'SN-1', id: 1 };
const ACME_2: DeviceIdentity = { tenant: 'acme', serial: 'SN-2', id: 2 };
const GLOBEX: DeviceIdentity = { tenant: 'globex', serial: 'GX-1', id: 3 };

/** Binds port without address reuse: rejects with EADDRINUSE while someone holds it. */
async function bindExclusive(port: number): Promise<void> {
  const s = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind({ port, address: HOST, exclusive: true }, resolve);
  });
  await new Promise<void>((resolve) => s.close(resolve));
}

interface Harness {
  server: UdpServer;
  tokens: UdpTokens;
  received: CanonicalMessage[];
  rejected: { reason: UdpDropReason; detail: string }[];
  udp: UdpSender;
  port: number;
  /** Waits until the server has counted `n` more datagrams (accepted or dropped) than at `from`. */
  handled(from: number, n?: number): Promise<void>;
  total(): number;
  issue(device: DeviceIdentity): Promise<Buffer>;
}

const open: Harness[] = [];
/** The gateway's database the listener tests share (PostgreSQL): tokens and rate buckets. */
let db: SqlClient;
const sql = () => Promise.resolve(db);
const unlimited = () => new TenantRateLimiter({ sql, scope: 'udp-test', ratePerSecond: 0 });

/** Tokens of `tokens` not spent yet. */
async function unspent(tokens: Buffer[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM udp_tokens WHERE encode(token, 'hex') = ANY($1::text[]) AND spent_at IS NULL`,
    [tokens.map((t) => t.toString('hex'))],
  );
  return rows[0].n;
}

async function start(options: Partial<UdpServerOptions> & { tokens?: UdpTokens } = {}): Promise<Harness> {
  const tokens = options.tokens ?? new UdpTokens(sql, { ttlMs: 60_000 });
  const received: CanonicalMessage[] = [];
  const rejected: Harness['rejected'] = [];
  const server = new UdpServer({
    port: 0,
    host: HOST,
    limits: { maxFrameBytes: 1_024 },
    rate: unlimited(),
    onReadings: (msg) => void received.push(msg),
    onRejected: (reason, _remote, detail) => void rejected.push({ reason, detail }),
    ...options,
    tokens,
  });
  const { port } = await server.listen();
  const udp = await openUdpSender({ host: HOST, port });
  const total = () => {
    const s = server.stats();
    return s.accepted + Object.values(s.dropped).reduce((a, b) => a + b, 0);
  };
  const h: Harness = {
    server,
    tokens,
    received,
    rejected,
    udp,
    port,
    total,
    handled: (from, n = 1) =>
      until(
        () => `${from + n} datagrams handled, got ${total()}: ${JSON.stringify(server.stats())}`,
        () => total() >= from + n,
      ),
    issue: async (device) => (await tokens.issue(device))[0].token,
  };
  open.push(h);
  return h;
}

/** Sends one reading and waits until the server has handled it. */
async function send(h: Harness, serial: string, token: Buffer, payload: Record<string, unknown> = { t: 21.5 }): Promise<void> {
  const before = h.total();
  await h.udp.send({ serial, token, format: 'attributes', payload });
  await h.handled(before);
}

async function sendRaw(h: Harness, bytes: Uint8Array): Promise<void> {
  const before = h.total();
  await h.udp.sendRaw(bytes);
  await h.handled(before);
}

describe('UDP telemetry', function () {
  this.timeout(20_000);

  before(async function () {
    this.timeout(60_000);
    db = await openSql({ connectionString: await freshDatabase(), poolSize: 10 });
    await migrate(db);
  });
  after(() => db?.close());

  afterEach(async () => {
    for (const h of open.splice(0)) {
      await h.udp.close();
      await h.server.close();
    }
  });

  describe('the listener', () => {
    it("a datagram with a fresh token arrives as the canonical message of the token's device", async () => {
      const h = await start();
      const before = Date.now();
      const token = await h.issue(ACME_1);
      await send(h, 'SN-1', token, { temp: 21.5, on: true });
      assert.equal(h.received.length, 1);
      const msg = h.received[0];
      assert.deepEqual(msg.device, { tenant: 'acme', id: 'SN-1' });
      assert.equal(msg.source?.transport, 'udp');
      assert.equal(msg.source?.format, 'attributes+json');
      assert.ok(msg.source!.receivedAt >= before && msg.source!.receivedAt <= Date.now());
      assert.deepEqual(
        msg.payload.map((r) => [r.n, r.v ?? r.vb]),
        [
          ['SN-1/temp', 21.5],
          ['SN-1/on', true],
        ],
      );
      assert.equal(await unspent([token]), 0, 'the token is spent');
    });

    it('each payload type arrives, and UltraLight and SenML names stay under the device', async () => {
      const h = await start();
      const formats: Pick<UdpReading, 'format' | 'payload'>[] = [
        { format: 'ultralight-ascii', payload: 't|20' },
        { format: 'ultralight', payload: 'mode|éco' },
        { format: 'senml-json', payload: [{ n: 'temp', u: 'Cel', v: 19 }] },
      ];
      for (const f of formats) {
        const before = h.total();
        await h.udp.send({ serial: 'SN-1', token: await h.issue(ACME_1), ...f });
        await h.handled(before);
      }
      assert.deepEqual(h.rejected, []);
      assert.deepEqual(
        h.received.map((m) => [m.source?.format, m.payload[0].n, m.payload[0].v ?? m.payload[0].vs]),
        [
          ['ultralight', 'SN-1/t', 20],
          ['ultralight', 'SN-1/mode', 'éco'],
          ['senml+json', 'SN-1/temp', 19],
        ],
      );
    });

    it('the same datagram replayed is dropped and counted as a replay', async () => {
      const h = await start();
      const datagram = buildDatagram({ serial: 'SN-1', token: await h.issue(ACME_1), format: 'attributes', payload: { t: 1 } });
      await sendRaw(h, datagram);
      await sendRaw(h, datagram);
      await sendRaw(h, datagram);
      assert.equal(h.received.length, 1, 'delivered once');
      assert.equal(h.server.stats().dropped.replayed, 2);
      assert.match(h.rejected[0].detail, /already used.*SN-1/);
    });

    it('a token never issued is dropped as unknown', async () => {
      const h = await start();
      await send(h, 'SN-1', randomBytes(16));
      assert.equal(h.received.length, 0);
      assert.deepEqual(h.server.stats().dropped.unknown, 1);
    });

    it("another device's token is dropped as foreign, and its owner can still use it", async () => {
      const h = await start();
      const token = await h.issue(ACME_1);
      await send(h, 'SN-2', token, { stolen: 1 }); // SN-2 presents SN-1's token
      await send(h, 'GX-1', token, { stolen: 2 }); // so does a device of another tenant
      assert.equal(h.received.length, 0);
      assert.equal(h.server.stats().dropped.foreign, 2);
      await send(h, 'SN-1', token, { mine: 3 });
      assert.deepEqual(
        h.received.map((m) => [m.device, m.payload[0].n]),
        [[{ tenant: 'acme', id: 'SN-1' }, 'SN-1/mine']],
      );
    });

    it('an expired token is dropped', async () => {
      let clock = 1_000_000;
      const tokens = new UdpTokens(sql, { ttlMs: 5_000, now: () => clock });
      const h = await start({ tokens });
      const stale = await h.issue(ACME_1);
      const fresh = await h.issue(ACME_2);
      clock += 5_000;
      await send(h, 'SN-1', stale);
      assert.equal(h.received.length, 0);
      assert.equal(h.server.stats().dropped.expired, 1);
      await send(h, 'SN-1', stale);
      assert.equal(h.server.stats().dropped.replayed, 1, 'an expired token presented again is a replay');
      clock -= 1; // SN-2's was issued at the same time: 1 ms before it expires it works
      await send(h, 'SN-2', fresh);
      assert.equal(h.received.length, 1);
    });

    it('an oversized datagram is dropped; one at the limit is accepted', async () => {
      const h = await start({ limits: { maxFrameBytes: 64 } });
      const fill = (token: Buffer, size: number) => {
        const base = buildDatagram({ serial: 'SN-1', token, format: 'json', payload: '{"t":1}' });
        return buildDatagram({ serial: 'SN-1', token, format: 'json', payload: '{"t":1}' + ' '.repeat(size - base.length) });
      };
      const big = fill(await h.issue(ACME_1), 65);
      assert.equal(big.length, 65);
      await sendRaw(h, big);
      assert.equal(h.server.stats().dropped.oversized, 1);
      assert.match(h.rejected[0].detail, /65 bytes, over the limit of 64/);
      await sendRaw(h, fill(await h.issue(ACME_1), 64));
      assert.equal(h.received.length, 1);
    });

    it('a malformed datagram is dropped with its reason and the next good one is accepted', async () => {
      const h = await start();
      const good = buildDatagram({ serial: 'SN-1', token: await h.issue(ACME_1), format: 'attributes', payload: { t: 2 } });
      const bad = Buffer.from(good);
      bad[0] = 7;
      await sendRaw(h, bad);
      await sendRaw(h, good.subarray(0, 10));
      assert.deepEqual(
        h.rejected.map((r) => r.reason),
        ['malformed', 'malformed'],
      );
      assert.match(h.rejected[0].detail, /version 7 is not supported/);
      assert.match(h.rejected[1].detail, /ends inside the token/);
      // A payload that does not decode spends its token, is dropped as undecodable, and says why.
      await send(h, 'SN-1', await h.issue(ACME_1), { bad: null });
      assert.equal(h.rejected[2].reason, 'undecodable');
      assert.match(h.rejected[2].detail, /SN-1.*finite number, a boolean or a string/);
      await sendRaw(h, good);
      assert.equal(h.received.length, 1);
      assert.equal(h.received[0].payload[0].v, 2);
    });

    it('a tenant over its rate is dropped; another tenant goes on', async () => {
      const h = await start({ rate: new TenantRateLimiter({ sql, scope: 'udp-rate-test', ratePerSecond: 1, burst: 2 }) });
      for (let i = 0; i < 3; i++) await send(h, 'SN-1', await h.issue(ACME_1), { i });
      await send(h, 'GX-1', await h.issue(GLOBEX), { i: 9 });
      assert.equal(h.server.stats().dropped['rate-limited'], 1);
      assert.deepEqual(
        h.received.map((m) => [m.device?.tenant, m.payload[0].v]),
        [
          ['acme', 0],
          ['acme', 1],
          ['globex', 9],
        ],
      );
    });

    it('readings not yet completed downstream are bounded: beyond the cap datagrams are dropped as busy', async () => {
      const release: (() => void)[] = [];
      const held: CanonicalMessage[] = [];
      const h = await start({
        maxInFlight: 2,
        onReadings: (msg) => {
          held.push(msg);
          return new Promise<void>((resolve) => release.push(resolve));
        },
      });
      const tokens = [await h.issue(ACME_1), await h.issue(ACME_1), await h.issue(ACME_1)];
      for (let i = 0; i < 3; i++) await send(h, 'SN-1', tokens[i], { i });
      assert.equal(held.length, 2);
      assert.equal(await unspent(tokens), 1, 'a datagram dropped as busy leaves its token unspent');
      assert.equal(h.server.stats().dropped.busy, 1);
      assert.equal(h.server.stats().inFlight, 2);
      release.shift()!();
      await until('one released', () => h.server.stats().inFlight === 1);
      await send(h, 'SN-1', await h.issue(ACME_1), { i: 3 });
      assert.deepEqual(
        held.map((m) => m.payload[0].v),
        [0, 1, 3],
      );
      release.forEach((r) => r());
    });

    it('never answers a datagram, good or bad', async () => {
      const h = await start();
      const device = dgram.createSocket('udp4');
      const answers: Buffer[] = [];
      device.on('message', (m) => answers.push(m));
      await new Promise<void>((resolve) => device.bind(0, HOST, resolve));
      const token = await h.issue(ACME_1);
      const datagrams = [
        buildDatagram({ serial: 'SN-1', token, format: 'attributes', payload: { t: 1 } }),
        buildDatagram({ serial: 'SN-1', token, format: 'attributes', payload: { t: 1 } }), // replay
        buildDatagram({ serial: 'SN-2', token: await h.issue(ACME_1), format: 'attributes', payload: { t: 1 } }), // foreign
        Buffer.from([1, 200, 1, 2, 3]), // malformed
      ];
      const before = h.total();
      for (const d of datagrams) await new Promise<void>((resolve, reject) => device.send(d, h.port, HOST, (err) => (err ? reject(err) : resolve())));
      await h.handled(before, datagrams.length);
      await elapse(200); // a negative check: nothing more is handed on
      await new Promise<void>((resolve) => device.close(resolve));
      assert.equal(h.received.length, 1);
      assert.deepEqual(answers, [], 'no reply datagram');
    });

    it('1,000 datagrams with 1,000 tokens all arrive', async () => {
      const h = await start();
      const devices = Array.from({ length: 100 }, (_, i) => ({ tenant: `t${i % 5}`, serial: `D-${i}`, id: i }));
      const sent: string[] = [];
      const issued: Buffer[] = [];
      const BATCH = 50;
      // Tokens first: the loop below times the datagrams alone (each spends its token with one query).
      for (let i = 0; i < 1_000; i++) issued.push(await h.issue(devices[i % devices.length]));
      const started = Date.now();
      for (let b = 0; b < 1_000; b += BATCH) {
        const before = h.total();
        const batch: Promise<void>[] = [];
        for (let i = b; i < b + BATCH; i++) {
          const device = devices[i % devices.length];
          sent.push(`${device.serial}/seq=${i}`);
          batch.push(h.udp.send({ serial: device.serial, token: issued[i], format: 'senml-json', payload: [{ n: 'seq', v: i }] }));
        }
        await Promise.all(batch);
        await h.handled(before, BATCH);
      }
      assert.deepEqual(h.server.stats().dropped, Object.fromEntries(Object.keys(h.server.stats().dropped).map((k) => [k, 0])));
      assert.equal(h.received.length, 1_000);
      const got = h.received.map((m) => `${m.device?.id}/seq=${m.payload[0].v}`);
      assert.deepEqual(got.sort(), sent.sort());
      assert.ok(h.received.every((m) => m.payload[0].n === `${m.device?.id}/seq` && m.device?.tenant === `t${Number(m.device?.id.slice(2)) % 5}`));
      assert.equal(await unspent(issued), 0);
      console.log(`      1,000 datagrams in ${Date.now() - started} ms, one token spent in the database each`);
    });

    it('the one-shot client sends a reading from a socket of its own', async () => {
      const h = await start();
      const before = h.total();
      await sendReading({ host: HOST, port: h.port, serial: 'SN-1', token: (await h.issue(ACME_1)).toString('base64'), format: 'ultralight', payload: 'h|40' });
      await h.handled(before);
      assert.equal(h.received[0].payload[0].n, 'SN-1/h');
    });

    it('a port in use is refused with the reason, and close frees the port', async () => {
      const h = await start();
      const second = new UdpServer({
        port: h.port,
        host: HOST,
        limits: { maxFrameBytes: 1_024 },
        tokens: h.tokens,
        rate: unlimited(),
        onReadings: () => {},
      });
      await assert.rejects(second.listen(), /EADDRINUSE/);
      await h.server.close();
      await bindExclusive(h.port);
    });
  });

  describe('conflux-udp-in', function () {
    this.timeout(60_000);
    before(() => helper.startServer());
    after(() => helper.stopServer());
    afterEach(() => helper.unload());

    // The Node-RED runtime gives nodes RED.hooks (the listener tracks completion with onComplete);
    // the test helper's mock runtime does not, so the test hands over the runtime's own hooks.
    const udpIn = (red: any) => {
      red.hooks ??= require('@node-red/util').hooks;
      return udpInNode(red);
    };
    const NODES = [postgresNode, gatewayNode, udpIn, catchNode, delayNode];

    async function load(port: number, listener: Record<string, unknown> = {}, extra: Record<string, unknown>[] = []): Promise<void> {
      await helper.load(NODES, [
        { id: 'tab', type: 'tab' },
        { id: 'db', type: 'conflux-postgres', url: '' },
        { id: 'gw', type: 'conflux-gateway', database: 'db', maxFrameBytes: '128' },
        { id: 'listener', type: 'conflux-udp-in', z: 'tab', gateway: 'gw', port: String(port), host: HOST, wires: [['out']], ...listener },
        { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
        { id: 'out', type: 'helper', z: 'tab' },
        { id: 'caught', type: 'helper', z: 'tab' },
        ...extra,
      ] as helper.TestFlows);
    }

    /** SN-1 in the embedded database, and n tokens for it from the gateway. */
    async function device(n: number): Promise<Buffer[]> {
      const gw = helper.getNode('gw') as unknown as GatewayConfigNode;
      await createBusinessStore(await gw.database.sql()).create('default', 'devices', { serial: 'SN-1' });
      const found = (await (await gw.directory()).credentials('SN-1'))!.device;
      return (await gw.tokens.issue(found, n)).map((t) => t.token);
    }

    const statusText = () => (helper.getNode('listener') as any).status.lastCall?.args[0]?.text as string | undefined;

    async function waitStatus(re: RegExp): Promise<void> {
      await until(
        () => `status ${re}, got "${statusText()}"`,
        () => re.test(statusText() ?? ''),
      );
    }

    it('sends the canonical message of the device, counts drops by reason in its status, reports them to Catch, and frees the port on close', async () => {
      const port = await freePort();
      await load(port);
      await waitStatus(new RegExp(`^listening on 127\\.0\\.0\\.1:${port}$`));
      const gw = helper.getNode('gw') as unknown as GatewayConfigNode;
      const store = createBusinessStore(await gw.database.sql());
      await store.create('default', 'devices', { serial: 'SN-1' });
      await store.create('default', 'devices', { serial: 'SN-2' });
      const directory = await gw.directory();
      const sn1 = (await directory.credentials('SN-1'))!.device;
      const sn2 = (await directory.credentials('SN-2'))!.device;
      const [t1, t2, t3] = (await gw.tokens.issue(sn1, 3)).map((t) => t.token);
      const [u1] = (await gw.tokens.issue(sn2, 1)).map((t) => t.token);

      const out: Msg[] = [];
      const caught: Msg[] = [];
      helper.getNode('out').on('input', (m: Msg) => out.push(m));
      helper.getNode('caught').on('input', (m: Msg) => caught.push(m));
      const udp = await openUdpSender({ host: HOST, port });
      try {
        const good = buildDatagram({ serial: 'SN-1', token: t1, format: 'ultralight-ascii', payload: 't|21.5|h|40' });
        await udp.sendRaw(good);
        await until('the reading', () => out.length === 1);
        assert.deepEqual(out[0].device, { tenant: 'default', id: 'SN-1' });
        assert.deepEqual(
          out[0].payload.map((r: Msg) => [r.n, r.v]),
          [
            ['SN-1/t', 21.5],
            ['SN-1/h', 40],
          ],
        );
        assert.equal(out[0].source.transport, 'udp');

        await udp.sendRaw(good); // replay
        await udp.send({ serial: 'SN-2', token: t2, format: 'attributes', payload: { t: 1 } }); // SN-1's token, foreign
        await udp.send({ serial: 'SN-2', token: u1, format: 'attributes', payload: { t: 2 } });
        await udp.send({ serial: 'SN-1', token: t3, format: 'attributes', payload: { t: 3, pad: 'x'.repeat(100) } }); // over 128 bytes
        await udp.sendRaw(Buffer.from([9, 9, 9]));
        await until(
          () => `2 readings and 4 drops, got ${out.length} and ${caught.length}`,
          () => out.length === 2 && caught.length === 4,
        );
        assert.deepEqual(out[1].device, { tenant: 'default', id: 'SN-2' });
        await waitStatus(/^2 accepted, 1 oversized, 1 malformed, 1 replayed, 1 foreign$/);
        assert.deepEqual(caught.map((m) => m.reason).sort(), ['foreign', 'malformed', 'oversized', 'replayed']);
        const malformed = caught.find((m) => m.reason === 'malformed')!;
        assert.match(malformed.error.message, /dropped \(malformed\): version 9 is not supported/);
        assert.equal(malformed.remote.address, HOST);
        await udp.send({ serial: 'SN-1', token: t2, format: 'attributes', payload: { t: 4 } }); // the owner still can
        await until('the owner’s reading', () => out.length === 3);
      } finally {
        await udp.close();
      }
      await helper.unload();
      await bindExclusive(port); // the port is free again
    });

    it('holds a reading in flight until the wired node completes it: over Max in flight, datagrams are dropped as busy', async () => {
      const port = await freePort();
      await load(port, { maxInFlight: '1', wires: [['slow']] }, [
        { id: 'slow', type: 'delay', z: 'tab', pauseType: 'delay', timeout: '400', timeoutUnits: 'milliseconds', wires: [['out']] },
      ]);
      await waitStatus(/^listening on /);
      const [a, b, c] = await device(3);
      const out: Msg[] = [];
      const caught: Msg[] = [];
      helper.getNode('out').on('input', (m: Msg) => out.push(m));
      helper.getNode('caught').on('input', (m: Msg) => caught.push(m));
      const udp = await openUdpSender({ host: HOST, port });
      try {
        await udp.send({ serial: 'SN-1', token: a, format: 'attributes', payload: { n: 1 } });
        await waitStatus(/^1 accepted$/);
        await udp.send({ serial: 'SN-1', token: b, format: 'attributes', payload: { n: 2 } }); // the first is still in the delay
        await until('the busy drop', () => caught.length === 1);
        assert.equal(caught[0].reason, 'busy');
        await until('the first reading out of the delay', () => out.length === 1);
        await elapse(20); // the delay completes the first right after sending it on; no event tells the test
        await udp.send({ serial: 'SN-1', token: c, format: 'attributes', payload: { n: 3 } });
        await until('the third reading', () => out.length === 2);
        assert.deepEqual(
          out.map((m) => m.payload[0].v),
          [1, 3],
        );
        await waitStatus(/^2 accepted, 1 busy$/);
      } finally {
        await udp.close();
      }
    });

    it('shows a port already in use in red and sends the reason to the log', async () => {
      const port = await freePort();
      const holder = dgram.createSocket({ type: 'udp4', reuseAddr: false });
      await new Promise<void>((resolve) => holder.bind(port, HOST, resolve));
      try {
        await load(port);
        await waitStatus(new RegExp(`^port ${port} in use$`));
        const logged = helper.log().args.map((a: any[]) => String(a[0]?.msg));
        assert.ok(
          logged.some((m: string) => /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/.test(m)),
          `log: ${JSON.stringify(logged)}`,
        );
      } finally {
        await new Promise<void>((resolve) => holder.close(resolve));
      }
    });
  });
});
