/**
 * The short-term cache tier on Redis (DESIGN.md, "Embedded defaults and real servers"): the
 * ShortTermStore of types.ts, with the same semantics as the in-process store (see the header of
 * short-term-memory.ts, whose write planning this file shares). Works on a single server, a
 * sentinel-managed master or a cluster (redis.ts opens the client; this store never quits it).
 *
 * Keys, with T = encodeURIComponent(tenant) (so it holds no ':', '{' or '}') and N the name as is:
 *
 *   <prefix>{t:T}:latest:N   hash { t: "<t>", r: "<record JSON>" }, expires ttlSeconds after it was last replaced
 *   <prefix>{t:T}:window:N   sorted set, member = record JSON, score = t; expires max(ttl, window) seconds after a write
 *   <prefix>{t:T}:names      sorted set, member = name, score 0 (ZRANGEBYLEX prefix reads); expires with the
 *                            newest latest, and entries whose latest has expired are removed by the prefix read
 *                            that meets them
 *
 * The braces are a cluster hash tag: every key of a tenant is in one slot, so one script can touch
 * them all and a tenant's writes fit one pipeline. T cannot be empty inside the tag (an empty
 * "{}" would hash the whole key), hence "t:". The name is the rest of the key, after a fixed part,
 * so ':' or '{' in it is harmless.
 *
 * A write() is one pipeline of one script call per (tenant, name) in the batch: the script does
 * the "greatest t wins" compare-and-set, the index entry and the window trim atomically. On a
 * cluster, keys of different tenants may live on different nodes and ioredis cannot pipeline
 * across nodes, so there it is one pipeline per tenant, all sent at once.
 */
import type { Cluster, Pipeline, Redis } from 'ioredis';
import type { ResolvedRecord } from '../model/senml';
import { checkLimits, checkPrefixLimit, planWrite } from './short-term-memory';
import type { ShortTermLimits, ShortTermStore } from './types';

/*
 * KEYS: latest hash, window zset, names index. ARGV: name, ttlMs, windowSize, windowSeconds,
 * windowTtlMs, t, record JSON, then score/member pairs for the window (none when windowSize is 0).
 * Scores go through string.format('%.17g') because Lua's default number formatting keeps only
 * 14 digits, which would move the age boundary of epoch times with fractions.
 */
const WRITE_LUA = `
local cur = redis.call('HGET', KEYS[1], 't')
if (not cur) or tonumber(cur) <= tonumber(ARGV[6]) then
  redis.call('HSET', KEYS[1], 't', ARGV[6], 'r', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
if #ARGV >= 9 then
  for i = 8, #ARGV, 1000 do
    redis.call('ZADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  local size = tonumber(ARGV[3])
  local n = redis.call('ZCARD', KEYS[2])
  if n > size then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - size - 1) end
  local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local oldest = tonumber(top[2]) - tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.17g', oldest))
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1
`;

/*
 * KEYS: names index, then the latest keys of ARGV's names. Removes the names whose latest is gone,
 * checked inside the script so a name written again since the caller looked is not dropped.
 */
const PRUNE_LUA = `
local removed = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then removed = removed + redis.call('ZREM', KEYS[1], ARGV[i - 1]) end
end
return removed
`;

const WRITE_COMMAND = 'confluxShortTermWrite';
const PRUNE_COMMAND = 'confluxShortTermPrune';

type Client = Redis | Cluster;
type Args = (string | number | Buffer)[];
type Commands = {
  [WRITE_COMMAND](...args: Args): Promise<unknown>;
  [PRUNE_COMMAND](...args: Args): Promise<number>;
};

/** Prefix reads fetch the index in pages of this many names (more when the limit is larger). */
const PREFIX_PAGE = 100;
const MAX_PREFIX_PAGE = 1000;

/** The keys of one tenant; encodeURIComponent throws on a lone surrogate, reported as a TypeError. */
function tenantBase(keyPrefix: string, tenant: string): string {
  let encoded: string;
  try {
    encoded = encodeURIComponent(tenant);
  } catch {
    throw new TypeError('tenant is not valid Unicode');
  }
  return `${keyPrefix}{t:${encoded}}:`;
}

/** The server is unreachable: the store fails at once rather than wait on a connection it lost. */
export class CacheUnavailableError extends Error {
  override readonly name = 'CacheUnavailableError';
}

/** Throws the first error of a pipeline's replies. */
function check(results: [Error | null, unknown][] | null): void {
  if (!results) throw new Error('Redis pipeline was discarded');
  for (const [err] of results) if (err) throw err;
}

