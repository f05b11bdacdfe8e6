/**
 * The short-term cache tier: one suite run against the in-process store and a real Redis —
 * greatest t wins, TTL, prefix reads in byte order, tenant isolation, the window's count and age
 * limits, awkward tenants and names, one pipeline per write — then what only one of them has
 * (memory's name bound, Redis's index pruning and connection options).
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { isRedisConfigured, openRedis, parseHostList } from '../../nodes/core/stores/redis';
import { createMemoryShortTerm } from '../../nodes/core/stores/short-term-memory';
import { createRedisShortTerm } from '../../nodes/core/stores/short-term-redis';
import type { Reading, ShortTermLimits, ShortTermStore } from '../../nodes/core/stores/types';
import { redisUrl } from '../support/servers';
import { elapse } from '../support/wait';

const T0 = 1_700_000_000;
const LIMITS: ShortTermLimits = { ttlSeconds: 60, windowSize: 10, windowSeconds: 3600 };

const rec = (n: string, t: number, v: number, extra: Partial<ResolvedRecord> = {}): ResolvedRecord => ({ n, t, v, ...extra });
const r = (tenant: string, record: ResolvedRecord): Reading => ({ tenant, record });
const ts = (records: ResolvedRecord[]) => records.map((x) => x.t);
/** Byte (UTF-8) order, the order both stores promise for names. */
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

interface Opened {
  store: ShortTermStore;
  /** The key prefix (Redis only). */
  prefix?: string;
}

interface Impl {
  name: 'memory' | 'Redis';
  setup(): Promise<void>;
  teardown(): Promise<void>;
  open(limits: ShortTermLimits): Opened;
  /** Calls to client.pipeline / client.multi, and commands sent outside them, since the last reset. */
  roundTrips?(): { pipelines: number; multis: number; direct: number };
  resetCounts?(): void;
}

function redisImpl(): Impl & { client?: Redis } {
  const counts = { pipelines: 0, multis: 0, direct: 0 };
  const impl: Impl & { client?: Redis } = {
    name: 'Redis',
    async setup() {
      const client = new Redis(redisUrl());
      await client.ping();
      // Spies: a pipeline or a transaction counts once; a command sent on its own (no stream) counts once.
      const pipeline = client.pipeline.bind(client);
      const multi = client.multi.bind(client) as (...a: unknown[]) => unknown;
      const sendCommand = client.sendCommand.bind(client);
      client.pipeline = ((...a: Parameters<typeof pipeline>) => (counts.pipelines++, pipeline(...a))) as typeof client.pipeline;
      client.multi = ((...a: unknown[]) => (counts.multis++, multi(...a))) as typeof client.multi;
      client.sendCommand = ((command: Parameters<typeof sendCommand>[0], stream?: Parameters<typeof sendCommand>[1]) => {
        if (!stream) counts.direct++;
        return sendCommand(command, stream);
      }) as typeof client.sendCommand;
      impl.client = client;
    },
    async teardown() {
      await impl.client?.quit();
    },
    open(limits) {
      const prefix = `test:${randomBytes(6).toString('hex')}:`;
      return { store: createRedisShortTerm(impl.client!, limits, prefix), prefix };
    },
    roundTrips: () => ({ ...counts }),
    resetCounts: () => void Object.assign(counts, { pipelines: 0, multis: 0, direct: 0 }),
  };
  return impl;
}

const memoryImpl: Impl = {
  name: 'memory',
  setup: async () => undefined,
  teardown: async () => undefined,
  open: (limits) => ({ store: createMemoryShortTerm(limits) }),
};

