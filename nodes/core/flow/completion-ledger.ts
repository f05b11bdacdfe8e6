/**
 * When has a flow finished with a message? Node-RED says nothing to the sender, but its hooks
 * report every step: a delivery to a node is announced (preDeliver, synchronously inside the
 * sender's send()), the node receives it (onReceive), and the node completes it (onComplete,
 * when it calls done()). A tracked message is finished when every node it reached has
 * completed it, and has failed as soon as one completes it with an error.
 *
 * Why this order of counting is sound: a node sends on before it calls done() (a tier node
 * passes a message on only once stored, then completes it), and preDeliver fires inside send(),
 * so the next hop is owed before the current one is paid. A node reached without a routed
 * delivery (a link in, fired by its link out inside that node's handler) is owed when it
 * receives. What a node completes before sending on (a join holding messages, a function node
 * sending later without node.done) ends the tracking early: docs/architecture.md names it.
 *
 * Nothing here knows Node-RED: nodes/shared/completion.ts feeds the hooks in.
 */

export class FlowFailure extends Error {
  override readonly name = 'FlowFailure';
  constructor(
    message: string,
    /** The node that failed the message; undefined when the flow timed out. */
    readonly nodeId?: string,
    readonly timedOut = false,
  ) {
    super(message);
  }
}

interface Entry {
  /** Completions owed, by node id (a node may receive the same message twice). */
  owed: Map<string, number>;
  /** Deliveries announced and not yet received, by node id. */
  announced: Map<string, number>;
  total: number;
  timer: NodeJS.Timeout;
  resolve(): void;
  reject(err: FlowFailure): void;
}

const add = (map: Map<string, number>, key: string, n: number): number => {
  const next = (map.get(key) ?? 0) + n;
  if (next === 0) map.delete(key);
  else map.set(key, next);
  return next;
};

export class CompletionLedger {
  private readonly entries = new Map<string, Entry>();

  /** Messages being tracked. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Tracks message `id` until the flow finished with it (resolves), a node failed it or
   * `timeoutMs` passed (rejects with FlowFailure). Call before sending it; then `sent(id)`.
   */
  track(id: string, timeoutMs: number): Promise<void> {
    if (this.entries.has(id)) return Promise.reject(new Error(`message ${id} is already tracked`));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(id, new FlowFailure(`the flow did not finish with the message within ${Math.round(timeoutMs / 1000)} s`, undefined, true));
      }, timeoutMs);
      this.entries.set(id, { owed: new Map(), announced: new Map(), total: 0, timer, resolve, reject });
    });
  }

  /** The sender's send() returned: if it reached no node, the flow is finished with it. */
  sent(id: string): void {
    const e = this.entries.get(id);
    if (e && e.total === 0) this.finish(id, e);
  }

  /** Node-RED routed the message to `nodeId` (preDeliver). */
  delivered(id: string, nodeId: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    add(e.owed, nodeId, 1);
    add(e.announced, nodeId, 1);
    e.total++;
  }

  /** `nodeId` received the message (onReceive): owed now unless a delivery announced it. */
  received(id: string, nodeId: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    if ((e.announced.get(nodeId) ?? 0) > 0) add(e.announced, nodeId, -1);
    else {
      add(e.owed, nodeId, 1);
      e.total++;
    }
  }

  /** `nodeId` completed the message (onComplete), with the error it failed it with, if any. */
  completed(id: string, nodeId: string, error?: unknown): void {
    const e = this.entries.get(id);
    if (!e) return;
    if (error !== undefined && error !== null && error !== false) {
      this.fail(id, new FlowFailure(reasonOf(error), nodeId));
      return;
    }
    if ((e.owed.get(nodeId) ?? 0) === 0) return; // a node it never reached (or already paid)
    add(e.owed, nodeId, -1);
    if (--e.total === 0) this.finish(id, e);
  }

  /** Stops tracking `id`: its promise rejects with `reason`. */
  cancel(id: string, reason: string): void {
    this.fail(id, new FlowFailure(reason));
  }

  /** Stops tracking everything. */
  clear(reason: string): void {
    for (const id of [...this.entries.keys()]) this.cancel(id, reason);
  }

  private finish(id: string, e: Entry): void {
    clearTimeout(e.timer);
    this.entries.delete(id);
    e.resolve();
  }

  private fail(id: string, err: FlowFailure): void {
    const e = this.entries.get(id);
    if (!e) return;
    clearTimeout(e.timer);
    this.entries.delete(id);
    e.reject(err);
  }
}

/** A one-line reason from whatever a node passed to done(err). */
function reasonOf(error: unknown): string {
  // An Error from a function node comes from another realm (its vm context): not instanceof Error here.
  const message = typeof error === 'object' && error !== null ? (error as { message?: unknown }).message : undefined;
  const text = typeof message === 'string' ? message : typeof error === 'string' ? error : JSON.stringify(error);
  const line = (text ?? 'failed').split('\n')[0];
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
