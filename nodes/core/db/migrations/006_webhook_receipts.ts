/**
 * 006 — the webhook ids conflux-webhook-in has accepted (issue 10, push write). Numbered 006:
 * 005 is the webhook subscriptions and delivery log of conflux-webhook-out.
 *
 * webhook_receipts
 *   (tenant_id, queue, message_id)   one row per event accepted into the inbox. The inbox row is
 *                                    deleted once the flow has finished with it; this one stays,
 *                                    so a sender's retry of an event already processed is still
 *                                    answered 2xx without a second message. Pruned after the
 *                                    node's de-duplication window (received_at).
 */
export const sql = /* sql */ `
CREATE TABLE webhook_receipts (
  tenant_id   text NOT NULL,
  queue       text NOT NULL,
  message_id  text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, queue, message_id)
);
CREATE INDEX webhook_receipts_received ON webhook_receipts (received_at);
`;
