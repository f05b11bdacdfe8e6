/**
 * conflux-rest-api: serves the standard resources (nodes/core/api/resources) on a conflux-api:
 * devices, data, rollups, the event catalogue, webhook subscriptions, FTP targets and API keys,
 * in v1 and v2, each tenant-scoped by the caller's key (docs/api.md). No wires: it answers
 * requests, not messages.
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { STANDARD_OPERATIONS } from '../core/api/resources';
import { translator } from '../shared/i18n';
import type { ApiConfigNode } from './api-config';

interface RestApiDef extends NodeDef {
  api?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function RestApiNode(this: Node, def: RestApiDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const api = def.api ? (RED.nodes.getNode(def.api) as ApiConfigNode | null) : null;
    if (!api) {
      node.status({ fill: 'red', shape: 'ring', text: t('conflux.status.noConfig', { type: 'conflux-api' }) });
      return node.error('no conflux-api configured');
    }
    try {
      api.serve(node, STANDARD_OPERATIONS);
    } catch (err) {
      node.status({ fill: 'red', shape: 'ring', text: t('conflux.status.invalidConfig', { reason: (err as Error).message }).slice(0, 120) });
      return node.error(`conflux-rest-api: ${(err as Error).message}`);
    }
    node.status(
      api.maintenance
        ? { fill: 'yellow', shape: 'ring', text: t('rest-api.status.maintenance', { base: api.base }) }
        : { fill: 'green', shape: 'dot', text: t('rest-api.status.serving', { n: STANDARD_OPERATIONS.length, base: api.base }) },
    );
    node.on('close', () => api.unserve(node));
  }
  RED.nodes.registerType('conflux-rest-api', RestApiNode);
};
