/**
 * The device directory the listeners authenticate against: a device (by serial number, unique
 * across tenants) and the keys valid now. A device holds its own keys — up to two, in slots 1
 * and 2, with validity windows that may overlap, so a key rotates without a gap — stored only as
 * SCRAM-SHA-256 derived keys (migration 001's device_keys). Framework-free.
 */
import { verifyKeyAgainst, type ScramKeys } from '../auth/scram';
import type { SqlClient } from '../db/sql';

export interface DeviceIdentity {
  tenant: string;
  /** The serial number: how a device names itself on every transport. */
  serial: string;
  /** devices.id */
  id: number | bigint;
}

export interface DeviceKey extends ScramKeys {
  slot: number;
}

export interface DeviceCredentials {
  device: DeviceIdentity;
  /** Keys valid now: none (no key, or all outside their window), one, or two during a rotation. */
  keys: DeviceKey[];
}

export interface DeviceDirectory {
  /** undefined: no such device, or it (or its tenant) is disabled. */
  credentials(serial: string): Promise<DeviceCredentials | undefined>;
}

export function createDeviceDirectory(db: SqlClient): DeviceDirectory {
  return {
    async credentials(serial) {
      const { rows } = await db.query<{
        tenant_id: string;
        id: number | bigint;
        slot: number | null;
        salt: Buffer | null;
        iterations: number | null;
        stored_key: Buffer | null;
        server_key: Buffer | null;
      }>(
        `SELECT d.tenant_id, d.id, k.slot, k.salt, k.iterations, k.stored_key, k.server_key
         FROM devices d
         JOIN tenants t ON t.id = d.tenant_id AND t.disabled_at IS NULL
         LEFT JOIN device_keys k ON k.device_id = d.id AND k.valid_from <= now() AND (k.valid_until IS NULL OR k.valid_until > now())
         WHERE d.serial = $1 AND d.disabled_at IS NULL
         ORDER BY k.slot`,
        [serial],
      );
      if (rows.length === 0) return undefined;
      const device: DeviceIdentity = { tenant: rows[0].tenant_id, serial, id: rows[0].id };
      const keys: DeviceKey[] = [];
      for (const r of rows) {
        if (r.slot === null) continue;
        keys.push({ slot: r.slot, salt: r.salt!, iterations: r.iterations!, storedKey: r.stored_key!, serverKey: r.server_key! });
      }
      return { device, keys };
    },
  };
}

/** The device, when `key` is one of its valid keys (either slot); else undefined. Constant time per key. */
export async function authenticateDeviceKey(directory: DeviceDirectory, serial: string, key: string): Promise<DeviceIdentity | undefined> {
  const found = await directory.credentials(serial);
  if (!found) return undefined;
  // Both slots, always and off the event loop: no early exit to time.
  const matches = await Promise.all(found.keys.map((k) => verifyKeyAgainst(k, key)));
  return matches.includes(true) ? found.device : undefined;
}
