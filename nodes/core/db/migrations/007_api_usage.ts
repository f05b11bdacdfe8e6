/**
 * 007 — what each API key has used of its quota (issue 11, the REST API).
 *
 * api_usage
 *   (key_id, window_start)   one counter row per API key and quota period: requests served and
 *                            bytes transferred (request and response bodies). Every instance on
 *                            the database counts into the same row with one upsert per request
 *                            (nodes/core/api/quota.ts), so a quota holds across instances. Rows
 *                            of past windows are pruned.
 */
export const sql = /* sql */ `
CREATE TABLE api_usage (
  key_id       bigint NOT NULL,
  window_start timestamptz NOT NULL,
  tenant_id    text NOT NULL,
  requests     bigint NOT NULL DEFAULT 0,
  bytes        bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (key_id, window_start)
);
CREATE INDEX api_usage_window ON api_usage (window_start);
`;
