/**
 * 012 — the bodies of delivered webhook events (issue 13, the self-service page's resend).
 *
 * webhook_events   one row per tenant and event id: the JSON body exactly as sent (every
 *                  subscription of the tenant got the same bytes), written in the statement that
 *                  logs a delivery attempt, so a logged delivery can be sent again with the same
 *                  webhook-id. Pruned with the delivery log (an event with no logged attempt left).
 * webhook_deliveries gains an index on attempted_at, for that pruning.
 */
export const sql = /* sql */ `
CREATE TABLE webhook_events (
  tenant_id   text NOT NULL,
  event_id    text NOT NULL,
  event_type  text NOT NULL,
  body        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);
CREATE INDEX webhook_deliveries_attempted ON webhook_deliveries (attempted_at);
`;
