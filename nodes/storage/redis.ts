/**
 * conflux-redis: the short-term cache — its connection (one Redis, sentinels or a cluster) and
 * its policy (TTL, window). Empty means the in-process store with the same semantics and
 * limits. Every conflux-short-term node naming this config shares one store, so a node that
 * writes and a node that reads see the same data.
 */
import type { NodeAPI, NodeDef } from 'node-red';
import type { RedisConfigNode, RedisCredentials } from '../shared/config-nodes';
import { DEFAULT_SENTINEL_PORT, isRedisConfigured, openRedis, parseHostList, type RedisConfig } from '../core/stores/redis';
import { createMemoryShortTerm } from '../core/stores/short-term-memory';
import { createRedisShortTerm } from '../core/stores/short-term-redis';
import type { ShortTermLimits, ShortTermStore } from '../core/stores/types';
import { boolField, intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { StatusFanout } from '../shared/status-fanout';

interface RedisDef extends NodeDef {
  mode?: 'single' | 'sentinel' | 'cluster';
  url?: string;
  sentinels?: string;
  sentinelName?: string;
  cluster?: string;
  tls?: boolean | string;
  keyPrefix?: string;
  ttl?: string;
  windowSize?: string;
  windowSeconds?: string;
  maxNames?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function RedisNode(this: RedisConfigNode, def: RedisDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const creds = node.credentials ?? {};
    const mode = def.mode ?? 'single';
    const limits: ShortTermLimits = {
      ttlSeconds: intField(def.ttl, 3_600, 1, 365 * 86_400),
      windowSize: intField(def.windowSize, 100, 1, 100_000),
      windowSeconds: intField(def.windowSeconds, 600, 1, 365 * 86_400),
    };
    const connection = new StatusFanout();
    (node as { connection: StatusFanout }).connection = connection;
    let config: RedisConfig;
    try {
      config = {
        url: mode === 'single' ? textField(def.url) : '',
        sentinels: mode === 'sentinel' ? parseHostList(textField(def.sentinels), DEFAULT_SENTINEL_PORT) : [],
        sentinelName: textField(def.sentinelName) || 'mymaster',
        cluster: mode === 'cluster' ? parseHostList(textField(def.cluster)) : [],
        username: textField(creds.username) || undefined,
        password: creds.password || undefined,
        tls: boolField(def.tls),
        keyPrefix: textField(def.keyPrefix) || 'conflux:',
      };
      if (mode === 'sentinel' && config.sentinels?.length === 0) throw new Error('sentinel mode needs at least one sentinel host');
      if (mode === 'cluster' && config.cluster?.length === 0) throw new Error('cluster mode needs at least one node');
    } catch (err) {
      return invalid(err as Error);
    }
    /** Shown on every node using this cache, and each of their messages fails with it. */
    function invalid(err: Error): void {
      (node as { problem: string }).problem = `invalid cache configuration: ${err.message}`;
      connection.failed(t('conflux.status.invalidConfig', { reason: err.message }));
    }

    if (!isRedisConfigured(config)) {
      const store = createMemoryShortTerm({ ...limits, maxNames: intField(def.maxNames, 100_000, 1, 10_000_000) });
      (node as { store: ShortTermStore }).store = store;
      connection.connected('conflux.status.inProcess');
      node.on(
        'close',
        (_removed: boolean, done: () => void) =>
          void connection
            .drained()
            .then(() => store.close())
            .finally(done),
      );
      return;
    }

    let client: ReturnType<typeof openRedis>;
    try {
      client = openRedis(config);
    } catch (err) {
      return invalid(err as Error);
    }
    const label = mode === 'single' ? 'Redis' : `Redis ${mode}`;
    const store = createRedisShortTerm(client, limits, config.keyPrefix);
    (node as { store: ShortTermStore }).store = store;
    client.on('ready', () => connection.connected(label));
    client.on('error', (err: Error) => connection.failed(`${label}: ${err.message}`));
    client.on('reconnecting', () => connection.set({ fill: 'yellow', shape: 'ring', text: `${label}: ${t('conflux.status.reconnecting')}` }));
    client.on('end', () => connection.failed(`${label}: ${t('conflux.status.disconnected')}`));
    node.on('close', (_removed: boolean, done: () => void) => {
      connection
        .drained()
        .then(() => store.close())
        .then(() => client.quit())
        .catch(() => client.disconnect())
        .finally(done);
    });
  }

  RED.nodes.registerType<RedisConfigNode, RedisDef, unknown, RedisCredentials>('conflux-redis', RedisNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' } },
  });
};
