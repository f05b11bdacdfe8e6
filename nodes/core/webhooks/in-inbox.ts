/**
 * Accepted webhooks in the inbox, framework-free. An event is accepted in one transaction: its
 * receipt (webhook_receipts, migration 006) and its inbox row (../mailbox). A webhook id already
 * received — still in the inbox, or handed to the flow and acknowledged since — is not stored
 * again: the sender's retry is answered 2xx and the flow sees the event once. Receipts are kept
 * for the node's de-duplication window, then pruned.
 *
 * The inbox row holds what the flow gets when the node drains it: the decoded payload, the
 * format, the device, the event, the request's headers (without credentials).
 */
import { createHash } from 'node:crypto';
import type { SqlClient } from '../db/sql';
import { Mailbox, type ClaimedMessage } from '../mailbox/mailbox';
import type { PlatformEvent } from '../events/event';
import type { DeviceRef } from '../model/message';
import type { DecodedBody } from './in-decode';

/** What one accepted webhook keeps in its inbox row. */
export interface StoredWebhook {
  /**
   * The payload as JSON text: a jsonb column would reorder an object's keys and drop repeated
   * ones, and the flow should see the sender's JSON as it was sent.
   */
  payload: string;
  format: string;
  receivedAt: number;
  device?: DeviceRef;
  event?: PlatformEvent;
  sen1?: unknown;
  headers: Record<string, string>;
  /** The sender's webhook-timestamp (seconds), when it sent one. */
  timestamp?: number;
}

export type StoreOutcome = 'stored' | 'duplicate';

/** Headers that carry credentials: never stored, never shown to the flow. */
const SECRET_HEADERS = new Set(['authorization', 'x-api-key', 'cookie', 'webhook-signature', 'proxy-authorization']);
const MAX_HEADERS_BYTES = 8_192;

/** The request's headers worth keeping for the flow (a sender's event type header, ...), bounded. */
export function keptHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  let size = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || SECRET_HEADERS.has(name)) continue;
    const text = Array.isArray(value) ? value.join(', ') : String(value);
    size += name.length + text.length;
    if (size > MAX_HEADERS_BYTES) break;
    out[name] = text;
  }
  return out;
}

/** A webhook-id a sender may use: 1 to 256 visible ASCII characters. */
export function validWebhookId(id: string): boolean {
  return id.length >= 1 && id.length <= 256 && /^[\x21-\x7e]+$/.test(id);
}

/** The id of a request without webhook-id: the same body always gets the same one. */
export function bodyId(body: Buffer): string {
  return `sha256:${createHash('sha256').update(body).digest('base64url')}`;
}

export function storedWebhook(decoded: DecodedBody, receivedAt: number, headers: Record<string, string>, timestamp?: number): StoredWebhook {
  const stored: StoredWebhook = { payload: JSON.stringify(decoded.payload ?? null), format: decoded.format, receivedAt, headers };
  if (decoded.device) stored.device = decoded.device;
  if (decoded.event) stored.event = decoded.event;
  if (decoded.sen1 !== undefined) stored.sen1 = decoded.sen1;
  if (timestamp !== undefined) stored.timestamp = timestamp;
  return stored;
}

/** Stores the webhook once per (tenant, queue, id); 'duplicate' when it was received before. */
export function storeOnce(db: SqlClient, tenant: string, queue: string, messageId: string, stored: StoredWebhook): Promise<StoreOutcome> {
  return db.transaction(async (tx) => {
    const receipt = await tx.query(
      'INSERT INTO webhook_receipts (tenant_id, queue, message_id) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, queue, message_id) DO NOTHING',
      [tenant, queue, messageId],
    );
    if (receipt.rowCount === 0) return 'duplicate';
    // The receipt is new; the inbox may still hold the id (a receipt pruned early): it then keeps its row.
    await new Mailbox(tx, 'inbox').enqueue(tenant, queue, [{ messageId, payload: stored }]);
    return 'stored';
  });
}

/** Deletes the queue's receipts older than `keepMs`; returns how many. */
export async function pruneReceipts(db: SqlClient, queue: string, keepMs: number): Promise<number> {
  const result = await db.query(`DELETE FROM webhook_receipts WHERE queue = $1 AND received_at < now() - ($2::double precision * interval '1 millisecond')`, [
    queue,
    keepMs,
  ]);
  return result.rowCount;
}

/** What the flow gets for an inbox row: the canonical message (or the JSON), with msg.webhook. */
export interface WebhookMessage {
  payload: unknown;
  tenant: string;
  source: { transport: 'webhook'; format: string; receivedAt: number };
  device?: DeviceRef;
  event?: PlatformEvent;
  sen1?: unknown;
  headers: Record<string, string>;
  webhook: {
    /** The sender's webhook-id, or sha256:<body hash> when it sent none. */
    id: string;
    tenant: string;
    queue: string;
    /** Hand-outs so far, this one included: above 1 after a failure, a timeout or a restart. */
    attempts: number;
    timestamp?: number;
  };
}

export function flowMessage(m: ClaimedMessage): WebhookMessage {
  const s = (m.payload ?? {}) as Partial<StoredWebhook>;
  const msg: WebhookMessage = {
    payload: typeof s.payload === 'string' ? (JSON.parse(s.payload) as unknown) : null,
    tenant: m.tenantId,
    source: { transport: 'webhook', format: s.format ?? 'json', receivedAt: s.receivedAt ?? m.createdAt.getTime() },
    headers: s.headers ?? {},
    webhook: { id: m.messageId, tenant: m.tenantId, queue: m.queue, attempts: m.attempts },
  };
  if (s.device) msg.device = s.device;
  if (s.event) msg.event = s.event;
  if (s.sen1 !== undefined) msg.sen1 = s.sen1;
  if (s.timestamp !== undefined) msg.webhook.timestamp = s.timestamp;
  return msg;
}
