/**
 * conflux-ops: answers the operator dashboard's questions (msg.topic: devices, latest, sensors,
 * series, mailboxes, deliveries, dead-letters, retry, drop) for one tenant, from the database,
 * the gateway's live sessions, the short-term cache and the metrics registry. The logic is
 * nodes/core/ops; this file only wires the config nodes.
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { Ops, OpsInputError } from '../core/ops/ops';
import { createElasticTimeSeries } from '../core/stores/time-series-es';
import { createSqlLongTerm } from '../core/stores/long-term-sql';
import { createSqlTimeSeries } from '../core/stores/time-series-sql';
import type { ElasticConfigNode, GatewayConfigNode, RedisConfigNode } from '../shared/config-nodes';
import { closeAfter, databaseOf } from '../shared/config-user';
import { textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';

interface OpsDef extends NodeDef {
  database?: string;
  gateway?: string;
  cache?: string;
  elasticsearch?: string;
  tenant?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function OpsNode(this: Node, def: OpsDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const optional = <T>(id: string | undefined) => (id ? ((RED.nodes.getNode(id) as T | null) ?? undefined) : undefined);
    const gateway = optional<GatewayConfigNode>(def.gateway);
    const cache = optional<RedisConfigNode>(def.cache);
    const elastic = optional<ElasticConfigNode>(def.elasticsearch);
    const tenant = textField(def.tenant) || 'default';

    let ops: Promise<Ops> | undefined;
    const open = () => {
      ops ??= db.sql().then(
        (sql) =>
          new Ops({
            tenant,
            db: sql,
            // Where the time-series node of the same flow stores: Elasticsearch when configured.
            timeSeries: elastic?.configured ? createElasticTimeSeries(elastic.client(), { indexPrefix: elastic.indexPrefix }) : createSqlTimeSeries(sql),
            longTerm: createSqlLongTerm(sql),
            shortTerm: cache?.store,
            sessions: gateway?.sessions,
          }),
      );
      ops.catch(() => (ops = undefined)); // the database may come up later
      return ops;
    };

    let answered = 0;
    let failed = 0;
    let lastError = '';
    const status = throttledStatus(node, () =>
      failed > 0 && lastError
        ? { fill: 'red', shape: 'ring', text: `${t('conflux.status.failed', { n: failed })}: ${lastError.slice(0, 60)}` }
        : { fill: 'green', shape: 'dot', text: t('ops.status.answered', { n: answered }) },
    );

    node.on('input', (msg, send, done) => {
      const m = msg as typeof msg & { topic?: unknown };
      open()
        .then((o) => o.answer(m.topic, m.payload))
        .then((answer) => {
          answered++;
          lastError = '';
          status.soon();
          send(Object.assign(msg, answer));
          done();
        })
        .catch((err: Error) => {
          failed++;
          lastError = err.message;
          status.soon();
          done(err instanceof OpsInputError ? err : new Error(t('ops.error.read', { reason: err.message })));
        });
    });
    closeAfter(node, db, async () => status.close());
  }
  RED.nodes.registerType('conflux-ops', OpsNode);
};
