/**
 * The watermarks of pulled sources in the business database (migration 009, pull_sources), one
 * row per tenant and source key. A commit is a compare-and-set on the row's version: a pull that
 * read an older watermark (another instance, a redeploy racing the old node) commits nothing.
 */
import type { SqlClient } from '../db/sql';
import { EMPTY_WATERMARK, type WatermarkState } from './watermark';

export interface StoredWatermark extends WatermarkState {
  /** 0: no row yet. */
  version: number;
}

export async function loadWatermark(db: SqlClient, tenant: string, key: string): Promise<StoredWatermark> {
  const { rows } = await db.query<{ watermark: string | number | null; boundary: unknown; version: number }>(
    'SELECT watermark, boundary, version FROM pull_sources WHERE tenant_id = $1 AND key = $2',
    [tenant, key],
  );
  if (rows.length === 0) return { ...EMPTY_WATERMARK, version: 0 };
  const r = rows[0];
  const value = typeof r.watermark === 'string' || typeof r.watermark === 'number' ? r.watermark : null;
  const boundary = Array.isArray(r.boundary) ? r.boundary.filter((x): x is string => typeof x === 'string') : [];
  return { value, boundary, version: Number(r.version) };
}

/** Stores `next` if the row is still at `from`'s version; false when it moved meanwhile. */
export async function commitWatermark(
  db: SqlClient,
  tenant: string,
  key: string,
  from: StoredWatermark,
  next: WatermarkState,
): Promise<StoredWatermark | undefined> {
  const params = [tenant, key, JSON.stringify(next.value), JSON.stringify(next.boundary)];
  const result =
    from.version === 0
      ? await db.query(
          `INSERT INTO pull_sources (tenant_id, key, watermark, boundary, version) VALUES ($1, $2, $3::jsonb, $4::jsonb, 1)
           ON CONFLICT (tenant_id, key) DO NOTHING`,
          params,
        )
      : await db.query(
          `UPDATE pull_sources SET watermark = $3::jsonb, boundary = $4::jsonb, version = version + 1, updated_at = now()
           WHERE tenant_id = $1 AND key = $2 AND version = $5`,
          [...params, from.version],
        );
  return result.rowCount === 1 ? { ...next, version: from.version + 1 } : undefined;
}
