/**
 * The gateway's UDP tokens and per-tenant rate limit in the database (issue 14): first each piece
 * on both engines (PostgreSQL and PGlite), then two gateways — two independent sets of the core
 * objects, each over its own pool, on one PostgreSQL database, as two Conflux instances run — where
 * a token issued on one is spent on the other, a replay is refused on either, and both together
 * hammering one tenant stay within its rate.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { createDeviceDirectory, type DeviceIdentity } from '../../nodes/core/devices/directory';
import { SessionRegistry } from '../../nodes/core/devices/sessions';
import { TenantRateLimiter } from '../../nodes/core/devices/tenant-rate';
import { UdpTokens } from '../../nodes/core/devices/udp-tokens';
import type { CanonicalMessage } from '../../nodes/core/model/message';
import { createHttpIngest, type HttpIngest } from '../../nodes/core/protocol/http-ingest';
import { TcpDeviceServer } from '../../nodes/core/protocol/tcp-server';
import { UdpServer, type UdpDropReason } from '../../nodes/core/protocol/udp-server';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { connect, type TcpDeviceClient } from '../../tools/device-client/tcp';
import { openUdpSender, type UdpSender } from '../../tools/device-client/udp';
import { ENGINES, withMigratedDatabase } from '../support/engines';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';

const SN1: DeviceIdentity = { tenant: 'acme', serial: 'SN-1', id: 1 };
const SN2: DeviceIdentity = { tenant: 'acme', serial: 'SN-2', id: 2 };

/** A client that counts its queries, and fails them all while `down` is set. */
function counting(db: SqlClient): { sql: () => Promise<SqlClient>; queries: () => number; down(on: boolean): void } {
  let n = 0;
  let down = false;
  const client: SqlClient = {
    kind: db.kind,
    query: (text, params) => {
      n++;
      return down ? Promise.reject(new Error('connection refused')) : db.query(text, params);
    },
    exec: (script) => db.exec(script),
    transaction: (fn) => db.transaction(fn),
    listen: (channel, onPayload, onReconnect) => db.listen(channel, onPayload, onReconnect),
    close: () => db.close(),
  };
  return { sql: async () => client, queries: () => n, down: (on) => (down = on) };
}

