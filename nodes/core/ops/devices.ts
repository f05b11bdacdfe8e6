/**
 * The operator dashboard's device table: every device of the tenant from the registry (devices),
 * online when the gateway's session registry holds a session for it, with the time it was last
 * seen. Last seen is the latest of the session's start, the newest reading time in the daily
 * rollups (one row per name and day, so this stays cheap however many readings there are) and
 * devices.last_seen_at. Framework-free.
 */
import type { SqlClient } from '../db/sql';

/** What the dashboard needs of a SessionRegistry (nodes/core/devices/sessions.ts). */
export interface SessionLookup {
  get(tenant: string, serial: string): { transport: string } | undefined;
  connectedAt(tenant: string, serial: string): number | undefined;
}

export interface DeviceRow {
  serial: string;
  name: string;
  state: 'online' | 'offline' | 'disabled';
  /** The transport of the live session, '' when offline. */
  transport: string;
  /** ISO 8601, '' when never seen. */
  lastSeen: string;
  /** ms since the epoch (for sorting), 0 when never seen. */
  lastSeenMs: number;
}

export const MAX_DEVICES = 1000;

/**
 * When device row `d` was last seen, in SQL: the later of d.last_seen_at and the newest reading
 * time in the daily rollups of its names `<serial>/…` (one row per name and day, so this stays
 * cheap however many readings there are). Shared by this table and the REST API's lastSeenAt.
 * '/' (0x2F) then '0' (0x30): the names `<serial>/…` in byte order, so the rollups index serves it.
 */
export const LAST_SEEN_SQL = `greatest(d.last_seen_at, (
    SELECT max(last_t) FROM rollups
    WHERE tenant_id = d.tenant_id AND size = 'day'
      AND name >= (d.serial || '/') COLLATE "C" AND name < (d.serial || '0') COLLATE "C"
  ))`;

const DEVICES_SQL = `SELECT d.serial, coalesce(d.name, '') AS name, d.disabled_at IS NOT NULL AS disabled,
    extract(epoch FROM ${LAST_SEEN_SQL})::float8 * 1000 AS last_ms
  FROM devices d
  WHERE d.tenant_id = $1
  ORDER BY d.serial
  LIMIT $2`;

/** The tenant's devices in serial order (at most MAX_DEVICES), online ones marked. */
export async function listDevices(db: SqlClient, tenant: string, sessions?: SessionLookup): Promise<DeviceRow[]> {
  const { rows } = await db.query<{ serial: string; name: string; disabled: boolean; last_ms: number | null }>(DEVICES_SQL, [tenant, MAX_DEVICES]);
  return rows.map((r) => {
    const session = sessions?.get(tenant, r.serial);
    const since = sessions?.connectedAt(tenant, r.serial);
    const lastSeenMs = Math.max(r.last_ms ?? 0, since ?? 0);
    return {
      serial: r.serial,
      name: r.name,
      state: r.disabled ? 'disabled' : session ? 'online' : 'offline',
      transport: session?.transport ?? '',
      lastSeen: lastSeenMs > 0 ? new Date(lastSeenMs).toISOString() : '',
      lastSeenMs,
    };
  });
}

/** How many of the rows are online and offline (disabled devices count as neither). */
export function deviceCounts(rows: readonly DeviceRow[]): { online: number; offline: number } {
  let online = 0;
  let offline = 0;
  for (const r of rows) {
    if (r.state === 'online') online++;
    else if (r.state === 'offline') offline++;
  }
  return { online, offline };
}
