/**
 * Acknowledge after keeping. A listener sends each reading through trackCompletion and learns
 * when the whole flow has finished with it — every node it reached, however far down the wires,
 * called done() — or that a node failed it (done(err)), or that the flow took too long. The
 * listener acknowledges its device only then (HTTP 202, TCP ACK, MQTT PUBACK), and refuses with
 * the reason otherwise; since tier nodes complete a message only after their commit, with the
 * shipped flows an acknowledgement means stored.
 *
 * One CompletionLedger per runtime (nodes/core/flow/completion-ledger.ts) is fed by Node-RED's
 * preDeliver, onReceive, onComplete and postReceive hooks, added when the first listener needs them and
 * removed with the last. Listeners also bound what is in flight and hold input back beyond it.
 */
import type { Node, NodeAPI, NodeMessage } from 'node-red';
import { CompletionLedger } from '../core/flow/completion-ledger';

interface HookEvent {
  msg?: { _msgid?: unknown };
  node?: { id?: string };
  destination?: { id?: string; node?: { _expectedDoneCount?: unknown } };
  error?: unknown;
}
interface Hooks {
  add(name: string, fn: (event: HookEvent) => void): void;
  remove(name: string): void;
}

/** RED.hooks (Node-RED 2.0 and later); a test harness must supply it as the runtime does. */
function hooksOf(RED: NodeAPI): Hooks | undefined {
  return (RED as unknown as { hooks?: Hooks }).hooks;
}

const LABEL = 'conflux-ledger';
const shared = new WeakMap<Hooks, { ledger: CompletionLedger; users: number }>();

/** The runtime's ledger, its hooks added on the first use; release() removes them with the last user. */
function acquireLedger(hooks: Hooks): { ledger: CompletionLedger; release(): void } {
  let entry = shared.get(hooks);
  if (!entry) {
    const ledger = new CompletionLedger();
    const id = (e: HookEvent) => (typeof e.msg?._msgid === 'string' ? e.msg._msgid : undefined);
    hooks.add(`preDeliver.${LABEL}`, (e) => {
      const m = id(e);
      if (m !== undefined && e.destination?.id) ledger.delivered(m, e.destination.id);
    });
    hooks.add(`onReceive.${LABEL}`, (e) => {
      const m = id(e);
      if (m !== undefined && e.destination?.id) ledger.received(m, e.destination.id);
    });
    hooks.add(`onComplete.${LABEL}`, (e) => {
      const m = id(e);
      if (m !== undefined && e.node?.id) ledger.completed(m, e.node.id, e.error);
    });
    // A node whose input handler takes no done() never reports completion (Node-RED does not
    // call done for it): it has finished once its handler returned.
    hooks.add(`postReceive.${LABEL}`, (e) => {
      const m = id(e);
      if (m !== undefined && e.destination?.id && e.destination.node?._expectedDoneCount === 0) ledger.completed(m, e.destination.id);
    });
    entry = { ledger, users: 0 };
    shared.set(hooks, entry);
  }
  entry.users++;
  const held = entry;
  let released = false;
  return {
    ledger: held.ledger,
    release() {
      if (released) return;
      released = true;
      if (--held.users > 0) return;
      shared.delete(hooks);
      for (const hook of ['preDeliver', 'onReceive', 'onComplete', 'postReceive']) hooks.remove(`${hook}.${LABEL}`);
    },
  };
}

export interface Completion {
  /** Messages sent and not yet finished. */
  readonly size: number;
  /** False when nothing is wired or the runtime has no hooks: send then resolves at once. */
  readonly tracking: boolean;
  /**
   * Sends msg (under its own _msgid, else a fresh one). Resolves when the flow finished with it;
   * rejects with a FlowFailure when a node failed it or `timeoutMs` passed first.
   */
  send(msg: object): Promise<void>;
  /** Stops tracking; what is pending rejects with `reason`. */
  close(reason?: string): void;
}

export function trackCompletion(RED: NodeAPI, node: Node, timeoutMs: number, onSettled?: () => void): Completion {
  const wired = ((node as unknown as { wires?: string[][] }).wires ?? []).some((w) => w.some(Boolean));
  const hooks = wired ? hooksOf(RED) : undefined;
  const held = hooks ? acquireLedger(hooks) : undefined;
  const mine = new Set<string>();

  return {
    get size() {
      return mine.size;
    },
    tracking: held !== undefined,
    send(msg) {
      const own = (msg as { _msgid?: unknown })._msgid;
      const id = typeof own === 'string' && own !== '' && !mine.has(own) ? own : RED.util.generateId();
      const out = { ...msg, _msgid: id } as NodeMessage;
      if (!held) {
        node.send(out);
        return Promise.resolve();
      }
      mine.add(id);
      const outcome = held.ledger.track(id, timeoutMs).finally(() => {
        mine.delete(id);
        onSettled?.();
      });
      try {
        node.send(out);
      } finally {
        held.ledger.sent(id);
      }
      return outcome;
    },
    close(reason = 'the listener is stopping') {
      if (!held) return;
      for (const id of [...mine]) held.ledger.cancel(id, reason);
      held.release();
    },
  };
}

/** What a listener waits on before it acknowledges: the flow's outcome, or nothing when it acknowledges on receipt. */
export function acknowledgement(kept: Promise<void>, onReceipt: boolean): Promise<void> {
  if (!onReceipt) return kept;
  kept.catch(() => undefined); // a failure reached the Catch node; the device was answered already
  return Promise.resolve();
}

export interface HandOff {
  /** In flight in the flow. */
  readonly size: number;
  /** Waiting for a place. */
  readonly waiting: number;
  /**
   * Hands msg on while fewer than `max` messages are in flight, else once a place frees (the
   * listener meanwhile reads no more from that device). Resolves when the flow finished with
   * it — or, acknowledging on receipt, as soon as it is handed on — and rejects with the reason
   * it was not kept: the listener then refuses it and the device sends it again.
   */
  deliver(msg: object): Promise<void>;
  /** Refuses what waits or is in flight and stops tracking. */
  close(reason: string): void;
}

export interface HandOffOptions {
  /** Most messages in the flow at once. */
  max: number;
  /** How long the flow may take with one message before it is refused. */
  timeoutMs: number;
  /** Acknowledge once handed on instead of once the flow finished (faster; a crash loses what is in flight). */
  ackOnReceipt?: boolean;
  onSettled?(): void;
}

export function createHandOff(RED: NodeAPI, node: Node, options: HandOffOptions): HandOff {
  const queued: Array<{ go(): void; cancel(err: Error): void }> = [];
  const completion = trackCompletion(RED, node, options.timeoutMs, () => {
    while (queued.length > 0 && completion.size < options.max) queued.shift()!.go();
    options.onSettled?.();
  });
  const send = (msg: object): Promise<void> => acknowledgement(completion.send(msg), options.ackOnReceipt === true);
  return {
    get size() {
      return completion.size;
    },
    get waiting() {
      return queued.length;
    },
    deliver(msg) {
      if (!completion.tracking || (completion.size < options.max && queued.length === 0)) return send(msg);
      return new Promise<void>((resolve, reject) =>
        queued.push({
          go: () => send(msg).then(resolve, reject),
          cancel: reject,
        }),
      );
    },
    close(reason) {
      for (const q of queued.splice(0)) q.cancel(new Error(reason));
      completion.close(reason);
    },
  };
}