for (const impl of [memoryImpl, redisImpl()]) {
  describe(`short-term store on ${impl.name}`, function () {
    const opened: ShortTermStore[] = [];
    const open = (limits: ShortTermLimits = LIMITS) => {
      const o = impl.open(limits);
      opened.push(o.store);
      return o;
    };

    before(async function () {
      this.timeout(30_000);
      await impl.setup();
    });
    after(async () => impl.teardown());
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
    });

    it('reports its kind', () => {
      assert.equal(open().store.kind, impl.name === 'Redis' ? 'redis' : 'memory');
    });

    it('keeps the record with the greatest t; a late older one does not replace it, an equal t does', async () => {
      const { store } = open();
      assert.equal(await store.latest('acme', 'd/temp'), undefined);
      await store.write([r('acme', rec('d/temp', T0 + 10, 1)), r('acme', rec('d/temp', T0 + 20, 2))]);
      assert.deepEqual(await store.latest('acme', 'd/temp'), rec('d/temp', T0 + 20, 2));
      await store.write([r('acme', rec('d/temp', T0 + 15, 3))]);
      assert.deepEqual(await store.latest('acme', 'd/temp'), rec('d/temp', T0 + 20, 2), 'a late older record is ignored');
      await store.write([r('acme', rec('d/temp', T0 + 20, 4))]);
      assert.deepEqual(await store.latest('acme', 'd/temp'), rec('d/temp', T0 + 20, 4), 'equal t: the later write wins');
      // Within one batch too: the newest wins whatever its position, the last of equal t wins.
      await store.write([r('acme', rec('d/temp', T0 + 40, 5)), r('acme', rec('d/temp', T0 + 35, 6))]);
      assert.equal((await store.latest('acme', 'd/temp'))?.v, 5);
      await store.write([r('acme', rec('d/temp', T0 + 50, 7)), r('acme', rec('d/temp', T0 + 50, 8))]);
      assert.equal((await store.latest('acme', 'd/temp'))?.v, 8);
      assert.equal(await store.latest('acme', 'd/hum'), undefined);
    });

    it('returns every value kind exactly as written', async () => {
      const { store } = open();
      const records: ResolvedRecord[] = [
        { n: 'd/a', t: T0 + 0.000123, v: -1.5e-7, u: 'Cel' },
        { n: 'd/b', t: T0, vs: 'quote " backslash \\ brace } ✓ 😀' },
        { n: 'd/c', t: T0, vb: false },
        { n: 'd/d', t: T0, vd: 'AQID_-8', u: 'B' },
        { n: 'd/e', t: T0, s: 12.5, ut: 60 },
        { n: 'd/f', t: 1.5, v: 0, bver: 11 },
      ];
      await store.write(records.map((x) => r('acme', x)));
      for (const x of records) {
        assert.deepEqual(await store.latest('acme', x.n), x);
        assert.deepEqual(await store.window('acme', x.n), [x]);
      }
      assert.deepEqual(await store.latestByPrefix('acme', 'd/'), records);
    });

    it('expires a latest value ttlSeconds after it was last replaced, and leaves expired names out of prefix reads', async function () {
      this.timeout(10_000);
      const { store } = open({ ttlSeconds: 1, windowSize: 5, windowSeconds: 0 });
      await store.write([r('acme', rec('d/a', T0 + 10, 1)), r('acme', rec('d/b', T0 + 10, 1))]);
      await elapse(600);
      // a is replaced (its TTL restarts); b only gets a late older record (its TTL does not).
      await store.write([r('acme', rec('d/a', T0 + 20, 2)), r('acme', rec('d/b', T0 + 5, 2))]);
      assert.equal((await store.latest('acme', 'd/b'))?.v, 1);
      await elapse(650);
      assert.equal((await store.latest('acme', 'd/a'))?.v, 2);
      assert.equal(await store.latest('acme', 'd/b'), undefined);
      assert.deepEqual(ts(await store.latestByPrefix('acme', 'd/')), [T0 + 20]);
      assert.deepEqual(ts(await store.latestByPrefix('acme', '')), [T0 + 20]);
      await elapse(600);
      assert.equal(await store.latest('acme', 'd/a'), undefined);
      assert.deepEqual(await store.latestByPrefix('acme', ''), []);
      assert.deepEqual(await store.window('acme', 'd/a'), [], 'the window expires too');
      // Once expired, any record is the latest again, even an older one.
      await store.write([r('acme', rec('d/a', T0 + 1, 3))]);
      assert.deepEqual(await store.latest('acme', 'd/a'), rec('d/a', T0 + 1, 3));
      assert.deepEqual(ts(await store.latestByPrefix('acme', 'd')), [T0 + 1]);
    });

    it('keeps the window for max(ttlSeconds, windowSeconds)', async function () {
      this.timeout(10_000);
      const { store } = open({ ttlSeconds: 0.5, windowSize: 5, windowSeconds: 1.5 });
      await store.write([r('acme', rec('d/a', T0, 1)), r('acme', rec('d/a', T0 + 1, 2))]);
      await elapse(700);
      assert.equal(await store.latest('acme', 'd/a'), undefined);
      assert.deepEqual(ts(await store.window('acme', 'd/a')), [T0, T0 + 1]);
      await elapse(1000);
      assert.deepEqual(await store.window('acme', 'd/a'), []);
    });

    it('reads by prefix in byte order, up to the limit (default 1000), across many names', async () => {
      const { store } = open();
      const names = ['dev1', 'dev1/b', 'dev1/a', 'dev10/x', 'dev2/a', 'dev1:x', 'dev1{', 'dev1~', 'dev1é', 'dev1😀', 'dev1\uffee', 'dew', 'de'];
      await store.write(names.map((n, i) => r('acme', rec(n, T0 + i, i))));
      const sorted = [...names].sort(byteOrder);
      const got = (await store.latestByPrefix('acme', '')).map((x) => x.n);
      assert.deepEqual(got, sorted);
      assert.deepEqual(
        (await store.latestByPrefix('acme', 'dev1')).map((x) => x.n),
        sorted.filter((n) => n.startsWith('dev1')),
      );
      assert.deepEqual(
        (await store.latestByPrefix('acme', 'dev1/')).map((x) => x.n),
        ['dev1/a', 'dev1/b'],
      );
      assert.deepEqual(
        (await store.latestByPrefix('acme', 'dev1', 3)).map((x) => x.n),
        sorted.filter((n) => n.startsWith('dev1')).slice(0, 3),
      );
      assert.deepEqual(await store.latestByPrefix('acme', 'dev1', 0), []);
      assert.deepEqual(await store.latestByPrefix('acme', 'nope'), []);
      assert.deepEqual(await store.latestByPrefix('other', ''), []);
      await assert.rejects(store.latestByPrefix('acme', '', -1), TypeError);
      await assert.rejects(store.latestByPrefix('acme', '', 1.5), TypeError);

      // More names than one page of the index, and more than the default limit.
      const many = Array.from({ length: 1_250 }, (_, i) => `m/${String(i).padStart(4, '0')}`);
      await store.write(many.map((n, i) => r('acme', rec(n, T0, i))));
      assert.deepEqual(
        (await store.latestByPrefix('acme', 'm/', 150)).map((x) => x.n),
        many.slice(0, 150),
      );
      assert.deepEqual(
        (await store.latestByPrefix('acme', 'm/')).map((x) => x.n),
        many.slice(0, 1000),
      );
      assert.equal((await store.latestByPrefix('acme', 'm/', 5_000)).length, 1_250);
    });

    it('keeps tenants apart, whatever characters their ids and names hold', async () => {
      const { store } = open();
      // Built so that naive keys collide: tenant 'a}:latest:b' + name 'x' vs tenant 'a' + name 'b}:latest:x'.
      const tenants = ['acme', 'beta', 'a', 'a:b', 'a{b}', '{a}', '}', '', 'a%3Ab', 'ü', 'a}:latest:b', 'a}:window:b'];
      const names = ['x', 'b:x', '}:latest:x', '{x}', 'latest:x', 'b}:latest:x', 'b}:window:x'];
      const batch: Reading[] = [];
      tenants.forEach((tenant, i) => names.forEach((n, j) => batch.push(r(tenant, rec(n, T0 + i, i * 100 + j)))));
      await store.write(batch);
      for (const [i, tenant] of tenants.entries()) {
        for (const [j, n] of names.entries()) {
          assert.deepEqual(await store.latest(tenant, n), rec(n, T0 + i, i * 100 + j), `${tenant} ${n}`);
          assert.deepEqual(await store.window(tenant, n), [rec(n, T0 + i, i * 100 + j)]);
        }
        assert.deepEqual(
          (await store.latestByPrefix(tenant, '')).map((x) => x.v),
          [...names].sort(byteOrder).map((n) => i * 100 + names.indexOf(n)),
        );
      }
      assert.equal(await store.latest('nobody', 'x'), undefined);
    });

    it('caps the window by count, keeping the newest t, oldest first', async () => {
      const { store } = open({ ttlSeconds: 60, windowSize: 3, windowSeconds: 3600 });
      await store.write([3, 1, 2].map((i) => r('acme', rec('d/a', T0 + i, i))));
      assert.deepEqual(ts(await store.window('acme', 'd/a')), [T0 + 1, T0 + 2, T0 + 3]);
      await store.write([5, 0, 4].map((i) => r('acme', rec('d/a', T0 + i, i))));
      assert.deepEqual(ts(await store.window('acme', 'd/a')), [T0 + 3, T0 + 4, T0 + 5]);
      // A late record older than all three does not get in.
      await store.write([r('acme', rec('d/a', T0 + 2.5, 9))]);
      assert.deepEqual(ts(await store.window('acme', 'd/a')), [T0 + 3, T0 + 4, T0 + 5]);
      // A batch larger than the window keeps its newest.
      await store.write(Array.from({ length: 20 }, (_, i) => r('acme', rec('d/a', T0 + 100 + i, i))));
      assert.deepEqual(ts(await store.window('acme', 'd/a')), [T0 + 117, T0 + 118, T0 + 119]);
      assert.deepEqual(await store.window('acme', 'd/other'), []);
    });

    it('caps the window by age relative to its newest t, to the exact boundary', async () => {
      const { store } = open({ ttlSeconds: 60, windowSize: 100, windowSeconds: 10 });
      await store.write([r('acme', rec('d/a', T0 + 100, 1)), r('acme', rec('d/a', T0 + 105, 2))]);
      assert.deepEqual(ts(await store.window('acme', 'd/a')), [T0 + 100, T0 + 105]);
      await store.write([r('acme', rec('d/a', T0 + 111, 3))]);
      assert.deepEqual(ts(await store.window('acme', 'd/a')), [T0 + 105, T0 + 111]);
      await store.write([r('acme', rec('d/a', T0 + 100.5, 4)), r('acme', rec('d/a', T0 + 101, 5))]);
      assert.deepEqual(ts(await store.window('acme', 'd/a')), [T0 + 101, T0 + 105, T0 + 111], 'exactly windowSeconds old stays');
      // Epoch times with microseconds: the boundary must not be rounded (Lua prints 14 digits by default).
      const newest = T0 + 0.123456;
      const edge = newest - 10;
      await store.write([r('acme', rec('d/f', newest, 1)), r('acme', rec('d/f', edge, 2)), r('acme', rec('d/f', edge - 1e-6, 3))]);
      assert.deepEqual(ts(await store.window('acme', 'd/f')), [edge, newest]);
    });

    it('collapses identical records; keeps different records with the same t', async () => {
      const { store } = open();
      await store.write([r('acme', rec('d/a', T0, 1)), r('acme', rec('d/a', T0, 1))]);
      await store.write([r('acme', rec('d/a', T0, 1))]);
      assert.deepEqual(await store.window('acme', 'd/a'), [rec('d/a', T0, 1)]);
      await store.write([r('acme', rec('d/a', T0, 2)), r('acme', rec('d/a', T0 + 1, 3))]);
      assert.deepEqual(
        (await store.window('acme', 'd/a')).map((x) => x.v),
        [1, 2, 3],
      );
    });

    it('keeps no window when windowSize is 0', async () => {
      const { store } = open({ ttlSeconds: 60, windowSize: 0, windowSeconds: 60 });
      await store.write([r('acme', rec('d/a', T0, 1))]);
      assert.deepEqual(await store.window('acme', 'd/a'), []);
      assert.equal((await store.latest('acme', 'd/a'))?.v, 1);
    });

    it('writes 5,000 readings in one round trip', async function () {
      this.timeout(20_000);
      const { store } = open({ ttlSeconds: 60, windowSize: 5, windowSeconds: 3600 });
      const batch = Array.from({ length: 5_000 }, (_, i) => r(i % 2 ? 'acme' : 'beta', rec(`dev${i % 1000}/q${i % 7}`, T0 + i, i)));
      impl.resetCounts?.();
      await store.write(batch);
      if (impl.roundTrips) assert.deepEqual(impl.roundTrips(), { pipelines: 1, multis: 0, direct: 0 });
      const last = batch[batch.length - 1].record;
      assert.deepEqual(await store.latest('acme', last.n), last);
      const names = new Set(batch.filter((x) => x.tenant === 'acme').map((x) => x.record.n));
      assert.equal((await store.latestByPrefix('acme', '', 10_000)).length, names.size);
      const w = await store.window('beta', 'dev0/q0');
      assert.deepEqual(
        w,
        batch
          .filter((x) => x.tenant === 'beta' && x.record.n === 'dev0/q0')
          .map((x) => x.record)
          .slice(-5),
      );
    });

    it('rejects a bad batch before writing any of it, and bad limits', async () => {
      const { store } = open();
      const bad = [r('acme', rec('d/a', T0, 1)), r('acme', { n: 'd/b', t: Number.NaN, v: 1 })];
      await assert.rejects(store.write(bad), TypeError);
      await assert.rejects(store.write([{ tenant: 1 as unknown as string, record: rec('d/a', T0, 1) }]), TypeError);
      assert.equal(await store.latest('acme', 'd/a'), undefined);
      await store.write([]);
      assert.throws(() => open({ ttlSeconds: 0, windowSize: 1, windowSeconds: 1 }), TypeError);
      assert.throws(() => open({ ttlSeconds: 1, windowSize: 1.5, windowSeconds: 1 }), TypeError);
      assert.throws(() => open({ ttlSeconds: 1, windowSize: 1, windowSeconds: -1 }), TypeError);
    });

    it('refuses work once closed', async () => {
      const { store } = open();
      await store.close();
      await assert.rejects(store.write([r('acme', rec('d/a', T0, 1))]), /closed/);
      await assert.rejects(store.latest('acme', 'd/a'), /closed/);
    });
  });
}

