/**
 * Publishing with publisher confirms, many in flight: each publish returns a promise settled by
 * the broker's ack (resolved), nack, a return of the mandatory message (unroutable) or the loss of
 * the channel (rejected). amqplib hands each confirm to the publish's callback; RabbitMQ acks in
 * batches (`multiple`), so thousands of messages cost a handful of confirm frames and no round
 * trip each. A customer's queues are declared once per channel, before its first message.
 * Framework-free.
 */
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { declareCustomer, declareExchanges, type Topology } from './topology';

export interface OutgoingMessage {
  customer: string;
  routingKey: string;
  /** The body (JSON text). */
  body: Buffer;
  /** Stable id: consumers de-duplicate on it. */
  messageId: string;
  /** e.g. eapi_measurement_new, or the event type. */
  type: string;
  timestamp?: number;
}

export class UnroutableError extends Error {
  override readonly name = 'UnroutableError';
}

interface Pending {
  resolve(): void;
  reject(err: Error): void;
  returned?: string;
}

/** One confirm channel of one connection; dies with it (the owner opens a new one on reconnect). */
export class ConfirmPublisher {
  private readonly declared = new Map<string, Promise<void>>();
  private readonly pending = new Map<string, Pending>();
  private waitingDrain: Array<() => void> = [];
  private dead: Error | undefined;

  private constructor(
    private readonly ch: ConfirmChannel,
    private readonly topology: Topology,
  ) {
    ch.on('return', (m: { properties: { messageId?: string }; fields: { replyText?: string } }) => {
      // A return comes before the ack of the same message: remember it, reject on the ack.
      const p = m.properties.messageId !== undefined ? this.pending.get(m.properties.messageId) : undefined;
      if (p) p.returned = m.fields.replyText ?? 'NO_ROUTE';
    });
    ch.on('drain', () => {
      for (const go of this.waitingDrain.splice(0)) go();
    });
    ch.on('error', () => undefined); // 'close' follows
    ch.on('close', () => this.fail(new Error('the AMQP channel closed before the broker confirmed')));
  }

  static async open(conn: ChannelModel, topology: Topology): Promise<ConfirmPublisher> {
    const ch = await conn.createConfirmChannel();
    const p = new ConfirmPublisher(ch, topology);
    await declareExchanges(ch, topology);
    return p;
  }

  get alive(): boolean {
    return this.dead === undefined;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  private fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
    for (const go of this.waitingDrain.splice(0)) go();
  }

  /** Declares the customer's queues on first use (one declaration shared by concurrent callers). */
  private prepare(customer: string): Promise<void> {
    let ready = this.declared.get(customer);
    if (!ready) {
      ready = declareCustomer(this.ch, this.topology, customer);
      ready.catch(() => this.declared.delete(customer));
      this.declared.set(customer, ready);
    }
    return ready;
  }

  /** Resolves once the broker has the message (persisted, routed to a queue). */
  async publish(m: OutgoingMessage): Promise<void> {
    if (this.dead) throw this.dead;
    await this.prepare(m.customer);
    if (this.dead) throw this.dead;
    // The same id twice in flight (a re-claim racing the first delivery): wait for the first.
    const earlier = this.pending.get(m.messageId);
    if (earlier)
      await new Promise<void>((resolve) => {
        const { resolve: r0, reject: j0 } = earlier;
        earlier.resolve = () => (r0(), resolve());
        earlier.reject = (e) => (j0(e), resolve());
      });
    return new Promise<void>((resolve, reject) => {
      const entry: Pending = { resolve, reject };
      this.pending.set(m.messageId, entry);
      const settle = (err: unknown) => {
        if (this.pending.get(m.messageId) !== entry) return; // already failed with the channel
        this.pending.delete(m.messageId);
        if (err) entry.reject(err instanceof Error ? err : new Error(`the broker refused the message (nack)`));
        else if (entry.returned) {
          this.declared.delete(m.customer); // its queue was deleted: declare it again before the retry
          entry.reject(new UnroutableError(`unroutable: no queue is bound for ${m.routingKey} (${entry.returned})`));
        } else entry.resolve();
      };
      let room: boolean;
      try {
        room = this.ch.publish(
          this.topology.exchange,
          m.routingKey,
          m.body,
          {
            persistent: true,
            mandatory: true,
            messageId: m.messageId,
            type: m.type,
            contentType: 'application/json',
            contentEncoding: 'utf-8',
            timestamp: Math.floor((m.timestamp ?? Date.now()) / 1000),
          },
          settle,
        );
      } catch (err) {
        this.pending.delete(m.messageId);
        reject(err as Error);
        return;
      }
      if (!room) void this.drained();
    });
  }

  /** Resolves when the socket has room again (amqplib's publish returned false). */
  drained(): Promise<void> {
    if (this.dead) return Promise.resolve();
    return new Promise((resolve) => this.waitingDrain.push(resolve));
  }

  async close(): Promise<void> {
    this.fail(new Error('the publisher is closing'));
    await this.ch.close().catch(() => undefined);
  }
}
