import type { Node, NodeAPI, NodeDef } from 'node-red';
import { createSqlLongTerm } from '../core/stores/long-term-sql';
import { parseRangeQuery, parseRollupSize } from '../core/stores/query';
import { closeAfter, databaseOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { textField } from '../shared/fields';
import { bindTier } from '../shared/tier-node';
import { tierWriter, type WriterDef } from '../shared/tier-writer';

interface LongTermDef extends NodeDef, WriterDef {
  database?: string;
  tenant?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function LongTermNode(this: Node, def: LongTermDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const store = db.sql().then((sql) => createSqlLongTerm(sql));
    store.catch((err: Error) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 100) }));
    const writer = tierWriter(def, { batchSize: 1_000, batchDelayMs: 0 }, async (readings) => (await store).add(readings));
    bindTier(
      node,
      t,
      {
        write: (readings) => writer.add(readings),
        pending: () => writer.pending,
        // A conflux-time-series node on this database already folded these records in, in the
        // transaction that stored them (and only those that were new).
        skip: (msg) => (msg as { rolledUp?: unknown }).rolledUp === db.identity,
        query: async (tenant, input) => {
          const size = parseRollupSize((input as { size?: unknown } | null)?.size);
          const page = await (await store).query({ ...parseRangeQuery(tenant, input), size });
          return { items: page.items, cursor: page.cursor };
        },
      },
      textField(def.tenant) || 'default',
    );
    closeAfter(node, db, () => writer.close());
  }
  RED.nodes.registerType('conflux-long-term', LongTermNode);
};
