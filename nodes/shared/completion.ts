/**
 * Backpressure for listeners. Node-RED tells a sender nothing about what happens to its message,
 * but its `onComplete` hook reports each node that calls done(). A listener sends through
 * trackCompletion and learns when every node wired to its output has completed the message —
 * or a timeout passed, for a node that never calls done(). Listeners bound what is in flight
 * and refuse or hold back input beyond it, instead of buffering without end.
 */
import type { Node, NodeAPI, NodeMessage } from 'node-red';

interface CompleteEvent {
  msg?: { _msgid?: string };
  node?: { id?: string };
}
interface Hooks {
  add(name: string, fn: (event: CompleteEvent) => void): void;
  remove(name: string): void;
}

/** RED.hooks, or @node-red/util's — the same object; node-red-node-test-helper leaves RED.hooks out. */
function hooksOf(RED: NodeAPI): Hooks | undefined {
  const own = (RED as unknown as { hooks?: Hooks }).hooks;
  if (own) return own;
  try {
    return (require('@node-red/util') as { hooks?: Hooks }).hooks;
  } catch {
    return undefined;
  }
}

export interface CompletionWatch {
  /** The nodes wired to the first output: each must complete a message before it is done. */
  readonly wired: readonly string[];
  /** False when nothing is wired or the runtime has no hooks: nothing will be reported. */
  readonly tracking: boolean;
  close(): void;
}

/** Calls `completed(msgid, nodeId)` each time a node wired to `node`'s output calls done(). */
export function watchCompletion(RED: NodeAPI, node: Node, completed: (msgid: string, nodeId: string) => void): CompletionWatch {
  const wired = [...new Set(((node as unknown as { wires?: string[][] }).wires?.[0] ?? []).filter(Boolean))];
  const hooks = wired.length > 0 ? hooksOf(RED) : undefined;
  const hookName = `onComplete.conflux-${node.id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  hooks?.add(hookName, (event) => {
    const id = event.msg?._msgid;
    if (typeof id === 'string' && event.node?.id !== undefined) completed(id, event.node.id);
  });
  return { wired, tracking: hooks !== undefined, close: () => hooks?.remove(hookName) };
}

export interface Completion {
  /** Messages sent and not yet completed. */
  readonly size: number;
  /** False when nothing is wired or the runtime has no hooks: send then resolves at once. */
  readonly tracking: boolean;
  /** Sends msg (under its own _msgid, else a fresh one); resolves when every wired node completed it, or after the timeout. */
  send(msg: object): Promise<void>;
  /** Stops tracking; what is pending resolves. */
  close(): void;
}

export function trackCompletion(RED: NodeAPI, node: Node, timeoutMs: number, onSettled?: () => void): Completion {
  const pending = new Map<string, { waiting: Set<string>; finish(): void }>();
  const watch = watchCompletion(RED, node, (id, nodeId) => {
    const p = pending.get(id);
    if (p && p.waiting.delete(nodeId) && p.waiting.size === 0) p.finish();
  });

  return {
    get size() {
      return pending.size;
    },
    tracking: watch.tracking,
    send(msg) {
      const own = (msg as { _msgid?: unknown })._msgid;
      const id = typeof own === 'string' && own !== '' ? own : RED.util.generateId();
      const out = { ...msg, _msgid: id } as NodeMessage;
      if (!watch.tracking) {
        node.send(out);
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => finish(), timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          if (!pending.delete(id)) return;
          resolve();
          onSettled?.();
        };
        pending.set(id, { waiting: new Set(watch.wired), finish });
        node.send(out);
      });
    },
    close() {
      watch.close();
      for (const p of [...pending.values()]) p.finish();
    },
  };
}

export interface HandOff {
  /** In flight in the flow. */
  readonly size: number;
  /** Waiting for a place. */
  readonly waiting: number;
  /**
   * Hands msg on while fewer than `max` messages are in flight; beyond that it waits for a place,
   * and the promise resolves once it is handed on — a listener acknowledges its device then, and
   * meanwhile reads no more from it.
   */
  deliver(msg: object): Promise<void> | void;
  /** Refuses what waits (the device sends it again) and stops tracking. */
  close(reason: string): void;
}

export function createHandOff(RED: NodeAPI, node: Node, max: number, timeoutMs: number, onSettled?: () => void): HandOff {
  const queued: Array<{ go(): void; cancel(err: Error): void }> = [];
  const completion = trackCompletion(RED, node, timeoutMs, () => {
    while (queued.length > 0 && completion.size < max) queued.shift()!.go();
    onSettled?.();
  });
  return {
    get size() {
      return completion.size;
    },
    get waiting() {
      return queued.length;
    },
    deliver(msg) {
      if (!completion.tracking || (completion.size < max && queued.length === 0)) {
        void completion.send(msg);
        return;
      }
      return new Promise<void>((resolve, reject) =>
        queued.push({
          go: () => {
            void completion.send(msg);
            resolve();
          },
          cancel: reject,
        }),
      );
    },
    close(reason) {
      for (const q of queued.splice(0)) q.cancel(new Error(reason));
      completion.close();
    },
  };
}
