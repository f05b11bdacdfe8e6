/**
 * Node statuses: one node's, throttled (throttledStatus), and a config node's connection status, shown on every node that uses it (as Node-RED's MQTT
 * broker node does): users register when they start and deregister on close.
 *
 * Node-RED stops a flow's nodes and config nodes together, so a config node's close first waits
 * (bounded) for its users to deregister: they flush their queued writes over the connection.
 */
import type { Node, NodeStatus } from 'node-red';

/** Status updates are coalesced: a busy node would otherwise send one editor event per message. */
export const STATUS_EVERY_MS = 250;

export interface ThrottledStatus {
  /** Shows the status within the interval; calls in between cost nothing. */
  soon(): void;
  /** Shows it at once. */
  now(): void;
  /** Stops: nothing is shown afterwards (the node clears its status itself). */
  close(): void;
}

/**
 * A node's status computed by `compute` when due (undefined: leave it as it is), at most once per
 * interval. Every counting node uses this instead of its own timer.
 */
export function throttledStatus(node: Node, compute: () => NodeStatus | undefined, everyMs = STATUS_EVERY_MS): ThrottledStatus {
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const show = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (closed) return;
    const status = compute();
    if (status) node.status(status);
  };
  return {
    soon() {
      if (!closed) timer ??= setTimeout(show, everyMs);
    },
    now: show,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}

export class StatusFanout {
  private readonly users = new Set<Node>();
  private waiting: (() => void)[] = [];
  // A catalog key: the editor shows it in the browser's language.
  private current: NodeStatus = { fill: 'grey', shape: 'ring', text: 'conflux.status.notConnected' };

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
