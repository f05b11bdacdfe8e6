/**
 * The Redis connection (DESIGN.md, "Embedded defaults and real servers": the short-term cache
 * tier). Builds an `ioredis` client — single server, sentinel or cluster — from the settings a
 * config node holds; the stores built on it (short-term-redis.ts) never quit it, the config node
 * does. With nothing configured (isRedisConfigured false) the caller uses the in-process store
 * (short-term-memory.ts) instead. Framework-free.
 *
 * Failure policy: a cache write must not hang a flow while Redis is down. Commands wait in the
 * offline queue while (re)connecting, but every command carries a timeout (COMMAND_TIMEOUT_MS,
 * which also runs while it is queued) and the queue is flushed with an error after
 * MAX_RETRIES_PER_REQUEST failed reconnections, so a write to a down server rejects within a few
 * seconds (and once a connection was lost, short-term-redis.ts fails calls at once until it is
 * ready again). Reconnection itself goes on for ever, backing off to 2 s.
 */
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';

/** ioredis, loaded on first use (about 18 MiB resident): the default short-term store is in-process. */
function ioredis(): typeof import('ioredis') {
  return require('ioredis') as typeof import('ioredis');
}
import type { ConnectionOptions } from 'node:tls';

export interface RedisHost {
  host: string;
  port: number;
}

export interface RedisConfig {
  /** redis://[user:password@]host[:port][/db] or rediss:// (TLS). */
  url?: string;
  /** Sentinel addresses (see parseHostList); needs sentinelName. */
  sentinels?: RedisHost[];
  /** The master name the sentinels monitor. */
  sentinelName?: string;
  /** Cluster seed nodes (see parseHostList). */
  cluster?: RedisHost[];
  /** ACL user and password; win over those in url. Used for the data nodes, not for sentinels. */
  username?: string;
  password?: string;
  /** true: TLS with the system CAs; an object: PEM text of the CA, and false accepts any certificate (tests only). */
  tls?: boolean | { ca?: string; rejectUnauthorized?: boolean };
  /** Prefix of every key the stores write; default 'conflux:' (see keyPrefixOf). Not given to ioredis. */
  keyPrefix?: string;
}

export const DEFAULT_KEY_PREFIX = 'conflux:';
export const DEFAULT_REDIS_PORT = 6379;
export const DEFAULT_SENTINEL_PORT = 26379;
/** A command (queued or sent) fails after this long: a down or hung server cannot stall a write. */
export const COMMAND_TIMEOUT_MS = 5_000;
export const CONNECT_TIMEOUT_MS = 5_000;
/** Queued commands are failed after this many unsuccessful reconnection attempts. */
export const MAX_RETRIES_PER_REQUEST = 2;

/** Reconnect for ever, backing off 200 ms a try up to 2 s. */
const retryStrategy = (times: number): number => Math.min(times * 200, 2_000);

/** The key prefix a config names, or the default. */
export function keyPrefixOf(config: Pick<RedisConfig, 'keyPrefix'>): string {
  return config.keyPrefix ? config.keyPrefix : DEFAULT_KEY_PREFIX;
}

const nonEmpty = (s: string | undefined): boolean => typeof s === 'string' && s.trim() !== '';

/** False when no server is named (url, sentinels and cluster all empty): use the in-process store. */
export function isRedisConfigured(config: RedisConfig): boolean {
  return nonEmpty(config.url) || (config.sentinels?.length ?? 0) > 0 || (config.cluster?.length ?? 0) > 0;
}

/**
 * Splits a host list as an editor field or an environment variable holds it ("h1:26379, h2:26379",
 * commas and/or white space between; IPv6 as "[::1]:26379") into hosts. An entry without a port
 * gets defaultPort. Throws a TypeError naming the first entry that is not host[:port].
 */
export function parseHostList(text: string, defaultPort = DEFAULT_REDIS_PORT): RedisHost[] {
  const hosts: RedisHost[] = [];
  for (const entry of text.split(/[\s,]+/)) {
    if (entry === '') continue;
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/]+))(?::(\d{1,5}))?$/.exec(entry);
    const port = m?.[3] === undefined ? defaultPort : Number(m[3]);
    if (!m || !Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new TypeError(`Redis host "${entry}" is not host[:port]`);
    }
    hosts.push({ host: m[1] ?? m[2], port });
  }
  return hosts;
}

