import type { Node, NodeAPI, NodeDef } from 'node-red';
import { parseRangeQuery } from '../core/stores/query';
import { createElasticTimeSeries } from '../core/stores/time-series-es';
import { createSqlTimeSeries } from '../core/stores/time-series-sql';
import type { TimeSeriesStore } from '../core/stores/types';
import { closeAfter, configOf, databaseOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { boolField, intField, textField } from '../shared/fields';
import { bindTier } from '../shared/tier-node';
import { tierWriter, type WriterDef } from '../shared/tier-writer';
import type { ElasticConfigNode } from '../shared/config-nodes';

interface TimeSeriesDef extends NodeDef, WriterDef {
  /** auto: Elasticsearch when the chosen config names a node (e.g. ${CONFLUX_ELASTICSEARCH_NODES} is set), else the database. */
  engine?: 'auto' | 'sql' | 'elasticsearch';
  database?: string;
  elasticsearch?: string;
  tenant?: string;
  retentionDays?: string;
  /** SQL engines: fold the new readings into the database's rollups in the same transaction. Default on. */
  rollups?: boolean | string;
}

/** How often retention runs; the first run is shortly after deploy. */
const RETENTION_EVERY_MS = 3_600_000;
const RETENTION_FIRST_MS = 30_000;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function TimeSeriesNode(this: Node, def: TimeSeriesDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let store: Promise<TimeSeriesStore>;
    let owner: { connection: { remove(node: Node): void } };
    /** The database whose rollups include what this node stored (msg.rolledUp), when it rolls up. */
    let rolledUp: string | undefined;
    const chosen = def.elasticsearch ? (RED.nodes.getNode(def.elasticsearch) as ElasticConfigNode | null) : null;
    if (def.engine === 'elasticsearch' || (def.engine === 'auto' && chosen?.configured)) {
      const es = configOf<ElasticConfigNode>(RED, t, node, def.elasticsearch, 'conflux-elasticsearch');
      if (!es) return;
      es.connection.add(node);
      owner = es;
      store = Promise.resolve().then(() => createElasticTimeSeries(es.client(), { indexPrefix: es.indexPrefix }));
    } else {
      const db = databaseOf(RED, t, node, def.database);
      if (!db) return;
      owner = db;
      const rollups = boolField(def.rollups, true);
      if (rollups) rolledUp = db.identity;
      store = Promise.all([db.sql(), db.copier()]).then(([sql, copier]) => createSqlTimeSeries(sql, { copier, rollups }));
    }
    store.catch((err: Error) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 100) }));

    const writer = tierWriter(def, { batchSize: 1_000, batchDelayMs: 0 }, async (readings) => (await store).append(readings));
    bindTier(
      node,
      t,
      {
        write: (readings) => writer.add(readings),
        pending: () => writer.pending,
        // A long-term node on the same database then passes the message on without counting it again.
        stored: (msg) => {
          if (rolledUp) (msg as { rolledUp?: string }).rolledUp = rolledUp;
        },
        query: async (tenant, input) => {
          const page = await (await store).query(parseRangeQuery(tenant, input));
          return { items: page.items, cursor: page.cursor };
        },
      },
      textField(def.tenant) || 'default',
    );

    // Retention: bounded time series. Every instance may run it; deleting twice is harmless.
    const days = intField(def.retentionDays, 30, 0, 36_500);
    const timers: NodeJS.Timeout[] = [];
    if (days > 0) {
      const retain = () =>
        store
          .then((s) => s.dropBefore(Date.now() / 1000 - days * 86_400))
          .then((n) => n && node.log(`retention: dropped ${n} readings older than ${days} days`))
          .catch((err: Error) => node.warn(`retention: ${err.message}`));
      timers.push(setTimeout(retain, RETENTION_FIRST_MS), setInterval(retain, RETENTION_EVERY_MS));
    }
    closeAfter(node, owner, () => {
      timers.forEach((t) => clearTimeout(t));
      return writer.close();
    });
  }
  RED.nodes.registerType('conflux-time-series', TimeSeriesNode);
};
