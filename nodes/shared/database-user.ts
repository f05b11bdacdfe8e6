/**
 * A node that works over a conflux-postgres database: resolves its config node, shows the
 * connection's status, and deregisters after its own close work is done (its queued writes
 * still need the connection).
 */
import type { Node, NodeAPI } from 'node-red';
import type { PostgresConfigNode } from './config-nodes';

export function databaseOf(RED: NodeAPI, node: Node, id: string | undefined): PostgresConfigNode | undefined {
  const config = id ? (RED.nodes.getNode(id) as PostgresConfigNode | null) : null;
  if (!config) {
    node.status({ fill: 'red', shape: 'ring', text: 'no database configured' });
    node.on('input', (_msg, _send, done) => done(new Error('no conflux-postgres database configured')));
    return undefined;
  }
  config.connection.add(node);
  return config;
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
