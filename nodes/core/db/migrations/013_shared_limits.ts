/**
 * 013 — the gateway's UDP tokens and per-tenant rate budgets in the database (issue 14), so that
 * several Conflux instances on one database share them (docs/operations.md, "Several instances").
 *
 * udp_tokens     one row per single-use UDP token (nodes/core/devices/udp-tokens.ts): issued over
 *                an authenticated session on any instance, spent by one UPDATE on whichever
 *                instance the datagram reaches. A spent row stays (spent_at) until it is pruned,
 *                one token life after it expired, so that a replay is told from a token never
 *                issued on every instance. (serial, expires_at) bounds the tokens a device holds;
 *                expires_at serves the pruning.
 * rate_buckets   one token bucket per gateway (the conflux-gateway node's id: the same on every
 *                instance running the same flows) and tenant (nodes/core/devices/tenant-rate.ts).
 *                tokens as of at_ms (ms since the epoch, the database's clock); granted is what the
 *                last lease took, for its RETURNING.
 */
export const sql = /* sql */ `
CREATE TABLE udp_tokens (
  token      bytea PRIMARY KEY,
  tenant     text NOT NULL,
  serial     text NOT NULL,
  device_id  bigint NOT NULL,
  expires_at timestamptz NOT NULL,
  spent_at   timestamptz
);
CREATE INDEX udp_tokens_serial ON udp_tokens (serial, expires_at);
CREATE INDEX udp_tokens_expires ON udp_tokens (expires_at);
CREATE TABLE rate_buckets (
  scope   text NOT NULL,
  tenant  text NOT NULL,
  tokens  double precision NOT NULL,
  at_ms   double precision NOT NULL,
  granted double precision NOT NULL,
  PRIMARY KEY (scope, tenant)
);
`;