for (const engine of ENGINES) {
  describe(`UDP tokens in the database (${engine.name})`, () => {
    let db: SqlClient;
    withMigratedDatabase(engine, (opened) => (db = opened));
    const sql = () => Promise.resolve(db);

    it('a token works once, for its own device: the device comes back; a replay, another device and a stranger are told apart', async () => {
      const tokens = new UdpTokens(sql, { ttlMs: 60_000 });
      const [a, b] = await tokens.issue(SN1, 2);
      assert.equal(a.token.length, 16);
      assert.deepEqual(await tokens.spend('SN-1', a.token), { ok: true, device: SN1 });
      assert.deepEqual(await tokens.spend('SN-1', a.token), { ok: false, reason: 'replayed' });
      assert.deepEqual(await tokens.spend('SN-2', b.token), { ok: false, reason: 'foreign' });
      assert.deepEqual(await tokens.spend('SN-1', b.token), { ok: true, device: SN1 }, 'a foreign try leaves it to its owner');
      assert.deepEqual(await tokens.spend('SN-1', randomBytes(16)), { ok: false, reason: 'unknown' });
    });

    it('an expired token is refused and spent; one token life after its expiry prune() forgets it, in bounded batches', async () => {
      let clock = 1_000_000;
      const tokens = new UdpTokens(sql, { ttlMs: 5_000, now: () => clock, pruneLimit: 3 });
      const [late] = await tokens.issue(SN2);
      const kept = await tokens.issue(SN2, 4);
      clock += 5_000;
      assert.deepEqual(await tokens.spend('SN-2', late.token), { ok: false, reason: 'expired' });
      assert.deepEqual(await tokens.spend('SN-2', late.token), { ok: false, reason: 'replayed' });
      assert.equal(await tokens.prune(), 0, 'kept for a token life after expiry');
      clock += 5_000;
      assert.equal(await tokens.prune(), 3, 'at most pruneLimit at once');
      assert.equal(await tokens.prune(), 2);
      assert.deepEqual(await tokens.spend('SN-2', late.token), { ok: false, reason: 'unknown' });
      assert.deepEqual(await tokens.spend('SN-2', kept[0].token), { ok: false, reason: 'unknown' });
    });

    it('a device holds at most maxPerDevice tokens: issuing more drops its oldest', async () => {
      let clock = 2_000_000;
      const tokens = new UdpTokens(sql, { ttlMs: 60_000, maxPerDevice: 5, now: () => clock });
      const device: DeviceIdentity = { tenant: 'acme', serial: 'SN-CAP', id: 9 };
      const first = [];
      for (let i = 0; i < 3; i++, clock++) first.push(...(await tokens.issue(device)));
      const second = await tokens.issue(device, 4);
      const outcomes = await Promise.all([...first, ...second].map((t) => tokens.spend('SN-CAP', t.token)));
      assert.deepEqual(
        outcomes.map((o) => (o.ok ? 'ok' : o.reason)),
        ['unknown', 'unknown', 'ok', 'ok', 'ok', 'ok', 'ok'],
      );
    });

    it('spent at once by ten callers, a token is accepted once', async () => {
      const tokens = new UdpTokens(sql, { ttlMs: 60_000 });
      const [t] = await tokens.issue(SN1);
      const outcomes = await Promise.all(Array.from({ length: 10 }, () => tokens.spend('SN-1', t.token)));
      assert.equal(outcomes.filter((o) => o.ok).length, 1);
      assert.ok(outcomes.every((o) => o.ok || o.reason === 'replayed'));
    });
  });

  describe(`per-tenant rate in the database (${engine.name})`, () => {
    let db: SqlClient;
    withMigratedDatabase(engine, (opened) => (db = opened));

    it('0 is unlimited and never asks the database', async () => {
      const c = counting(db);
      const rate = new TenantRateLimiter({ sql: c.sql, scope: 'g', ratePerSecond: 0 });
      for (let i = 0; i < 1_000; i++) assert.equal(await rate.take('acme'), true);
      assert.equal(c.queries(), 0);
    });

    it('a burst, then the rate; Retry-After says when; other tenants and gateways have budgets of their own', async () => {
      let clock = 10_000_000;
      const rate = new TenantRateLimiter({ sql: async () => db, scope: 'g1', ratePerSecond: 10, burst: 5, now: () => clock });
      assert.equal(rate.slice, 1);
      for (let i = 0; i < 5; i++) assert.equal(await rate.take('acme'), true, `burst ${i}`);
      assert.equal(await rate.take('acme'), false);
      assert.equal(rate.retryAfter('acme'), 1);
      clock += 99;
      assert.equal(await rate.take('acme'), false, 'not refilled yet');
      clock += 1;
      assert.equal(await rate.take('acme'), true, 'one more after 1/10 s');
      assert.equal(await rate.take('acme'), false);
      assert.equal(await rate.take('globex'), true);
      const other = new TenantRateLimiter({ sql: async () => db, scope: 'g2', ratePerSecond: 10, burst: 5, now: () => clock });
      assert.equal(await other.take('acme'), true, 'another gateway');
    });

    it('leases a slice at a time: 80 messages cost 8 queries; two instances share one bucket', async () => {
      const clock = 20_000_000;
      const c = counting(db);
      const a = new TenantRateLimiter({ sql: c.sql, scope: 'g3', ratePerSecond: 100, now: () => clock });
      const b = new TenantRateLimiter({ sql: async () => db, scope: 'g3', ratePerSecond: 100, now: () => clock });
      assert.equal(a.slice, 10);
      let accepted = 0;
      for (let i = 0; i < 80; i++) if (await a.take('acme')) accepted++;
      assert.equal(c.queries(), 8);
      for (let i = 0; i < 80; i++) if (await b.take('acme')) accepted++;
      assert.equal(accepted, 100, 'the burst, shared');
      assert.equal(await a.take('acme'), false);
    });

    it('concurrent messages of a tenant wait on one lease', async () => {
      const c = counting(db);
      const rate = new TenantRateLimiter({ sql: c.sql, scope: 'g4', ratePerSecond: 1_000, burst: 50, now: () => 30_000_000 });
      const answers = await Promise.all(Array.from({ length: 60 }, () => rate.take('acme')));
      assert.equal(answers.filter(Boolean).length, 50);
      assert.ok(c.queries() <= 11, `${c.queries()} queries`);
    });

    it('an unreachable database rejects with the reason, and is not asked again for a second', async () => {
      let clock = 40_000_000;
      const c = counting(db);
      const rate = new TenantRateLimiter({ sql: c.sql, scope: 'g5', ratePerSecond: 10, now: () => clock });
      c.down(true);
      await assert.rejects(rate.take('acme'), /the rate limit cannot be checked: connection refused/);
      await assert.rejects(rate.take('acme'), /connection refused/);
      assert.equal(c.queries(), 1);
      c.down(false);
      clock += 1_000;
      assert.equal(await rate.take('acme'), true);
    });
  });
}