describe('short-term store in memory: bounds', () => {
  it('keeps at most maxNames names, evicting the least recently written', async () => {
    const store = createMemoryShortTerm({ ...LIMITS, maxNames: 3 });
    try {
      assert.equal(store.size, 0);
      await store.write([r('acme', rec('a', T0, 1)), r('acme', rec('b', T0, 1)), r('beta', rec('c', T0, 1))]);
      await store.write([r('acme', rec('a', T0 - 5, 2))]); // even a late older record counts as a write
      await store.write([r('beta', rec('d', T0, 1))]);
      assert.equal(await store.latest('acme', 'b'), undefined, 'b was the least recently written');
      assert.deepEqual(await store.window('acme', 'b'), []);
      assert.deepEqual(
        (await store.latestByPrefix('acme', '')).map((x) => x.n),
        ['a'],
      );
      assert.deepEqual(
        (await store.latestByPrefix('beta', '')).map((x) => x.n),
        ['c', 'd'],
      );
      // A batch with more names than the bound keeps its last ones.
      await store.write(['e', 'f', 'g', 'h'].map((n) => r('acme', rec(n, T0, 1))));
      assert.deepEqual(
        (await store.latestByPrefix('acme', '')).map((x) => x.n),
        ['f', 'g', 'h'],
      );
      assert.deepEqual(await store.latestByPrefix('beta', ''), []);
      assert.equal(store.size, 3);
    } finally {
      await store.close();
    }
    assert.throws(() => createMemoryShortTerm({ ...LIMITS, maxNames: 0 }), TypeError);
  });

  it("sweeps expired names on its unref'd timer without a read, and close() clears the timer", async function () {
    this.timeout(10_000);
    const realSet = globalThis.setInterval;
    const realClear = globalThis.clearInterval;
    const timers: NodeJS.Timeout[] = [];
    const cleared: unknown[] = [];
    let store: ReturnType<typeof createMemoryShortTerm>;
    globalThis.setInterval = ((...a: Parameters<typeof realSet>) => {
      const timer = realSet(...a);
      timers.push(timer);
      return timer;
    }) as typeof setInterval;
    globalThis.clearInterval = ((timer: NodeJS.Timeout) => (cleared.push(timer), realClear(timer))) as typeof clearInterval;
    try {
      store = createMemoryShortTerm({ ttlSeconds: 0.2, windowSize: 2, windowSeconds: 0 });
      assert.equal(timers.length, 1);
      assert.equal(timers[0].hasRef(), false, 'the timer does not keep the process alive');
      await store.write([r('acme', rec('a', T0, 1)), r('acme', rec('b', T0, 1)), r('beta', rec('a', T0, 1))]);
      assert.equal(store.size, 3);
      await elapse(1_300); // the sweep runs every max(1 s, ttl)
      assert.equal(store.size, 0, 'swept without a read');
      await store.write([r('acme', rec('c', T0, 1))]);
      assert.equal(store.size, 1);
      await store.close();
      assert.deepEqual(cleared, timers);
      assert.equal(store.size, 0);
    } finally {
      globalThis.setInterval = realSet;
      globalThis.clearInterval = realClear;
    }
  });

  it('drops an expired name when a read meets it', async function () {
    this.timeout(5_000);
    const store = createMemoryShortTerm({ ttlSeconds: 0.2, windowSize: 2, windowSeconds: 0 });
    try {
      await store.write([r('acme', rec('a', T0, 1)), r('acme', rec('b', T0, 1)), r('acme', rec('c', T0, 1))]);
      await elapse(300);
      assert.equal(await store.latest('acme', 'a'), undefined);
      assert.equal(store.size, 2);
      assert.deepEqual(await store.latestByPrefix('acme', ''), []);
      assert.equal(store.size, 0);
    } finally {
      await store.close();
    }
  });
});

