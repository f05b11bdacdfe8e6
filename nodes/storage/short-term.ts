import type { Node, NodeAPI, NodeDef } from 'node-red';
import { QueryError } from '../core/stores/query';
import { closeAfter, configOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { textField } from '../shared/fields';
import { bindTier } from '../shared/tier-node';
import { tierWriter, type WriterDef } from '../shared/tier-writer';
import type { RedisConfigNode } from '../shared/config-nodes';

interface ShortTermDef extends NodeDef, WriterDef {
  cache: string;
  tenant?: string;
  /** pass (default): a failed cache write is reported and the message goes on; fail: done(err). */
  onFailure?: 'pass' | 'fail';
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function ShortTermNode(this: Node, def: ShortTermDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const cache = configOf<RedisConfigNode>(RED, t, node, def.cache, 'conflux-redis cache');
    if (!cache) return;
    cache.connection.add(node);
    const store = cache.store;
    if (!store) {
      node.on('input', (_msg, _send, done) => done(new Error(cache.problem)));
      node.on('close', () => cache.connection.remove(node));
      return;
    }
    // A cache that is down must not stop readings on their way to the durable tiers after it
    // (flows made before this setting existed get it too); 'fail' keeps the cache in the acknowledgement.
    const passOnFailure = def.onFailure === 'fail' ? undefined : () => true;
    // Everything that arrives in one tick goes to the cache in one pipeline.
    const writer = tierWriter(def, { batchSize: 1_000, batchDelayMs: 0 }, (readings) => store.write(readings));
    bindTier(
      node,
      t,
      {
        write: (readings) => writer.add(readings),
        pending: () => writer.pending,
        passOnFailure,
        query: async (tenant, input) => {
          const q = (input ?? {}) as { name?: unknown; prefix?: unknown; window?: unknown; limit?: unknown };
          if (typeof q.name === 'string') {
            if (q.window === true) return { items: await store.window(tenant, q.name) };
            return { items: (await store.latest(tenant, q.name)) ?? null };
          }
          if (typeof q.prefix === 'string') {
            const limit = q.limit === undefined ? undefined : Number(q.limit);
            if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 10_000))
              throw new QueryError('query.limit must be an integer within 1..10000');
            return { items: await store.latestByPrefix(tenant, q.prefix, limit) };
          }
          throw new QueryError('query needs a name (with window: true for the recent window) or a prefix');
        },
      },
      textField(def.tenant) || 'default',
    );
    closeAfter(node, cache, () => writer.close());
  }
  RED.nodes.registerType('conflux-short-term', ShortTermNode);
};
