/**
 * The customer queues (seed 004, section 4; docs/amqp.md): one topic exchange; per customer a
 * durable queue with a message TTL (3 days by default) and a dead-letter exchange, bound to the
 * exchange with `<customer>.#`, so it receives `<customer>.eapi_<type>` and
 * `<customer>.event.<event type>`. What expires or a consumer rejects goes, with its routing key,
 * to the dead-letter exchange and the customer's `<queue>.dead` queue (kept for deadTtl), which is
 * also bound with the queue's own name (the key of a consumer's retried copy).
 * Framework-free.
 */
import type { Channel } from 'amqplib';

export const DEFAULT_TTL_MS = 3 * 24 * 3_600_000;
export const DEFAULT_DEAD_TTL_MS = 14 * 24 * 3_600_000;

export interface Topology {
  /** Topic exchange the messages are published to. */
  exchange: string;
  /** Dead-letter exchange (topic). */
  deadLetterExchange: string;
  /** Queue name = prefix + customer. */
  queuePrefix: string;
  /** x-message-ttl of the customer queues, ms. */
  ttlMs: number;
  /** x-message-ttl of the dead-letter queues, ms. */
  deadTtlMs: number;
}

export const DEFAULT_TOPOLOGY: Topology = {
  exchange: 'conflux',
  deadLetterExchange: 'conflux.dlx',
  queuePrefix: 'customer.',
  ttlMs: DEFAULT_TTL_MS,
  deadTtlMs: DEFAULT_DEAD_TTL_MS,
};

/** A customer name is one routing-key word: letters, digits, '_' and '-'. */
const CUSTOMER = /^[A-Za-z0-9_-]{1,100}$/;

export function checkCustomer(customer: unknown): string {
  if (typeof customer !== 'string' || !CUSTOMER.test(customer))
    throw new Error(`a customer is 1 to 100 letters, digits, '_' or '-' (one routing key word), got ${JSON.stringify(customer)}`);
  return customer;
}

export const queueName = (t: Topology, customer: string): string => `${t.queuePrefix}${customer}`;
export const deadQueueName = (t: Topology, customer: string): string => `${queueName(t, customer)}.dead`;

/** `<customer>.eapi_measurement_new`, `<customer>.event.device.connected`. */
export function routingKey(customer: string, kind: { eapiType: string } | { eventType: string }): string {
  return 'eapiType' in kind ? `${customer}.${kind.eapiType}` : `${customer}.event.${kind.eventType}`;
}

/** The arguments of a customer queue; a consumer declaring the queue must pass the same. */
export function queueArguments(t: Topology): Record<string, unknown> {
  return { 'x-message-ttl': t.ttlMs, 'x-dead-letter-exchange': t.deadLetterExchange };
}

/** Declares the exchanges (idempotent; once per channel is enough). */
export async function declareExchanges(ch: Channel, t: Topology): Promise<void> {
  await ch.assertExchange(t.exchange, 'topic', { durable: true });
  await ch.assertExchange(t.deadLetterExchange, 'topic', { durable: true });
}

/** Declares a customer's queue and dead-letter queue and binds them (idempotent). */
export async function declareCustomer(ch: Channel, t: Topology, customer: string): Promise<void> {
  const q = queueName(t, customer);
  const dead = deadQueueName(t, customer);
  await ch.assertQueue(q, { durable: true, arguments: queueArguments(t) });
  await ch.bindQueue(q, t.exchange, `${customer}.#`);
  await ch.assertQueue(dead, { durable: true, arguments: { 'x-message-ttl': t.deadTtlMs } });
  await ch.bindQueue(dead, t.deadLetterExchange, `${customer}.#`);
  // A consumer's retried copy travels by the default exchange under the queue's name (amqp-in):
  // dead-lettered, it keeps that key.
  await ch.bindQueue(dead, t.deadLetterExchange, q);
}