describe('short-term store on Redis: index and client', () => {
  let client: Redis;
  before(async function () {
    this.timeout(30_000);
    client = new Redis(redisUrl());
    await client.ping();
  });
  after(async () => client?.quit());

  it('uses one hash-tagged key set per tenant and prunes expired names from the index', async function () {
    this.timeout(10_000);
    const prefix = `test:${randomBytes(6).toString('hex')}:`;
    const store = createRedisShortTerm(client, { ttlSeconds: 1, windowSize: 3, windowSeconds: 0 }, prefix);
    await store.write([r('a:b{c}', rec('d/x', T0, 1)), r('a:b{c}', rec('d/y', T0, 1))]);
    const keys = (await client.keys(`${prefix}*`)).sort();
    assert.deepEqual(keys, [
      `${prefix}{t:a%3Ab%7Bc%7D}:latest:d/x`,
      `${prefix}{t:a%3Ab%7Bc%7D}:latest:d/y`,
      `${prefix}{t:a%3Ab%7Bc%7D}:names`,
      `${prefix}{t:a%3Ab%7Bc%7D}:window:d/x`,
      `${prefix}{t:a%3Ab%7Bc%7D}:window:d/y`,
    ]);
    assert.deepEqual([keySlot('123456789'), keySlot('foo'), keySlot('x{foo}y')], [0x31c3, 12182, 12182]);
    assert.equal(new Set(keys.map(keySlot)).size, 1, 'every key of a tenant is in one cluster slot');
    await store.write([r('', rec('a', T0, 1)), r('', rec('b', T0, 1))]);
    const empty = (await client.keys(`${prefix}*`)).filter((k) => !keys.includes(k));
    assert.equal(empty.length, 5);
    assert.equal(new Set(empty.map(keySlot)).size, 1, 'the empty tenant too');
    const index = `${prefix}{t:a%3Ab%7Bc%7D}:names`;
    await elapse(600);
    await store.write([r('a:b{c}', rec('d/y', T0 + 1, 2))]);
    await elapse(600);
    // d/x expired; its index entry stays until a prefix read meets it.
    assert.deepEqual(await client.zrange(index, 0, -1), ['d/x', 'd/y']);
    assert.deepEqual(
      (await store.latestByPrefix('a:b{c}', 'd/')).map((x) => x.n),
      ['d/y'],
    );
    assert.deepEqual(await client.zrange(index, 0, -1), ['d/y']);
    assert.ok((await client.pttl(index)) > 0, 'the index expires too');
    await store.close();
    assert.equal(client.status, 'ready', 'close() leaves the client to its owner');
  });
});

