/**
 * Consuming a queue with a prefetch, acknowledging each message only once `handle` resolved (in
 * Node-RED: once the flow has finished with it). A failed message is retried a bounded number of
 * times — a copy with `x-conflux-retries` + 1 is published to the same queue (by the default
 * exchange, on a confirm channel) and the original acked once the broker has the copy — and then,
 * or at once when it cannot be decoded, rejected without requeue: the queue's dead-letter exchange
 * takes it. Several consumers may share the queue (the broker hands each message to one). A
 * consumer the broker cancels (its queue deleted) subscribes again after a delay; a lost
 * connection brings the whole setup back through AmqpConnection. Framework-free.
 */
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { AmqpConnection } from './connection';

export const RETRY_HEADER = 'x-conflux-retries';
export const ERROR_HEADER = 'x-conflux-error';

/** A failure that no retry can mend (the body cannot be decoded): dead-lettered at once. */
export class PermanentError extends Error {
  override readonly name = 'PermanentError';
}

export type ConsumerState = 'waiting' | 'consuming' | 'resubscribing';

export interface ConsumerOptions {
  connection: AmqpConnection;
  queue: string;
  /** Unacknowledged messages the broker sends at most. */
  prefetch: number;
  /** Failed messages are tried again this many times before they are dead-lettered. */
  maxRetries: number;
  /** Declare the queue with these arguments (must equal the existing queue's); undefined: it must exist. */
  declare?: Record<string, unknown>;
  /** Wait before subscribing again after a cancel or a missing queue. */
  resubscribeMs?: number;
  handle(msg: ConsumeMessage): Promise<void>;
  onState?(state: ConsumerState, detail?: string): void;
  /** A message was settled: acked, retried (a copy requeued) or dead-lettered. */
  onSettled?(outcome: 'acked' | 'retried' | 'dead', msg: ConsumeMessage, err?: Error): void;
}

/** Times the message was already retried (our header). */
export function retriesOf(msg: ConsumeMessage): number {
  const n = Number(msg.properties.headers?.[RETRY_HEADER] ?? 0);
  return Number.isInteger(n) && n >= 0 ? n : 0;
}

const COPIED: Array<keyof ConsumeMessage['properties']> = [
  'contentType',
  'contentEncoding',
  'deliveryMode',
  'priority',
  'correlationId',
  'replyTo',
  'expiration',
  'messageId',
  'timestamp',
  'type',
  'appId',
];

export class AmqpConsumer {
  private stopUsing: (() => void) | undefined;
  consumed = 0;

  constructor(private readonly options: ConsumerOptions) {}

  start(): void {
    this.stopUsing = this.options.connection.use((conn) => this.setup(conn));
  }

  stop(): void {
    this.stopUsing?.();
    this.stopUsing = undefined;
  }

  /** Subscribes on this connection, again after each cancel, until the teardown. */
  private async setup(conn: ChannelModel): Promise<() => void> {
    let over = false;
    let channel: ConfirmChannel | undefined;
    let timer: NodeJS.Timeout | undefined;
    const o = this.options;
    const again = (why: string) => {
      if (over || timer) return;
      o.onState?.('resubscribing', why);
      const old = channel;
      channel = undefined;
      old?.close().catch(() => undefined);
      timer = setTimeout(() => {
        timer = undefined;
        void subscribe();
      }, o.resubscribeMs ?? 1_000);
    };
    const subscribe = async (): Promise<void> => {
      if (over) return;
      let ch: ConfirmChannel;
      try {
        ch = await conn.createConfirmChannel();
      } catch (err) {
        return again((err as Error).message); // the connection is going: its teardown ends this
      }
      channel = ch;
      ch.on('error', () => undefined);
      ch.on('close', () => {
        if (channel === ch) again('the channel closed');
      });
      try {
        if (o.declare) await ch.assertQueue(o.queue, { durable: true, arguments: o.declare });
        else await ch.checkQueue(o.queue);
        await ch.prefetch(o.prefetch);
        await ch.consume(
          o.queue,
          (msg) => {
            if (msg === null) return again(`the broker cancelled the consumer (queue ${o.queue} deleted?)`);
            this.consumed++;
            this.process(ch, msg);
          },
          { noAck: false },
        );
        o.onState?.('consuming', o.queue);
      } catch (err) {
        if (channel === ch) again((err as Error).message);
      }
    };
    o.onState?.('waiting', o.queue);
    await subscribe();
    return () => {
      over = true;
      if (timer) clearTimeout(timer);
      channel?.close().catch(() => undefined);
      channel = undefined;
    };
  }

  private process(ch: ConfirmChannel, msg: ConsumeMessage): void {
    const o = this.options;
    // On a closed channel ack/nack throw: the broker gives the message to another consumer anyway.
    const safely = (fn: () => void) => {
      try {
        fn();
      } catch {
        // the channel is gone; the message will be delivered again
      }
    };
    o.handle(msg).then(
      () => {
        safely(() => ch.ack(msg));
        o.onSettled?.('acked', msg);
      },
      (err: Error) => {
        const retries = retriesOf(msg);
        if (err instanceof PermanentError || retries >= o.maxRetries) {
          safely(() => ch.nack(msg, false, false));
          o.onSettled?.('dead', msg, err);
          return;
        }
        const props: Options.Publish = {};
        for (const k of COPIED) if (msg.properties[k] !== undefined) (props as Record<string, unknown>)[k] = msg.properties[k];
        props.headers = { ...(msg.properties.headers ?? {}), [RETRY_HEADER]: retries + 1, [ERROR_HEADER]: String(err.message).slice(0, 500) };
        safely(() =>
          ch.publish('', o.queue, msg.content, props, (publishErr: unknown) => {
            // The copy is safe with the broker: drop the original. Else give the original back.
            safely(() => (publishErr ? ch.nack(msg, false, true) : ch.ack(msg)));
            if (!publishErr) o.onSettled?.('retried', msg, err);
          }),
        );
      },
    );
  }
}
