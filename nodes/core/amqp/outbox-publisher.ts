/**
 * The outbox drained onto RabbitMQ: while connected, a Drainer claims the node's outbox rows and
 * publishes each on one confirm channel; the broker's confirm acks the row (acks batched into one
 * DELETE), a nack, a return or a lost channel nacks it (retried after the backoff, dead-lettered
 * in the database after maxAttempts). While disconnected nothing is claimed, so an outage costs a
 * message at most the one attempt it was in flight during the loss. Framework-free.
 */
import type { ChannelModel } from 'amqplib';
import { Drainer } from '../mailbox/drainer';
import type { ClaimedMessage, Mailbox, NackResult, RetryPolicy } from '../mailbox/mailbox';
import type { AmqpConnection } from './connection';
import type { QueuedAmqp } from './messages';
import { ConfirmPublisher, UnroutableError } from './publisher';
import type { Topology } from './topology';

export interface OutboxPublisherOptions {
  connection: AmqpConnection;
  box: Mailbox;
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
      void drainer.stop();
      if (this.publisher === publisher) this.publisher = undefined;
      void publisher.close(); // what is in flight is nacked, back to the outbox
    };
  }

  private deliver(publisher: ConfirmPublisher, drainer: Drainer, m: ClaimedMessage): void {
    const q = m.payload as QueuedAmqp;
    publisher
      .publish({
        customer: q.customer,
        routingKey: q.routingKey,
        body: Buffer.from(q.body, 'utf8'),
        messageId: m.messageId,
        type: q.type,
        timestamp: q.timestamp,
        headers: { 'x-conflux-tenant': m.tenantId },
      })
      .then(
        () => {
          this.published++;
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
            (outcome) => this.options.onFailed?.(m.messageId, err, outcome),
            (e: Error) => this.options.onFailed?.(m.messageId, err, void this.options.onError?.(e)),
          );
        },
      );
  }

  async stop(): Promise<void> {
    this.stopUsing?.();
    this.stopUsing = undefined;
    await this.drainer?.stop();
  }
}