/** A key's Redis Cluster slot: CRC16/XMODEM of its hash tag (or of the whole key) mod 16384. */
function keySlot(key: string): number {
  let bytes = Buffer.from(key);
  const open = bytes.indexOf('{');
  const close = open >= 0 ? bytes.indexOf('}', open + 1) : -1;
  if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

describe('Redis connection (redis.ts)', () => {
  it('parses host lists', () => {
    assert.deepEqual(parseHostList('h1:26379, h2:26380 h3,[::1]:7000', 26379), [
      { host: 'h1', port: 26379 },
      { host: 'h2', port: 26380 },
      { host: 'h3', port: 26379 },
      { host: '::1', port: 7000 },
    ]);
    assert.deepEqual(parseHostList(' , '), []);
    assert.deepEqual(parseHostList('redis.local'), [{ host: 'redis.local', port: 6379 }]);
    assert.throws(() => parseHostList('h1:99999'), /h1:99999/);
    assert.throws(() => parseHostList('redis://h1:6379'), TypeError);
    assert.throws(() => parseHostList('h1:x'), TypeError);
  });

  it('is configured when a url, sentinels or cluster nodes are named', () => {
    assert.equal(isRedisConfigured({}), false);
    assert.equal(isRedisConfigured({ url: '  ', sentinels: [], cluster: [], password: 'p' }), false);
    assert.equal(isRedisConfigured({ url: 'redis://h' }), true);
    assert.equal(isRedisConfigured({ sentinels: [{ host: 'h', port: 26379 }] }), true);
    assert.equal(isRedisConfigured({ cluster: [{ host: 'h', port: 6379 }] }), true);
  });

  it('refuses an ambiguous or unusable config', () => {
    assert.throws(() => openRedis({}), TypeError);
    assert.throws(() => openRedis({ url: 'redis://h', cluster: [{ host: 'h', port: 1 }] }), /one of/);
    assert.throws(() => openRedis({ url: 'http://h' }), /redis: or rediss:/);
    assert.throws(() => openRedis({ url: 'redis://h/x' }), /database number/);
    assert.throws(() => openRedis({ sentinels: [{ host: 'h', port: 26379 }] }), /sentinelName/);
  });

  it('connects from a url with sane options, and the store works on it', async function () {
    this.timeout(10_000);
    const client = openRedis({ url: redisUrl() }) as Redis;
    try {
      assert.equal(client.options.lazyConnect, false);
      assert.equal(client.options.maxRetriesPerRequest, 2);
      assert.ok(client.options.commandTimeout! > 0);
      const store = createRedisShortTerm(client, LIMITS, `test:${randomBytes(6).toString('hex')}:`);
      await store.write([r('acme', rec('d/a', T0, 1))]);
      assert.equal((await store.latest('acme', 'd/a'))?.v, 1);
    } finally {
      await client.quit();
    }
  });

  it('takes credentials from the config over the url', () => {
    const client = openRedis({ url: 'redis://u:p%40ss@127.0.0.1:1/3' }, { lazyConnect: true }) as Redis;
    try {
      assert.deepEqual([client.options.username, client.options.password, client.options.db, client.options.port], ['u', 'p@ss', 3, 1]);
    } finally {
      client.disconnect();
    }
    const other = openRedis(
      { url: 'rediss://u:p@127.0.0.1:1', username: 'me', password: 'secret', tls: { rejectUnauthorized: false } },
      { lazyConnect: true },
    ) as Redis;
    try {
      assert.deepEqual([other.options.username, other.options.password], ['me', 'secret']);
      assert.equal((other.options.tls as { rejectUnauthorized?: boolean }).rejectUnauthorized, false);
    } finally {
      other.disconnect();
    }
  });

  it('fails a write to a server that is down within a few seconds', async function () {
    this.timeout(15_000);
    const client = openRedis({ url: 'redis://127.0.0.1:1' }) as Redis;
    client.on('error', () => undefined);
    try {
      const store = createRedisShortTerm(client, LIMITS);
      const t0 = Date.now();
      await assert.rejects(store.write([r('acme', rec('d/a', T0, 1))]));
      assert.ok(Date.now() - t0 < 8_000, `failed after ${Date.now() - t0} ms`);
    } finally {
      client.disconnect();
    }
  });
});
