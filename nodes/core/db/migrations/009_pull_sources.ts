/**
 * 009 — the watermarks of conflux-http-pull (issue 11, pull write). 007 and 008 are the API's
 * quotas and the schedules.
 *
 * pull_sources
 *   (tenant_id, key)   one row per pulled source: how far the pull has taken it (watermark: a
 *                      timestamp, an id or an opaque cursor, as JSON), the ids already taken at
 *                      that watermark (boundary), and a version each commit raises, so a pull
 *                      that read an older row commits nothing. Written only after the flow has
 *                      stored the batch; flows read it through conflux-business (pull_sources).
 */
export const sql = /* sql */ `
CREATE TABLE pull_sources (
  tenant_id  text NOT NULL,
  key        text NOT NULL,
  watermark  jsonb,
  boundary   jsonb NOT NULL DEFAULT '[]',
  version    integer NOT NULL DEFAULT 1,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, key)
);
`;
