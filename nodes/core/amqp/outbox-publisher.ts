/**
 * The outbox drained onto RabbitMQ: while connected, a Drainer claims the node's outbox rows and
 * publishes each on one confirm channel; the broker's confirm acks the row (acks batched into one
 * DELETE), a nack, a return or a lost channel nacks it (retried after the backoff, dead-lettered
 * in the database after maxAttempts). While disconnected nothing is claimed, so an outage costs a
 * message at most the one attempt it was in flight during the loss.
 *
 * The fast path: rows the node has just written while connected are written invisible for
 * FAST_PATH_HOLD_MS (the mailbox's delayMs) and published at once from memory; once confirmed
 * they are deleted (batched, only while still unclaimed). Should the process die or the publish
 * fail, the rows become claimable when the hold ends and the Drainer delivers them as above —
 * so the hot path costs no claim (an UPDATE per row and a round trip per batch). Framework-free.
 */
import type { ChannelModel } from 'amqplib';
import { Drainer } from '../mailbox/drainer';
import { delivery } from '../metrics/metrics';
import type { ClaimedMessage, Mailbox, NackResult, RetryPolicy } from '../mailbox/mailbox';
import type { SqlClient } from '../db/sql';
import type { AmqpConnection } from './connection';
import type { QueuedAmqp } from './messages';
import { ConfirmPublisher, UnroutableError, type OutgoingMessage } from './publisher';
import type { Topology } from './topology';

/** How long rows sent by the fast path stay unclaimable: far beyond a confirm's round trip, short enough that what an outage interrupted goes out again soon after. */
export const FAST_PATH_HOLD_MS = 15_000;

/** A kept message as the publisher sends it. */
function outgoing(messageId: string, q: QueuedAmqp): OutgoingMessage {
  return { customer: q.customer, routingKey: q.routingKey, body: Buffer.from(q.body, 'utf8'), messageId, type: q.type, timestamp: q.timestamp };
}

export interface FastMessage {
  tenant: string;
  messageId: string;
  message: QueuedAmqp;
}

export interface OutboxPublisherOptions {
  connection: AmqpConnection;
  box: Mailbox;
  /** The database of the box: the fast path deletes its confirmed rows with its own statement. */
  sql: SqlClient;
  /** The outbox queue this node drains. */
  queue: string;
  worker: string;
  topology: Topology;
  /** Most messages awaiting the broker's confirm at once. */
  capacity: number;
  leaseMs: number;
  pollMs: number;
  retry: RetryPolicy;
  onPublished?(n: number): void;
  onFailed?(messageId: string, err: Error, outcome: NackResult | undefined): void;
  /** A claim or an ack of the outbox failed (the database is down). */
  onError?(err: Error): void;
}

export class OutboxPublisher {
  private stopUsing: (() => void) | undefined;
  private drainer: Drainer | undefined;
  private publisher: ConfirmPublisher | undefined;
  published = 0;
  failed = 0;

  constructor(private readonly options: OutboxPublisherOptions) {}

  get inFlight(): number {
    return this.drainer?.inFlight ?? 0;
  }

  get connected(): boolean {
    return this.publisher?.alive === true;
  }

  start(): void {
    this.stopUsing = this.options.connection.use((conn) => this.setup(conn));
  }

  private async setup(conn: ChannelModel): Promise<() => void> {
    const o = this.options;
    const publisher = await ConfirmPublisher.open(conn, o.topology);
    this.publisher = publisher;
    const drainer = new Drainer(o.box, {
      queue: o.queue,
      worker: o.worker,
      capacity: o.capacity,
      leaseMs: o.leaseMs,
      pollMs: o.pollMs,
      retry: o.retry,
      ackDelayMs: 5,
      deliver: (m) => this.deliver(publisher, drainer, m),
      onError: o.onError,
    });
    this.drainer = drainer;
    drainer.start();
    return () => {
      if (this.drainer === drainer) this.drainer = undefined;
      void drainer.stop();
      if (this.publisher === publisher) this.publisher = undefined;
      void publisher.close(); // what is in flight is nacked, back to the outbox
    };
  }

  /** Whether rows written now can take the fast path (then enqueue them with FAST_PATH_HOLD_MS). */
  get fast(): boolean {
    return this.publisher?.alive === true;
  }

  /** Publishes rows just written with the hold; confirmed ones are deleted, the others wait for the Drainer. */
  publishNow(messages: readonly FastMessage[]): void {
    const publisher = this.publisher;
    if (!publisher?.alive) return; // the hold ends and the Drainer takes them
    for (const m of messages) {
      const started = performance.now();
      publisher.publish(outgoing(m.messageId, m.message)).then(
        () => {
          this.published++;
          delivery('amqp', 'delivered', (performance.now() - started) / 1000);
          this.options.onPublished?.(1);
          this.confirmed.push(m);
          if (this.confirmed.length >= 1_000) void this.flushConfirmed();
          else this.confirmTimer ??= setTimeout(() => void this.flushConfirmed(), 10);
        },
        () => delivery('amqp', 'retry'), // the hold ends and the Drainer tries again, counting attempts
      );
    }
  }

  private confirmed: FastMessage[] = [];
  private confirmTimer: NodeJS.Timeout | undefined;

  /** Deletes the rows the broker confirmed, unless a Drainer claimed them meanwhile (then it acks them). */
  private async flushConfirmed(): Promise<void> {
    if (this.confirmTimer) clearTimeout(this.confirmTimer);
    this.confirmTimer = undefined;
    const batch = this.confirmed;
    this.confirmed = [];
    if (batch.length === 0) return;
    try {
      await this.options.sql.query(
        `DELETE FROM outbox o USING unnest($2::text[], $3::text[]) AS m(tenant_id, message_id)
         WHERE o.queue = $1 AND o.tenant_id = m.tenant_id AND o.message_id = m.message_id AND o.claimed_by IS NULL`,
        [this.options.queue, batch.map((m) => m.tenant), batch.map((m) => m.messageId)],
      );
    } catch (err) {
      // Not deleted: published again when the hold ends, de-duplicated by message id.
      this.options.onError?.(err as Error);
    }
  }

  private deliver(publisher: ConfirmPublisher, drainer: Drainer, m: ClaimedMessage): void {
    const q = m.payload as QueuedAmqp;
    const started = performance.now();
    publisher.publish(outgoing(m.messageId, q)).then(
      () => {
        this.published++;
        delivery('amqp', 'delivered', (performance.now() - started) / 1000);
        this.options.onPublished?.(1);
        drainer.ack(m.id).catch((err: Error) => this.options.onError?.(err)); // not deleted: published again, de-duplicated by id
      },
      (err: Error) => {
        this.failed++;
        if (!publisher.alive && !(err instanceof UnroutableError)) {
          // The channel or connection went: a channel error alone (a refused declaration) needs a new connection.
          this.options.connection.reset(err.message);
        }
        drainer.nack(m.id, err).then(
          (outcome) => {
            delivery('amqp', outcome.outcome === 'dead' ? 'dead' : 'retry', (performance.now() - started) / 1000);
            this.options.onFailed?.(m.messageId, err, outcome);
          },
          (e: Error) => this.options.onFailed?.(m.messageId, err, void this.options.onError?.(e)),
        );
      },
    );
  }

  /** New rows are in the outbox: claim now rather than at the next poll. */
  nudge(): void {
    if (this.publisher?.alive) this.drainer?.wake();
  }

  async stop(): Promise<void> {
    this.stopUsing?.();
    this.stopUsing = undefined;
    await this.drainer?.stop();
    await this.flushConfirmed();
  }
}
