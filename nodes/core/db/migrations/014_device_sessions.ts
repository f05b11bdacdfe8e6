/**
 * 014 — which instance holds a device's session, for commands across instances (issue 14, item 1;
 * docs/operations.md, "Device commands across instances").
 *
 * gateway_instances   one row per running gateway (a random id per process start); seen_at is its
 *                     heartbeat. An instance not seen for the TTL is dead: its rows are ignored,
 *                     then deleted, and its device_sessions go with them (ON DELETE CASCADE).
 * device_sessions     the instance holding each connected device's TCP or MQTT session, one row per
 *                     device (the latest session wins); session_id tells that instance which of its
 *                     sessions a newer one elsewhere replaced.
 * device_commands     gains origin (the instance whose caller waits for the answer: the instance that
 *                     delivers it tells that one) and timeout_ms (the caller's answer timeout, used
 *                     by whichever instance delivers it, also after a restart).
 */
export const sql = /* sql */ `
CREATE TABLE gateway_instances (
  id          text PRIMARY KEY,
  started_at  timestamptz NOT NULL DEFAULT now(),
  seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE device_sessions (
  tenant_id   text NOT NULL,
  serial      text NOT NULL,
  instance_id text NOT NULL REFERENCES gateway_instances (id) ON DELETE CASCADE,
  session_id  text NOT NULL,
  transport   text NOT NULL,
  since       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, serial)
);
CREATE INDEX device_sessions_instance ON device_sessions (instance_id);
ALTER TABLE device_commands ADD COLUMN origin text, ADD COLUMN timeout_ms integer;
`;
