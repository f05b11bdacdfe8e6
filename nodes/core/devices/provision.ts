/**
 * The demo device of a fresh installation: with no device at all in the database, creates one
 * (tenant 'default') with a random key, and returns the key — the caller shows it once; only
 * its SCRAM derived keys are stored. Lets `npm start` be tried with the reference client at once.
 */
import { randomBytes } from 'node:crypto';
import type { SqlClient } from '../db/sql';
import { deviceChanged, emitTo, type EventSink } from '../events/platform';
import { createBusinessStore } from '../stores/business';

export const DEMO_SERIAL = 'demo-0001';

export async function provisionDemoDevice(db: SqlClient, onEvent?: EventSink): Promise<{ serial: string; key: string } | undefined> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM devices');
  if (rows[0].n > 0) return undefined;
  const store = createBusinessStore(db);
  const key = randomBytes(24).toString('base64url');
  const device = await store.create('default', 'devices', { serial: DEMO_SERIAL, name: 'demo device (created on first start)' });
  await store.create('default', 'device_keys', { device_id: device.id, key });
  emitTo(onEvent, () => deviceChanged('created', 'default', device));
  return { serial: DEMO_SERIAL, key };
}
