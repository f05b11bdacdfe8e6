/**
 * The storage the endpoint targets answer from, opened once for the whole fuzz run: PGlite in
 * memory by default, the test PostgreSQL with CONFLUX_FUZZ_ENGINE=postgresql (test/support/engines.ts).
 * Migrated, with the tenants, devices and keys the generated requests use:
 *
 *   tenant fuzz     device SN-1 (key DEVICE_KEY), device SN-2 (no key), API keys: every scope, read only
 *   tenant other    device GX-1 (another tenant's device), an API key
 *   tenant api      device AP-1, API keys: every scope, read only — the REST API target's own, since
 *                   its generated requests create, change and delete (keys too)
 */
import { migrate } from '../../nodes/core/db/migrate';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import { ENGINES } from '../support/engines';
import { onFinish } from './fuzz';

export const DEVICE_KEY = 'fuzz device key: ñ 🙂';
export const TENANT = 'fuzz';

export interface FuzzStore {
  db: SqlClient;
  /** An API key of tenant fuzz with every scope. */
  apiKey: string;
  /** An API key of tenant fuzz that may only read. */
  readKey: string;
  /** An API key of tenant other. */
  otherKey: string;
  /** Tenant api's keys: every scope, read only. */
  api: { key: string; readKey: string };
}

let opened: Promise<FuzzStore> | undefined;

export function fuzzStore(): Promise<FuzzStore> {
  opened ??= (async () => {
    const name = (process.env.CONFLUX_FUZZ_ENGINE ?? 'pglite').toLowerCase();
    const engine = ENGINES.find((e) => e.name.toLowerCase() === name);
    if (!engine) throw new Error(`CONFLUX_FUZZ_ENGINE must be ${ENGINES.map((e) => e.name.toLowerCase()).join(' or ')}, not ${name}`);
    const db = await engine.open();
    onFinish(() => db.close());
    await migrate(db);
    await createTenant(db, { id: TENANT, name: 'Fuzz' });
    await createTenant(db, { id: 'other', name: 'Other' });
    const store = createBusinessStore(db);
    const dev = await store.create(TENANT, 'devices', { serial: 'SN-1' });
    await store.create(TENANT, 'device_keys', { device_id: dev.id, key: DEVICE_KEY });
    await store.create(TENANT, 'devices', { serial: 'SN-2' });
    await store.create('other', 'devices', { serial: 'GX-1' });
    const apiKey = String((await store.create(TENANT, 'api_keys', { name: 'fuzz', scopes: [] })).key);
    const readKey = String((await store.create(TENANT, 'api_keys', { name: 'reader', scopes: ['read'] })).key);
    const otherKey = String((await store.create('other', 'api_keys', { name: 'other', scopes: [] })).key);
    await createTenant(db, { id: 'api', name: 'API' });
    await store.create('api', 'devices', { serial: 'AP-1' });
    const api = {
      key: String((await store.create('api', 'api_keys', { name: 'api', scopes: [] })).key),
      readKey: String((await store.create('api', 'api_keys', { name: 'api reader', scopes: ['read'] })).key),
    };
    return { db, apiKey, readKey, otherKey, api };
  })();
  return opened;
}
