/**
 * A config node's connection status, shown on every node that uses it (as Node-RED's MQTT
 * broker node does): users register when they start and deregister on close.
 *
 * Node-RED stops a flow's nodes and config nodes together, so a config node's close first waits
 * (bounded) for its users to deregister: they flush their queued writes over the connection.
 */
import type { Node, NodeStatus } from 'node-red';

export class StatusFanout {
  private readonly users = new Set<Node>();
  private waiting: (() => void)[] = [];
  private current: NodeStatus = { fill: 'grey', shape: 'ring', text: 'not connected' };

  add(node: Node): void {
    this.users.add(node);
    node.status(this.current);
  }

  remove(node: Node): void {
    this.users.delete(node);
    if (this.users.size === 0) for (const resolve of this.waiting.splice(0)) resolve();
  }

  /** Resolves when no user is left, or after timeoutMs. */
  drained(timeoutMs = 10_000): Promise<void> {
    if (this.users.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.waiting.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  set(status: NodeStatus): void {
    this.current = status;
    for (const node of this.users) node.status(status);
  }

  connected(text: string): void {
    this.set({ fill: 'green', shape: 'dot', text });
  }

  failed(reason: string): void {
    this.set({ fill: 'red', shape: 'ring', text: reason.slice(0, 100) });
  }
}
