/**
 * A custom event from a flow's message (the conflux-event node in "emit" mode): seed 002's
 * `vehicle.processed` with msg.payload as its data. What makes a repeat the same event (and so
 * the same id, which receivers de-duplicate on): msg.eventId when the flow has one; else a hash
 * of the type, tenant, subject and data, plus, with identity "occurrence" (the default), the
 * time it happened — msg.occurredAt when the message carries it, else the moment it is emitted.
 * Identity "content" leaves the time out: the same data about the same subject is one event
 * however often the flow sends it. Framework-free.
 */
import { createHash } from 'node:crypto';
import type { CanonicalMessage } from '../model/message';
import { validateResolved } from '../model/senml';
import { isPlatformType } from './catalogue';
import { canonicalJson, createEvent, EventError, isEventType, readingEvent, type PlatformEvent } from './event';

export { canonicalJson } from './event';

export type EventIdentity = 'occurrence' | 'content';

export interface EmitOptions {
  /** The configured type; '' when every message must name its own. */
  type: string;
  /** Take msg.eventType (else msg.topic) over the configured type. */
  typeFromMessage: boolean;
  /** Where the subject is, as a dotted msg property ('subject', 'payload.vin'). */
  subjectProperty: string;
  /** Used when the message names no tenant. */
  tenant: string;
  identity: EventIdentity;
}

export interface EmitMessage {
  payload?: unknown;
  eventType?: unknown;
  topic?: unknown;
  eventId?: unknown;
  occurredAt?: unknown;
  tenant?: unknown;
  device?: { tenant?: unknown; id?: unknown };
  [key: string]: unknown;
}

/** The type a message asks for under these options; throws EventError saying why there is none. */
export function typeOf(msg: EmitMessage, options: Pick<EmitOptions, 'type' | 'typeFromMessage'>): string {
  let type: unknown = options.type;
  let from = 'the node’s Type';
  if (options.typeFromMessage) {
    if (msg.eventType !== undefined && msg.eventType !== '') [type, from] = [msg.eventType, 'msg.eventType'];
    else if (typeof msg.topic === 'string' && msg.topic !== '') [type, from] = [msg.topic, 'msg.topic'];
  }
  if (type === '' || type === undefined) throw new EventError('no event type: set the node’s Type, or allow msg.eventType / msg.topic and set one');
  if (!isEventType(type)) {
    throw new EventError(`${from} ${JSON.stringify(type)} is not an event type: dotted lower-case words of a-z, 0-9, _ and -, e.g. "vehicle.processed"`);
  }
  if (isPlatformType(type) && type !== 'reading.received') {
    throw new EventError(`${from} "${type}" is a platform event type: the platform emits it; a flow emits its own types (e.g. "vehicle.processed")`);
  }
  return type;
}

/** A dotted property of msg ('payload.vin'); undefined when a step is missing. */
export function propertyOf(msg: Record<string, unknown>, path: string): unknown {
  let at: unknown = msg;
  for (const step of path.split('.')) {
    if (at === null || typeof at !== 'object') return undefined;
    at = (at as Record<string, unknown>)[step];
  }
  return at;
}

/** The event a message emits; throws EventError naming what is wrong (for done(err)). */
export function eventFromMessage(msg: EmitMessage, options: EmitOptions, now = Date.now()): PlatformEvent {
  const type = typeOf(msg, options);
  const tenantField = msg.device?.tenant ?? msg.tenant;
  if (tenantField !== undefined && (typeof tenantField !== 'string' || tenantField === ''))
    throw new EventError('msg.device.tenant / msg.tenant must be a tenant id');
  const tenant = (tenantField as string | undefined) ?? options.tenant;
  if (type === 'reading.received') {
    // The platform's own event of a reading: only from a canonical message, with its own id.
    if (!Array.isArray(msg.payload) || msg.payload.length === 0)
      throw new EventError('reading.received is made from a canonical message: msg.payload must be its records');
    try {
      validateResolved(msg.payload);
    } catch (err) {
      throw new EventError(`reading.received is made from a canonical message: ${(err as Error).message}`);
    }
    return readingEvent(msg as unknown as CanonicalMessage, tenant);
  }
  const rawSubject = propertyOf(msg, options.subjectProperty || 'subject') ?? msg.device?.id;
  if (rawSubject !== undefined && rawSubject !== null && typeof rawSubject !== 'string' && typeof rawSubject !== 'number') {
    throw new EventError(`msg.${options.subjectProperty || 'subject'} must be a string or a number (what the event is about), got ${typeof rawSubject}`);
  }
  const subject = rawSubject === undefined || rawSubject === null ? '' : String(rawSubject);
  if (msg.payload === undefined) throw new EventError('msg.payload is missing: it is the event’s data');
  let data: string | undefined;
  try {
    data = canonicalJson(msg.payload);
  } catch (err) {
    throw new EventError(`msg.payload is not JSON: ${(err as Error).message}`);
  }
  if (data === undefined) throw new EventError(`msg.payload is not JSON (a ${typeof msg.payload})`);
  const occurredAt = msg.occurredAt === undefined ? now : timeOf(msg.occurredAt);
  const digest = createHash('sha256').update(data).digest('base64url');
  return createEvent({
    type,
    tenant,
    subject,
    occurredAt,
    data: JSON.parse(data) as unknown,
    id: eventIdOf(msg.eventId),
    identity: options.identity === 'content' ? [subject, digest] : [subject, new Date(occurredAt).toISOString(), digest],
  });
}

function timeOf(value: unknown): number | string | Date {
  if (value instanceof Date || typeof value === 'number' || typeof value === 'string') {
    const at = new Date(value);
    if (!Number.isNaN(at.getTime())) return at;
  }
  throw new EventError(`msg.occurredAt must be a time (ms since the epoch, ISO 8601 text or a Date), got ${JSON.stringify(value)}`);
}

function eventIdOf(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '' || value.length > 200) throw new EventError('msg.eventId must be a non-empty string of at most 200 characters');
  return value;
}
