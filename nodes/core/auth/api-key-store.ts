/**
 * API keys against the database: who presents a key (its tenant, row, user and scopes), and
 * whether that key may perform an action (./scopes.ts). The key format and hashing are
 * ./api-key.ts; keys are created through the business store (entity api_keys).
 */
import type { SqlClient } from '../db/sql';
import { apiKeyPrefix, verifyApiKey } from './api-key';
import { scopeRefusal, type ApiKeyAction } from './scopes';

export interface ApiKeyIdentity {
  tenant: string;
  /** api_keys.id */
  id: number | bigint;
  user_id: number | bigint | null;
  scopes: string[];
}

/**
 * Who presents this API key: its tenant, row, user and scopes; undefined when the key is
 * malformed, unknown, revoked, expired, or its tenant disabled. The key names its tenant, so
 * this lookup is by the key's unique prefix; the hash is compared in constant time.
 * last_used_at is refreshed at most once a minute.
 */
export async function authenticateApiKey(db: SqlClient, key: string): Promise<ApiKeyIdentity | undefined> {
  const prefix = apiKeyPrefix(key);
  if (!prefix) return undefined;
  const { rows } = await db.query<{ tenant_id: string; id: number | bigint; hash: Buffer; user_id: number | bigint | null; scopes: string[] }>(
    `SELECT k.tenant_id, k.id, k.hash, k.user_id, k.scopes
     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.prefix = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AND t.disabled_at IS NULL`,
    [prefix],
  );
  const row = rows[0];
  if (!row || !verifyApiKey(key, row.hash)) return undefined;
  await db.query(
    `UPDATE api_keys SET last_used_at = now()
     WHERE tenant_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
    [row.tenant_id, row.id],
  );
  return { tenant: row.tenant_id, id: row.id, user_id: row.user_id, scopes: row.scopes };
}

/** An endpoint's verdict on a key: the identity, or why not (401 unknown, 403 forbidden). */
export type ApiKeyVerdict =
  | { ok: true; identity: ApiKeyIdentity }
  | { ok: false; refusal: 'unknown'; detail: string }
  | { ok: false; refusal: 'forbidden'; detail: string; identity: ApiKeyIdentity };

/** Authenticates key and checks that it may perform action. Database errors are thrown. */
export async function authorizeApiKey(db: SqlClient, key: string, action: ApiKeyAction): Promise<ApiKeyVerdict> {
  const identity = await authenticateApiKey(db, key);
  if (!identity) return { ok: false, refusal: 'unknown', detail: 'the API key is unknown, revoked or expired' };
  const refused = scopeRefusal(identity.scopes, action);
  return refused ? { ok: false, refusal: 'forbidden', detail: refused, identity } : { ok: true, identity };
}
