/**
 * 010 — the federation (issue 12, seed 003). The entities themselves came with 001: config
 * (the proxy's settings), applications (App, with its JID), users (federation_id), user_applications
 * (UserApp) and consumers; inbox and outbox are the mailboxes. This makes them usable by the
 * federation jobs:
 *
 *   users              federation_id unique per tenant: an incoming Sen1Message names its user by it
 *   user_applications  the credentials for the local system kept as the project keeps every other
 *                      secret it must send: `password` stored as is and never returned (as
 *                      webhook_subscriptions.password), or `secret_ref`, where the operator keeps it
 *                      (as ftp_targets.secret_ref). The encrypted `secret` / `secret_key_id` pair of
 *                      001 goes: no key to decrypt it existed anywhere, and nothing wrote it.
 *   consumers          (tenant_id, id) unique, so later tables can point at a consumer of the same
 *                      tenant; an index for the Push Outbox's "enabled consumers" read
 *
 * A consumer's watermark (what Push Outbox has taken) is a pull_sources row keyed
 * `federation/consumer/<id>` (migration 009), so deleting that row re-sends a consumer's data.
 */
export const sql = /* sql */ `
ALTER TABLE users ADD CONSTRAINT users_tenant_id_federation_id_key UNIQUE (tenant_id, federation_id);

ALTER TABLE user_applications
  DROP COLUMN secret,
  DROP COLUMN secret_key_id,
  ADD COLUMN password text,
  ADD COLUMN secret_ref text;

ALTER TABLE consumers ADD CONSTRAINT consumers_tenant_id_id_key UNIQUE (tenant_id, id);
CREATE INDEX consumers_enabled ON consumers (tenant_id, id) WHERE enabled;
`;
