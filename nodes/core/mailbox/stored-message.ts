/**
 * What of a Node-RED message a mailbox keeps, and the message a drain hands out again. Only the
 * parts that mean something to a peer travel: payload, topic, device, source, headers. Buffers
 * survive the JSON column as { $base64 }.
 */
import type { BoxName, ClaimedMessage, RowId } from './mailbox';

export interface StoredMessage {
  payload: unknown;
  topic?: unknown;
  device?: unknown;
  source?: unknown;
  headers?: unknown;
}

const KEPT = ['topic', 'device', 'source', 'headers'] as const;

function pack(value: unknown): unknown {
  return Buffer.isBuffer(value) ? { $base64: value.toString('base64') } : value;
}

function unpack(value: unknown): unknown {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const b = (value as { $base64?: unknown }).$base64;
    if (typeof b === 'string' && Object.keys(value).length === 1) return Buffer.from(b, 'base64');
  }
  return value;
}

export function toStored(msg: Record<string, unknown>): StoredMessage {
  const stored: StoredMessage = { payload: pack(msg.payload) ?? null };
  for (const key of KEPT) if (msg[key] !== undefined) stored[key] = msg[key];
  return stored;
}

export interface MailboxRef {
  box: BoxName;
  queue: string;
  tenant: string;
  id: RowId;
  messageId: string;
  attempts: number;
  lastError: string | null;
}

/** The message a drain sends: the stored parts plus msg.mailbox, which settles it when it comes back. */
export function fromStored(m: ClaimedMessage, box: BoxName): StoredMessage & { mailbox: MailboxRef; messageId: string } {
  const stored = (m.payload ?? {}) as StoredMessage;
  const msg: StoredMessage & { mailbox: MailboxRef; messageId: string } = {
    payload: unpack(stored.payload),
    messageId: m.messageId,
    mailbox: { box, queue: m.queue, tenant: m.tenantId, id: m.id, messageId: m.messageId, attempts: m.attempts, lastError: m.lastError },
  };
  for (const key of KEPT) if (stored[key] !== undefined) msg[key] = stored[key];
  return msg;
}
