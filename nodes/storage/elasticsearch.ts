/**
 * conflux-elasticsearch: one or more Elasticsearch nodes, API key or basic authentication, a CA
 * certificate, and the prefix of Conflux's index names. Shared by every node naming it.
 */
import type { Client } from '@elastic/elasticsearch';
import type { NodeAPI, NodeDef } from 'node-red';
import type { ElasticConfigNode, ElasticCredentials } from '../shared/config-nodes';
import { openElasticsearch, parseNodes } from '../core/stores/elasticsearch';
import { boolField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { StatusFanout } from '../shared/status-fanout';

interface ElasticDef extends NodeDef {
  nodes?: string;
  indexPrefix?: string;
  ca?: string;
  tlsVerify?: boolean | string;
}

const PING_MS = 30_000;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function ElasticNode(this: ElasticConfigNode, def: ElasticDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const creds = node.credentials ?? {};
    const connection = new StatusFanout();
    (node as { connection: StatusFanout }).connection = connection;
    (node as { indexPrefix: string }).indexPrefix = textField(def.indexPrefix) || 'conflux';
    let nodes: string[] = [];
    let problem = 'no Elasticsearch node configured';
    try {
      nodes = parseNodes(textField(def.nodes));
    } catch (err) {
      problem = (err as Error).message;
      connection.failed(t('conflux.status.invalidConfig', { reason: problem }));
    }
    (node as { configured: boolean }).configured = nodes.length > 0;
    let client: Client | undefined;
    let ping: NodeJS.Timeout | undefined;

    function check(): void {
      client?.ping().then(
        () => connection.connected(t('elasticsearch.status.connected', { n: nodes.length })),
        (err: Error) => connection.failed(`Elasticsearch: ${err.message}`),
      );
    }

    node.client = () => {
      if (client) return client;
      if (nodes.length === 0) throw new Error(problem);
      const opened = openElasticsearch({
        nodes,
        apiKey: textField(creds.apiKey) || undefined,
        username: textField(creds.username) || undefined,
        password: creds.password || undefined,
        ca: textField(def.ca) || undefined,
        rejectUnauthorized: boolField(def.tlsVerify, true),
        indexPrefix: node.indexPrefix,
      });
      client = opened;
      check();
      ping = setInterval(check, PING_MS);
      return opened;
    };

    node.on('close', (_removed: boolean, done: () => void) => {
      if (ping) clearInterval(ping);
      const c = client;
      client = undefined;
      connection
        .drained()
        .then(() => c?.close())
        .catch(() => undefined)
        .finally(done);
    });
  }

  RED.nodes.registerType<ElasticConfigNode, ElasticDef, unknown, ElasticCredentials>('conflux-elasticsearch', ElasticNode, {
    credentials: { apiKey: { type: 'password' }, username: { type: 'text' }, password: { type: 'password' } },
  });
};