export function createRedisShortTerm(client: Client, limits: ShortTermLimits, keyPrefix = 'conflux:'): ShortTermStore {
  const { ttlMs, windowTtlMs } = checkLimits(limits);
  const cut: ShortTermLimits = { ttlSeconds: limits.ttlSeconds, windowSize: limits.windowSize, windowSeconds: limits.windowSeconds };
  // Idempotent: a second store on the same client defines the same scripts again.
  client.defineCommand(WRITE_COMMAND, { numberOfKeys: 3, lua: WRITE_LUA });
  client.defineCommand(PRUNE_COMMAND, { lua: PRUNE_LUA });
  const commands = client as unknown as Commands;
  const isCluster = client.isCluster;
  let closed = false;
  // Once the connection is lost, every call fails at once until it is ready again: waiting in
  // ioredis's offline queue (up to the command timeout, one batch at a time) would hold the flow
  // back for a cache that is down. Until a connection attempt has failed (a start, while Redis
  // starts as well), calls wait for the connection.
  let lost = false;
  const onClose = () => (lost = true);
  const onReady = () => (lost = false);
  client.on('close', onClose);
  client.on('ready', onReady);

  const assertOpen = () => {
    if (closed) throw new Error('the short-term store is closed');
    if (lost) throw new CacheUnavailableError('Redis is unreachable (reconnecting)');
  };

  return {
    kind: 'redis',

    async write(readings) {
      assertOpen();
      const plan = planWrite(readings, cut);
      if (plan.size === 0) return;
      const pipelines: Pipeline[] = [];
      let pipeline: Pipeline | undefined;
      for (const [tenant, names] of plan) {
        const base = tenantBase(keyPrefix, tenant);
        if (!pipeline || isCluster) pipelines.push((pipeline = client.pipeline() as Pipeline));
        const p = pipeline as unknown as Commands;
        for (const [name, np] of names) {
          const args: Args = [
            `${base}latest:${name}`,
            `${base}window:${name}`,
            `${base}names`,
            name,
            ttlMs,
            limits.windowSize,
            limits.windowSeconds,
            windowTtlMs,
            String(np.latestT),
            np.latestJson,
          ];
          for (const item of np.window) args.push(String(item.t), item.json);
          void p[WRITE_COMMAND](...args);
        }
      }
      const results = await Promise.all(pipelines.map((p) => p.exec()));
      for (const r of results) check(r);
    },

    async latest(tenant, name) {
      assertOpen();
      const json = await client.hget(`${tenantBase(keyPrefix, tenant)}latest:${name}`, 'r');
      return json === null ? undefined : (JSON.parse(json) as ResolvedRecord);
    },

    async latestByPrefix(tenant, prefix, limit) {
      assertOpen();
      const max = checkPrefixLimit(limit);
      if (max === 0) return [];
      const base = tenantBase(keyPrefix, tenant);
      const index = `${base}names`;
      // Every name starting with prefix sorts below prefix + 0xFF: no UTF-8 text holds that byte.
      let min: string | Buffer = prefix === '' ? '-' : `[${prefix}`;
      const upper: string | Buffer = prefix === '' ? '+' : Buffer.concat([Buffer.from(`(${prefix}`), Buffer.from([0xff])]);
      const page = Math.min(Math.max(max, PREFIX_PAGE), MAX_PREFIX_PAGE);
      const out: ResolvedRecord[] = [];
      for (;;) {
        const names: string[] = await client.zrangebylex(index, min, upper, 'LIMIT', 0, page);
        if (names.length === 0) break;
        const reads = client.pipeline();
        for (const name of names) reads.hget(`${base}latest:${name}`, 'r');
        const results = await reads.exec();
        check(results);
        const gone: string[] = [];
        for (let i = 0; i < names.length; i++) {
          const json = results![i][1] as string | null;
          if (json === null) gone.push(names[i]);
          else if (out.length < max) out.push(JSON.parse(json) as ResolvedRecord);
        }
        if (gone.length > 0) await commands[PRUNE_COMMAND](1 + gone.length, index, ...gone.map((n) => `${base}latest:${n}`), ...gone);
        if (out.length >= max || names.length < page) break;
        min = `(${names[names.length - 1]}`;
      }
      return out;
    },

    async window(tenant, name) {
      assertOpen();
      const members = await client.zrange(`${tenantBase(keyPrefix, tenant)}window:${name}`, 0, -1);
      return members.map((json) => JSON.parse(json) as ResolvedRecord);
    },

    /** The client belongs to the caller (a config node), which quits it. */
    async close() {
      closed = true;
      client.off('close', onClose);
      client.off('ready', onReady);
    },
  };
}
