/**
 * 004 — a reading is stored once (issue 8). Its natural key is (tenant_id, name, t, u): the
 * tenant, the record's name, its time to the microsecond and its unit (no unit counts as '').
 * The unit belongs in it because SenML names one sensor's several quantities by unit alone: in
 * RFC 8428's example 5.1.3 one name carries %RH, lat and lon at the same time. The Elasticsearch
 * store gives a document the same identity (time-series-es.ts, readingId). A device that sends
 * again what was not acknowledged, or a crash between commit and acknowledgement, then finds its
 * reading already there, and the store skips it (INSERT … ON CONFLICT DO NOTHING) instead of
 * storing and rolling it up a second time.
 *
 * readings
 *   duplicates          removed first, keeping the lowest id (the first stored) of each key.
 *                       The rollups keep their counts: which of them came from a repeat cannot
 *                       be told any more.
 *   readings_key        UNIQUE (tenant_id, name, t, coalesce(u, '')): the key, and one name's
 *                       readings in page order, so it replaces 002's readings_name_t
 *                       (tenant_id, name, t, id)
 *   readings_tenant_t   (tenant_id, t, name, coalesce(u, '')): a tenant's readings in page order
 *                       for prefix queries, now unique per tenant, so without 002's id tie-breaker
 *   The id column stays (cursors issued before this migration carry it), but nothing orders or
 *   pages by it any more.
 *
 * rollups
 *   fillfactor 50       the time-series store now folds each batch's new readings into the
 *                       rollups in its own transaction, so a rollup row is updated once per batch
 *                       touching its bucket. Room left on each page lets those updates stay on the
 *                       page (HOT: no indexed column changes) without new index entries; on the
 *                       storage bench this about doubled the rate of the rollup upserts. It
 *                       applies to pages written from now on.
 */
export const sql = /* sql */ `
DELETE FROM readings WHERE ctid = ANY (ARRAY(
  SELECT ctid FROM (
    SELECT ctid, row_number() OVER (PARTITION BY tenant_id, name, t, coalesce(u, '') ORDER BY id) AS copy_no FROM readings
  ) numbered WHERE copy_no > 1));
CREATE UNIQUE INDEX readings_key ON readings (tenant_id, name, t, (coalesce(u, '')));
DROP INDEX readings_name_t;
DROP INDEX readings_tenant_t;
CREATE INDEX readings_tenant_t ON readings (tenant_id, t, name, (coalesce(u, '')));
ALTER TABLE rollups SET (fillfactor = 50);
`;
