/**
 * The demo device and the demo API key of a fresh installation, so that `npm start` can be tried
 * at once with the reference client and with curl. Each is created only while the database holds
 * none of its kind, in tenant 'default'; the caller shows the key once (only its hash or SCRAM
 * derived keys are stored).
 */
import { randomBytes } from 'node:crypto';
import type { SqlClient } from '../db/sql';
import { deviceChanged, emitTo, type EventSink } from '../events/platform';
import { createBusinessStore } from '../stores/business';

export const DEMO_SERIAL = 'demo-0001';

export async function provisionDemoDevice(db: SqlClient, onEvent?: EventSink): Promise<{ serial: string; key: string } | undefined> {
  const created = await firstOnly(db, 'conflux-demo-device', async (tx) => {
    const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM devices');
    if (rows[0].n > 0) return undefined;
    const store = createBusinessStore(tx);
    const key = randomBytes(24).toString('base64url');
    const device = await store.create('default', 'devices', { serial: DEMO_SERIAL, name: 'demo device (created on first start)' });
    await store.create('default', 'device_keys', { device_id: device.id, key });
    return { device, key };
  });
  if (!created) return undefined;
  emitTo(onEvent, () => deviceChanged('created', 'default', created.device));
  return { serial: DEMO_SERIAL, key: created.key };
}

export const DEMO_API_KEY_NAME = 'demo key (created on first start)';

/** With no API key at all in the database, creates one for tenant 'default' (every scope) and returns it. */
export async function provisionDemoApiKey(db: SqlClient): Promise<string | undefined> {
  return firstOnly(db, 'conflux-demo-api-key', async (tx) => {
    const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys');
    if (rows[0].n > 0) return undefined;
    const row = await createBusinessStore(tx).create('default', 'api_keys', { name: DEMO_API_KEY_NAME, scopes: [] });
    return String(row.key);
  });
}

/**
 * Runs fn under a transaction-scoped advisory lock named `what`: instances starting together on
 * one database would otherwise each see an empty table and each create a demo.
 */
function firstOnly<T>(db: SqlClient, what: string, fn: (tx: SqlClient) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [what]);
    return fn(tx);
  });
}
