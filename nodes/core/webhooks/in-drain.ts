/**
 * The inbox queue of a conflux-webhook-in node, handed to its flow, framework-free. Each event
 * claimed from the queue is sent; it is acked (deleted) when the send's promise resolves — in
 * Node-RED, when the flow has finished with it — and given back for a retry with backoff when it
 * rejects (dead letters after the last try). What is never settled, because the process died,
 * is claimed again once its lease has run out: nothing stored is lost, and a flow may see an
 * event twice (msg.webhook.attempts tells).
 */
import type { SqlClient } from '../db/sql';
import { Drainer } from '../mailbox/drainer';
import { Mailbox, type ClaimedMessage } from '../mailbox/mailbox';
import { flowMessage, type WebhookMessage } from './in-inbox';

export interface InboxDrainOptions<M = WebhookMessage> {
  queue: string;
  /** Unique per process and node. */
  worker: string;
  /** Most events in the flow at once. */
  capacity: number;
  /** How long the flow may take with one event; the lease is longer. */
  timeoutMs: number;
  maxAttempts: number;
  /** Hands an event to the flow: resolves when the flow has finished with it, rejects with why not. */
  send(msg: M): Promise<void>;
  /** The message for an inbox row; default: a webhook's (flowMessage). conflux-xmpp-in has its own. */
  toMessage?(m: ClaimedMessage): M;
  /** An event moved to dead_letters. */
  onDead?(messageId: string, attempts: number, reason: string): void;
  /** A claim, ack or nack failed (the database is down): the drain keeps trying. */
  onError?(err: Error): void;
  /** An event was handed to the flow (for counts). */
  onDelivered?(): void;
}

export const LEASE_MARGIN_MS = 10_000;
const POLL_MS = 1_000;

export class InboxDrain<M = WebhookMessage> {
  private readonly drainer: Drainer;
  private readonly settling = new Set<Promise<void>>();
  private stopping = false;

  constructor(
    db: SqlClient,
    private readonly options: InboxDrainOptions<M>,
  ) {
    this.drainer = new Drainer(new Mailbox(db, 'inbox'), {
      queue: options.queue,
      worker: options.worker,
      capacity: options.capacity,
      // Longer than the flow may take: a lease never runs out under an event still in the flow.
      leaseMs: options.timeoutMs + LEASE_MARGIN_MS,
      pollMs: POLL_MS,
      retry: { maxAttempts: options.maxAttempts, baseDelayMs: 1_000, maxDelayMs: 300_000, jitter: 0.2 },
      deliver: (m) => this.deliver(m),
      onError: options.onError,
    });
  }

  /** Events in the flow, not yet settled. */
  get inFlight(): number {
    return this.drainer.inFlight;
  }

  start(): void {
    this.drainer.start();
  }

  /** Something was stored: claim now rather than at the next poll. */
  wake(): void {
    this.drainer.wake();
  }

  /**
   * Stops claiming and waits until every event handed out is settled (the caller first makes the
   * pending sends reject, e.g. by closing its completion tracking: they go back to the inbox).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.drainer.stop();
    while (this.settling.size > 0) await Promise.allSettled([...this.settling]);
    await this.drainer.stop(); // writes the acks the settling added
  }

  private deliver(m: ClaimedMessage): void {
    const d = this.drainer;
    if (this.stopping) return this.settle(d.nack(m.id, 'the node stopped before handing the event out').then(() => undefined));
    this.options.onDelivered?.();
    let sent: Promise<void>;
    try {
      sent = this.options.send(this.options.toMessage ? this.options.toMessage(m) : (flowMessage(m) as M));
    } catch (err) {
      sent = Promise.reject(err as Error);
    }
    this.settle(
      sent.then(
        () => d.ack(m.id),
        (err: Error) =>
          d.nack(m.id, err).then((r) => {
            if (r.outcome === 'dead') this.options.onDead?.(m.messageId, r.attempts, err.message);
          }),
      ),
    );
  }

  private settle(work: Promise<void>): void {
    const p = work.catch((err: Error) => this.options.onError?.(err)); // the lease runs out; the event comes again
    this.settling.add(p);
    void p.finally(() => this.settling.delete(p));
  }
}
