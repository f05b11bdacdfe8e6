/**
 * A node that works over a config node (a database, a cache, a gateway): resolves it, or says on
 * the node and to every message that none is chosen; shows the connection's status; and
 * deregisters only after its own close work is done (its queued writes still need the connection).
 */
import type { Node, NodeAPI } from 'node-red';
import type { GatewayConfigNode, PostgresConfigNode } from './config-nodes';
import type { Translate } from './i18n';

/** The config node `id` names, or undefined after marking the node and failing its messages. */
export function configOf<T>(RED: NodeAPI, t: Translate, node: Node, id: string | undefined, type: string): T | undefined {
  const config = id ? (RED.nodes.getNode(id) as T | null) : null;
  if (config) return config;
  const reason = `no ${type} configured`;
  node.status({ fill: 'red', shape: 'ring', text: t('conflux.status.noConfig', { type }) });
  node.error(reason);
  node.on('input', (_msg, _send, done) => done(new Error(reason)));
  return undefined;
}

export function databaseOf(RED: NodeAPI, t: Translate, node: Node, id: string | undefined): PostgresConfigNode | undefined {
  const config = configOf<PostgresConfigNode>(RED, t, node, id, 'conflux-postgres');
  config?.connection.add(node);
  return config;
}

export function gatewayOf(RED: NodeAPI, t: Translate, node: Node, id: string | undefined): GatewayConfigNode | undefined {
  return configOf<GatewayConfigNode>(RED, t, node, id, 'conflux-gateway');
}

/** Runs the node's own close work, then lets the config node close. */
export function closeAfter(node: Node, config: { connection: { remove(node: Node): void } }, work: () => Promise<unknown>): void {
  node.on('close', (_removed: boolean, done: () => void) => {
    work()
      .catch((err: Error) => node.warn(err.message))
      .finally(() => {
        config.connection.remove(node);
        done();
      });
  });
}