describe('two gateways on one PostgreSQL database', function () {
  this.timeout(120_000);
  const RATE = 100;

  interface Instance {
    db: SqlClient;
    tokens: UdpTokens;
    rate: TenantRateLimiter;
    udp: UdpServer;
    sender: UdpSender;
    received: CanonicalMessage[];
    dropped: UdpDropReason[];
  }
  let url: string;
  let a: Instance;
  let b: Instance;
  let tcp: TcpDeviceServer;
  let tcpPort: number;
  let http: HttpIngest;
  const devices: TcpDeviceClient[] = [];

  /** One instance's core objects, over a pool of its own. */
  async function instance(): Promise<Instance> {
    const db = await openSql({ connectionString: url, poolSize: 5 });
    const sql = async () => db;
    const tokens = new UdpTokens(sql, { ttlMs: 60_000 });
    const rate = new TenantRateLimiter({ sql, scope: 'gateway', ratePerSecond: RATE });
    const received: CanonicalMessage[] = [];
    const dropped: UdpDropReason[] = [];
    const udp = new UdpServer({
      port: 0,
      host: '127.0.0.1',
      limits: { maxFrameBytes: 1_024 },
      tokens,
      rate: new TenantRateLimiter({ sql, scope: 'gateway-udp', ratePerSecond: 0 }),
      onReadings: (m) => void received.push(m),
      onRejected: (reason) => void dropped.push(reason),
    });
    const { port } = await udp.listen();
    return { db, tokens, rate, udp, sender: await openUdpSender({ host: '127.0.0.1', port }), received, dropped };
  }

  before(async function () {
    this.timeout(60_000);
    url = await freshDatabase();
    const setup = await openSql({ connectionString: url, poolSize: 1 });
    try {
      await migrate(setup);
      const store = createBusinessStore(setup);
      for (const serial of ['SN-1', 'SN-2']) {
        const d = await store.create('default', 'devices', { serial });
        await store.create('default', 'device_keys', { device_id: d.id, key: `key of ${serial}`, iterations: 4096 });
      }
    } finally {
      await setup.close();
    }
    a = await instance();
    b = await instance();
    // A issues tokens over TCP, B over HTTP: each listener takes them from its own gateway.
    tcp = new TcpDeviceServer({
      directory: createDeviceDirectory(a.db),
      sessions: new SessionRegistry(10),
      rate: a.rate,
      tokens: a.tokens,
      limits: { maxFrameBytes: 65_536, idleTimeoutMs: 60_000 },
      onReadings: () => undefined,
    });
    ({ port: tcpPort } = await tcp.listen(0, '127.0.0.1'));
    const directoryB = createDeviceDirectory(b.db);
    http = createHttpIngest({
      directory: async () => directoryB,
      sql: async () => b.db,
      maxBodyBytes: 1_024,
      rate: b.rate,
      tokens: b.tokens,
      inFlight: { size: 0, max: 100 },
      emit: () => undefined,
    });
  });

  after(async () => {
    await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
    await tcp?.close();
    for (const i of [a, b]) {
      if (!i) continue;
      await i.sender.close();
      await i.udp.close();
      await i.db.close();
    }
  });

  async function datagram(on: Instance, serial: string, token: Buffer, v: number): Promise<void> {
    const before = on.received.length + on.dropped.length;
    await on.sender.send({ serial, token, format: 'attributes', payload: { v } });
    await until('the datagram handled', () => on.received.length + on.dropped.length > before);
  }

  it('a token issued on A is spent on B; its replay is refused on A; a foreign device is refused', async () => {
    const device = await connect({ port: tcpPort, serial: 'SN-1', key: 'key of SN-1' });
    devices.push(device);
    const grant = await device.requestUdpTokens(2);
    await datagram(b, 'SN-1', grant.tokens[0], 1);
    assert.deepEqual(
      b.received.map((m) => [m.device, m.payload[0].v]),
      [[{ tenant: 'default', id: 'SN-1' }, 1]],
    );
    await datagram(a, 'SN-1', grant.tokens[0], 1);
    await datagram(b, 'SN-1', grant.tokens[0], 1);
    assert.deepEqual(a.dropped, ['replayed']);
    assert.deepEqual(b.dropped, ['replayed']);

    // SN-2's token, issued by B over HTTP, presented by SN-1 on A: foreign; SN-2 can still use it.
    const answer = await http.handle({
      route: 'tokens',
      method: 'POST',
      serial: 'SN-2',
      query: {},
      headers: { authorization: 'Bearer SN-2:key of SN-2' },
      body: Buffer.alloc(0),
    });
    assert.equal(answer.status, 200, answer.body.toString());
    const stolen = Buffer.from(JSON.parse(answer.body.toString()).tokens[0], 'base64');
    await datagram(a, 'SN-1', stolen, 2);
    assert.deepEqual(a.dropped, ['replayed', 'foreign']);
    await datagram(a, 'SN-2', stolen, 3);
    assert.deepEqual(
      a.received.map((m) => [m.device?.id, m.payload[0].v]),
      [['SN-2', 3]],
    );
    await datagram(b, 'SN-1', grant.tokens[1], 4);
    assert.equal(b.received.length, 2);
  });

  it(`two instances hammering one tenant accept at most burst + rate × time + a slice each (rate ${RATE}/s)`, async () => {
    const counts = { a: 0, b: 0 };
    const started = performance.now();
    const stopAt = started + 1_500;
    const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
    // Four callers per instance, each asking again as soon as it has its answer.
    const hammer = async (rate: TenantRateLimiter, key: 'a' | 'b') => {
      while (performance.now() < stopAt) {
        if (await rate.take('default')) counts[key]++;
        await turn(); // lets the instance's sockets in: a refusal is answered from memory
      }
    };
    await Promise.all([0, 1, 2, 3].flatMap(() => [hammer(a.rate, 'a'), hammer(b.rate, 'b')]));
    const seconds = (performance.now() - started) / 1000;
    const accepted = counts.a + counts.b;
    const most = a.rate.burst + RATE * seconds + a.rate.slice + b.rate.slice;
    console.log(`      ${accepted} accepted in ${seconds.toFixed(2)} s (A ${counts.a}, B ${counts.b}); at most ${most.toFixed(0)}`);
    assert.ok(accepted <= most, `${accepted} accepted, more than ${most}`);
    assert.ok(counts.a > 0 && counts.b > 0, 'both instances got a share');
    assert.ok(accepted >= a.rate.burst + RATE * seconds * 0.5, `${accepted} accepted: far below the rate`);
  });
});
