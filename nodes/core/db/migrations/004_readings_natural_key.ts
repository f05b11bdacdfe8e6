/**
 * 004 — a reading is stored once (issue 8): (tenant_id, name, t) is its natural key, the same
 * identity the Elasticsearch store gives a document (_id = sha256 of [tenant, n, t]). A device
 * that sends again what was not acknowledged, or a crash between commit and acknowledgement,
 * then finds its reading already there, and the store skips it (INSERT … ON CONFLICT DO
 * NOTHING) instead of storing and rolling it up a second time.
 *
 *   duplicates          removed first, keeping the lowest id (the first stored) of each key.
 *                       The rollups are left as they are: which of their counts came from a
 *                       repeat cannot be told apart any more.
 *   readings_key        UNIQUE (tenant_id, name, t): the key, and one name's readings in page
 *                       order, so it replaces 002's readings_name_t (tenant_id, name, t, id)
 *   readings_tenant_t   (tenant_id, t, name): a tenant's readings in page order for prefix
 *                       queries; (t, name) is unique now, so the id tie-breaker is dropped
 *
 * rollups
 *   fillfactor 50       the time-series store now folds every batch's new readings into the
 *                       rollups in its own transaction, so a rollup row is updated once per batch
 *                       of its bucket. Room left on each page lets those updates stay on the page
 *                       (HOT: no indexed column changes), without new index entries; on the
 *                       storage bench this about doubled the rollup upserts' rate. Takes effect
 *                       on pages written from now on.
 *
 * The id column stays (cursors issued before this migration name it, and reading them needs
 * no id: see time-series-sql.ts), but nothing orders or pages by it any more.
 */
export const sql = /* sql */ `
DELETE FROM readings WHERE ctid = ANY (ARRAY(
  SELECT ctid FROM (
    SELECT ctid, row_number() OVER (PARTITION BY tenant_id, name, t ORDER BY id) AS copy_no FROM readings
  ) numbered WHERE copy_no > 1));
CREATE UNIQUE INDEX readings_key ON readings (tenant_id, name, t);
DROP INDEX readings_name_t;
DROP INDEX readings_tenant_t;
CREATE INDEX readings_tenant_t ON readings (tenant_id, t, name);
ALTER TABLE rollups SET (fillfactor = 50);
`;
