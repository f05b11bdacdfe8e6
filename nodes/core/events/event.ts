/**
 * The platform event (DESIGN.md, "Events"): what webhooks, AMQP queues and the REST API speak of.
 * `{ id, type, tenant, occurredAt, subject, data }`. The id is stable: the same happening always
 * gets the same id (a hash of what identifies it), so a receiver de-duplicates on it and a retry
 * or a replay is never taken for a second event. Framework-free.
 */
import { createHash } from 'node:crypto';
import type { CanonicalMessage, SourceInfo } from '../model/message';

export interface PlatformEvent<D = unknown> {
  /** `evt_` and 26 base32 characters; the same for the same happening. */
  id: string;
  /** Dotted lower-case name, e.g. `device.connected`, `vehicle.processed`. */
  type: string;
  tenant: string;
  /** ISO 8601 instant in UTC. */
  occurredAt: string;
  /** What the event is about, e.g. the device id or a vehicle's VIN. */
  subject: string;
  data: D;
}

export class EventError extends Error {
  override readonly name = 'EventError';
}

const TYPE = /^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$/;
const MAX_TYPE = 100;
const MAX_SUBJECT = 256;

export function isEventType(type: unknown): type is string {
  return typeof type === 'string' && type.length <= MAX_TYPE && TYPE.test(type);
}

/** A stable event id from what identifies the happening (type and tenant are always part of it). */
export function eventId(type: string, tenant: string, ...parts: unknown[]): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([type, tenant, ...parts]))
    .digest();
  return `evt_${base32(digest).slice(0, 26)}`;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

export interface NewEvent<D> {
  type: string;
  tenant: string;
  subject: string;
  data: D;
  /** Default: now. */
  occurredAt?: Date | number | string;
  /** A ready id (e.g. from a third party); else `identity` (or subject and time) is hashed. */
  id?: string;
  /** What makes this happening unique beside type and tenant. Default: [subject, occurredAt]. */
  identity?: unknown[];
}

/** JSON with object keys sorted: equal data, equal text, whatever order its keys were set in. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v as object)
            .sort()
            .map((k) => [k, (v as Record<string, unknown>)[k]]),
        )
      : v,
  );
}

/** Builds a checked event; throws EventError naming the bad field. */
export function createEvent<D>(input: NewEvent<D>): PlatformEvent<D> {
  if (!isEventType(input.type)) throw new EventError(`type must be a dotted lower-case name (a-z, 0-9, _ and -), got ${JSON.stringify(input.type)}`);
  if (typeof input.tenant !== 'string' || input.tenant === '') throw new EventError('tenant must be a non-empty string');
  if (typeof input.subject !== 'string' || input.subject.length > MAX_SUBJECT)
    throw new EventError(`subject must be a string of at most ${MAX_SUBJECT} characters`);
  if (input.data === undefined) throw new EventError('data is missing');
  const at = new Date(input.occurredAt ?? Date.now());
  if (Number.isNaN(at.getTime())) throw new EventError(`occurredAt is not a time: ${JSON.stringify(input.occurredAt)}`);
  const occurredAt = at.toISOString();
  if (input.id !== undefined && (typeof input.id !== 'string' || input.id === '' || input.id.length > 200))
    throw new EventError('id must be a non-empty string of at most 200 characters');
  const id = input.id ?? eventId(input.type, input.tenant, ...(input.identity ?? [input.subject, occurredAt]));
  return { id, type: input.type, tenant: input.tenant, occurredAt, subject: input.subject, data: input.data };
}

/** Checks a value that claims to be an event (from a flow or a peer). */
export function parseEvent(value: unknown): PlatformEvent {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new EventError('an event must be an object');
  const e = value as Record<string, unknown>;
  if (typeof e.id !== 'string') throw new EventError('id must be a string');
  return createEvent({
    id: e.id,
    type: e.type as string,
    tenant: e.tenant as string,
    subject: e.subject as string,
    data: e.data,
    occurredAt: e.occurredAt as string,
  });
}

/**
 * Whether a subscription's pattern takes an event type: `*` takes all, `device.*` every type
 * under `device.` (at any depth), anything else only itself.
 */
export function typeMatches(pattern: string, type: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) return type.startsWith(pattern.slice(0, -1));
  return pattern === type;
}

/** A pattern a subscription or a listener may hold: `*`, a type, or a type prefix ending in `.*`. */
export function isEventPattern(pattern: unknown): pattern is string {
  if (pattern === '*') return true;
  if (typeof pattern !== 'string') return false;
  return isEventType(pattern.endsWith('.*') ? pattern.slice(0, -2) : pattern);
}

export const typesMatch = (patterns: readonly string[], type: string): boolean => patterns.some((p) => typeMatches(p, type));

/**
 * The `reading.received` event of a canonical message. Its id hashes the device and the records'
 * names and times, which is what the stores de-duplicate on: the same reading sent twice gives
 * the same event, with the same body. So the body says how the reading came (transport, format)
 * but not when this copy arrived: a device sending it again after a lost acknowledgement, or a
 * broker redelivering it, must not make one id carry two bodies once the first copy has left
 * the outbox (docs/webhooks.md: "always the same event with the same body").
 */
export function readingEvent(
  msg: CanonicalMessage,
  fallbackTenant = 'default',
): PlatformEvent<{ device?: string; records: CanonicalMessage['payload']; source?: Omit<SourceInfo, 'receivedAt'> }> {
  const tenant = msg.device?.tenant ?? fallbackTenant;
  const subject = msg.device?.id ?? msg.payload[0]?.n.split('/')[0] ?? '';
  const first = msg.payload.reduce((min, r) => Math.min(min, r.t), Infinity);
  return createEvent({
    type: 'reading.received',
    tenant,
    subject,
    occurredAt: Number.isFinite(first) ? first * 1000 : (msg.source?.receivedAt ?? Date.now()),
    identity: [subject, msg.payload.map((r) => [r.n, r.t])],
    data: { device: msg.device?.id, records: msg.payload, source: msg.source && { transport: msg.source.transport, format: msg.source.format } },
  });
}

/**
 * The event a flow message carries, for the connectors that send events: msg.event, or
 * msg.payload when it is not canonical records (then it must be an event). Undefined for a
 * canonical reading, which each connector sends its own way (e.g. as readingEvent()).
 */
export function carriedEvent(msg: { payload?: unknown; event?: unknown }): PlatformEvent | undefined {
  if (msg.event !== undefined) return parseEvent(msg.event);
  if (Array.isArray(msg.payload)) return undefined;
  if (typeof msg.payload !== 'object' || msg.payload === null) throw new EventError('msg.payload is neither canonical records nor a platform event');
  return parseEvent(msg.payload);
}
