/**
 * The platform's own events, built in one place so that every emitter (the device sessions, the
 * command router, the business node, the webhook deliveries) gives the same happening the same
 * id, and docs/events.md shows exactly what they send (the catalogue's examples are built here).
 * Each builder names what identifies its happening: a device's session by its start, a command
 * by its correlation id, a device row by its id (and, for an update, its new updated_at).
 * Framework-free.
 */
import { canonicalJson, createEvent, type PlatformEvent } from './event';

/** How a core module hands its events to whoever publishes them (the node passes publishEvent). */
export type EventSink = (event: PlatformEvent) => void;

/** Calls sink with the built event (none: nothing), and never lets a failure reach the caller: an event is a side effect. */
export function emitTo(sink: EventSink | undefined, build: () => PlatformEvent | undefined): void {
  if (!sink) return;
  try {
    const event = build();
    if (event) sink(event);
  } catch {
    // a listener's failure (or a malformed tenant) is not the device's or the command's
  }
}

export interface SessionFacts {
  tenant: string;
  serial: string;
  transport: string;
  /** When the session was opened (ms since the epoch): with the serial, what names it. */
  connectedAt: number;
}

export function deviceConnected(s: SessionFacts): PlatformEvent<{ device: string; transport: string }> {
  return createEvent({
    type: 'device.connected',
    tenant: s.tenant,
    subject: s.serial,
    occurredAt: s.connectedAt,
    identity: [s.serial, s.connectedAt],
    data: { device: s.serial, transport: s.transport },
  });
}

export function deviceDisconnected(
  s: SessionFacts & { disconnectedAt: number; reason: string },
): PlatformEvent<{ device: string; transport: string; connectedAt: string; durationMs: number; reason: string }> {
  return createEvent({
    type: 'device.disconnected',
    tenant: s.tenant,
    subject: s.serial,
    occurredAt: s.disconnectedAt,
    identity: [s.serial, s.connectedAt],
    data: {
      device: s.serial,
      transport: s.transport,
      connectedAt: new Date(s.connectedAt).toISOString(),
      durationMs: Math.max(0, s.disconnectedAt - s.connectedAt),
      reason: s.reason,
    },
  });
}

export interface CommandFacts {
  tenant: string;
  serial: string;
  /** The correlation id: one command, one answer or one time-out, whoever reports it. */
  commandId: string;
  command: string;
  at: number;
}

export type CommandAnswer = { ok: true; result: unknown } | { ok: false; error: string };

export function commandAnswered(
  c: CommandFacts & { answer: CommandAnswer },
): PlatformEvent<{ device: string; commandId: string; command: string } & CommandAnswer> {
  return createEvent({
    type: 'command.answered',
    tenant: c.tenant,
    subject: c.serial,
    occurredAt: c.at,
    identity: [c.commandId],
    data: { device: c.serial, commandId: c.commandId, command: c.command, ...c.answer },
  });
}

export function commandTimedOut(
  c: CommandFacts & { reason: 'timeout' | 'expired'; queued: boolean; timeoutMs?: number },
): PlatformEvent<{ device: string; commandId: string; command: string; reason: 'timeout' | 'expired'; queued: boolean; timeoutMs?: number }> {
  return createEvent({
    type: 'command.timed_out',
    tenant: c.tenant,
    subject: c.serial,
    occurredAt: c.at,
    identity: [c.commandId],
    data: {
      device: c.serial,
      commandId: c.commandId,
      command: c.command,
      reason: c.reason,
      queued: c.queued,
      ...(c.timeoutMs === undefined ? {} : { timeoutMs: c.timeoutMs }),
    },
  });
}

export type DeviceChange = 'created' | 'updated' | 'deleted';

/**
 * device.created / updated / deleted from a devices row as the business store returns it (for a
 * delete: the row as it was). `changed` lists the fields an update was given.
 */
export function deviceChanged(
  change: DeviceChange,
  tenant: string,
  row: Record<string, unknown>,
  options: { changed?: string[]; at?: number } = {},
): PlatformEvent {
  const { changed, at = Date.now() } = options;
  const id = String(row.id);
  const serial = typeof row.serial === 'string' ? row.serial : id;
  const updatedAt = iso(row.updated_at);
  const device: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) device[k] = v instanceof Date ? v.toISOString() : typeof v === 'bigint' ? Number(v) : v;
  // Two updates within one millisecond still differ by what they made of the row.
  const identity = change === 'updated' ? [id, updatedAt, canonicalJson(device)] : [id];
  const occurredAt = change === 'created' ? (iso(row.created_at) ?? at) : change === 'updated' ? (updatedAt ?? at) : at;
  return createEvent({
    type: `device.${change}`,
    tenant,
    subject: serial,
    occurredAt,
    identity,
    data: change === 'updated' ? { device, changed: changed ?? [] } : { device },
  });
}

/**
 * The event of a business-store operation, if it is one: create, update and delete of `devices`
 * (an update given no field changes nothing and is no event). For the conflux-business node.
 */
export function businessEvent(action: string, entity: string, tenant: string, result: unknown, input: unknown): PlatformEvent | undefined {
  if (entity !== 'devices' || result === null || typeof result !== 'object') return undefined;
  const row = result as Record<string, unknown>;
  if (action === 'create') return deviceChanged('created', tenant, row);
  if (action === 'delete') return deviceChanged('deleted', tenant, row);
  if (action !== 'update') return undefined;
  const changed = input !== null && typeof input === 'object' ? Object.keys(input).sort() : [];
  return changed.length > 0 ? deviceChanged('updated', tenant, row, { changed }) : undefined;
}

function iso(v: unknown): string | undefined {
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'string' && !Number.isNaN(Date.parse(v))) return new Date(v).toISOString();
  return undefined;
}

/**
 * delivery.failed: a delivery to a subscriber went to dead letters after its last try. Keyed by
 * the delivery (the event it carried and the subscription), so a retried report is one event.
 */
export function deliveryFailed(d: {
  tenant: string;
  channel: 'webhook' | 'amqp' | string;
  subscription: string;
  eventId: string;
  eventType: string;
  attempts: number;
  lastError: string;
  lastStatus?: number;
  at: number;
}): PlatformEvent {
  return createEvent({
    type: 'delivery.failed',
    tenant: d.tenant,
    subject: d.subscription,
    occurredAt: d.at,
    identity: [d.channel, d.subscription, d.eventId],
    data: {
      channel: d.channel,
      subscription: d.subscription,
      eventId: d.eventId,
      eventType: d.eventType,
      attempts: d.attempts,
      lastError: d.lastError,
      ...(d.lastStatus === undefined ? {} : { lastStatus: d.lastStatus }),
    },
  });
}

/** subscription.disabled: a webhook subscription turned off by the platform (a 410 Gone, say). */
export function subscriptionDisabled(s: { tenant: string; subscription: string; url: string; reason: string; status?: number; at: number }): PlatformEvent {
  return createEvent({
    type: 'subscription.disabled',
    tenant: s.tenant,
    subject: s.subscription,
    occurredAt: s.at,
    identity: [s.subscription, s.at],
    data: { subscription: s.subscription, url: s.url, reason: s.reason, ...(s.status === undefined ? {} : { status: s.status }) },
  });
}
