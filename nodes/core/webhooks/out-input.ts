/** What a webhook-out node takes: a platform event, or a canonical reading message. Framework-free. */
import { parseEvent, readingEvent, type PlatformEvent } from '../events/event';
import type { CanonicalMessage } from '../model/message';

/** The event a message carries: msg.payload (or msg.event) as an event, or a canonical reading. */
export function eventOf(msg: { payload?: unknown; event?: unknown }, defaultTenant: string): PlatformEvent {
  const candidate = msg.event ?? msg.payload;
  if (Array.isArray(msg.payload) && msg.event === undefined) return readingEvent(msg as unknown as CanonicalMessage, defaultTenant);
  return parseEvent(candidate);
}