function tlsOptions(tls: RedisConfig['tls']): ConnectionOptions | undefined {
  if (!tls) return undefined;
  const options: ConnectionOptions = {};
  if (typeof tls === 'object') {
    if (tls.ca !== undefined) options.ca = tls.ca;
    if (tls.rejectUnauthorized !== undefined) options.rejectUnauthorized = tls.rejectUnauthorized;
  }
  return options;
}

/** Host, port, db, credentials and TLS from a redis:// or rediss:// URL. */
function fromUrl(text: string): RedisOptions {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new TypeError(`Redis url "${text}" is not a URL`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new TypeError(`Redis url "${text}" must be a redis: or rediss: URL`);
  }
  const options: RedisOptions = {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost',
    port: url.port ? Number(url.port) : DEFAULT_REDIS_PORT,
  };
  const db = url.pathname.replace(/^\//, '');
  if (db !== '') {
    if (!/^\d+$/.test(db)) throw new TypeError(`Redis url "${text}": the path must be a database number`);
    options.db = Number(db);
  }
  if (url.username) options.username = decodeURIComponent(url.username);
  if (url.password) options.password = decodeURIComponent(url.password);
  if (url.protocol === 'rediss:') options.tls = {};
  return options;
}

/**
 * A client for the configured server(s): exactly one of url, sentinels and cluster. `extra` is
 * merged over the options built here (for the cluster, over its top-level options). Connects at
 * once (lazyConnect false); the caller owns the client, listens to its 'error' events and quits it.
 */
export function openRedis(config: RedisConfig, extra: Partial<RedisOptions & ClusterOptions> = {}): Redis | Cluster {
  const kinds = [nonEmpty(config.url), (config.sentinels?.length ?? 0) > 0, (config.cluster?.length ?? 0) > 0];
  const count = kinds.filter(Boolean).length;
  if (count === 0) throw new TypeError('Redis needs a url, sentinels or cluster nodes');
  if (count > 1) throw new TypeError('Redis takes one of url, sentinels and cluster nodes, not several');

  const common: RedisOptions = {
    lazyConnect: false,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: MAX_RETRIES_PER_REQUEST,
  };
  const tls = tlsOptions(config.tls);
  const auth: RedisOptions = {};
  if (config.username) auth.username = config.username;
  if (config.password) auth.password = config.password;

  if (config.cluster?.length) {
    const options: ClusterOptions = {
      lazyConnect: false,
      // Needed while the slot map loads; cluster commands are bounded by the nodes' commandTimeout.
      enableOfflineQueue: true,
      clusterRetryStrategy: retryStrategy,
      redisOptions: { ...common, ...auth, ...(tls ? { tls } : {}) },
      ...extra,
    };
    return new (ioredis().Cluster)(
      config.cluster.map((h) => ({ host: h.host, port: h.port })),
      options,
    );
  }

  if (config.sentinels?.length) {
    if (!nonEmpty(config.sentinelName)) throw new TypeError('Redis sentinels need the master name (sentinelName)');
    const options: RedisOptions = {
      ...common,
      enableOfflineQueue: true,
      retryStrategy,
      sentinels: config.sentinels.map((h) => ({ host: h.host, port: h.port })),
      name: config.sentinelName!.trim(),
      ...auth,
    };
    if (tls) {
      // One TLS setting for both: the sentinels and the master they point at.
      options.tls = tls;
      options.enableTLSForSentinelMode = true;
      options.sentinelTLS = tls;
    }
    return new (ioredis().Redis)({ ...options, ...extra });
  }

  const options: RedisOptions = { ...fromUrl(config.url!), ...common, enableOfflineQueue: true, retryStrategy, ...auth };
  if (tls) options.tls = { ...(typeof options.tls === 'object' ? options.tls : {}), ...tls };
  return new (ioredis().Redis)({ ...options, ...extra });
}
