/**
 * The business store's one error type, and the mapping of PostgreSQL's integrity and data errors
 * (unique, foreign key, check, not null, bad values) to it.
 */
import type { SqlClient } from '../db/sql';

export type BusinessErrorCode = 'invalid' | 'not-found' | 'conflict';

/** The store's one error type; `field` names the offending field when there is one. */
export class BusinessError extends Error {
  override readonly name = 'BusinessError';

  constructor(
    readonly code: BusinessErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface PgError {
  code?: unknown;
  detail?: unknown;
  constraint?: unknown;
  column?: unknown;
  message?: unknown;
}

/** Columns named in a unique or foreign-key violation's detail: Key (a, "b")=(...) ... */
function detailColumns(detail: unknown): string[] {
  const m = typeof detail === 'string' ? /^Key \(([^)]*)\)=/.exec(detail) : null;
  return m ? m[1].split(',').map((s) => s.trim().replace(/^"|"$/g, '')) : [];
}

const CHECK_MESSAGES: Record<string, [string, string]> = {
  device_keys_check: ['valid_until', 'valid_until must be later than valid_from'],
  sensors_check: ['ended_at', 'ended_at must not be earlier than started_at'],
  tenants_id_check: ['id', 'a tenant id has 1 to 64 characters'],
  webhook_subscriptions_url_check: ['url', 'url must start with http:// or https://'],
  webhook_subscriptions_secret_check: ['secret', 'secret must be whsec_ followed by base64'],
  ftp_targets_protocol_check: ['protocol', "protocol must be 'ftp', 'ftps' or 'ftpes'"],
};

/** Maps PostgreSQL's integrity and data errors to BusinessError; anything else is rethrown. */
function mapDbError(err: unknown, spec: { name: string; table: string }, tenant: string): never {
  if (err instanceof BusinessError) throw err;
  const e = (err ?? {}) as PgError;
  const code = typeof e.code === 'string' ? e.code : '';
  const constraint = typeof e.constraint === 'string' ? e.constraint : '';
  const cols = detailColumns(e.detail).filter((c) => c !== 'tenant_id');
  const opts = { cause: err };
  switch (code) {
    case '23505': {
      if (constraint === 'sensors_one_open') {
        throw new BusinessError('conflict', `${spec.name}: this channel already has an open sensor at this position`, 'position', opts);
      }
      if (constraint === 'device_keys_device_id_slot_key') {
        throw new BusinessError('conflict', `${spec.name}: this slot of the device already holds a key`, 'slot', opts);
      }
      const what = cols.length ? cols.join(', ') : constraint;
      throw new BusinessError('conflict', `${spec.name}: a row with this ${what} already exists`, cols[cols.length - 1], opts);
    }
    case '23503': {
      if (cols.length === 0) throw new BusinessError('not-found', `tenant ${JSON.stringify(tenant)} does not exist`, 'tenant', opts);
      const field = cols[cols.length - 1];
      const table = typeof e.detail === 'string' ? /table "([^"]+)"/.exec(e.detail)?.[1] : undefined;
      throw new BusinessError('invalid', `${spec.name}: field "${field}" names no ${table ?? 'row'} of this tenant`, field, opts);
    }
    case '23514': {
      const known = CHECK_MESSAGES[constraint];
      const prefix = `${spec.table}_`;
      const field =
        known?.[0] ?? (constraint.startsWith(prefix) && constraint.endsWith('_check') ? constraint.slice(prefix.length, -'_check'.length) : undefined);
      const message = known?.[1] ?? (field ? `field "${field}" is out of range` : `violates ${constraint}`);
      throw new BusinessError('invalid', `${spec.name}: ${message}`, field, opts);
    }
    case '23502': {
      const field = typeof e.column === 'string' ? e.column : undefined;
      throw new BusinessError('invalid', `${spec.name}: field "${field}" cannot be null`, field, opts);
    }
  }
  if (code.startsWith('22')) {
    throw new BusinessError('invalid', `${spec.name}: ${typeof e.message === 'string' ? e.message : 'invalid value'}`, undefined, opts);
  }
  throw err;
}

export async function run<T = Record<string, unknown>>(
  db: SqlClient,
  spec: { name: string; table: string },
  tenant: string,
  text: string,
  params: readonly unknown[],
): Promise<T[]> {
  try {
    return (await db.query<T>(text, params)).rows;
  } catch (err) {
    mapDbError(err, spec, tenant);
  }
}

export function notFound(spec: { name: string; key: string }, key: unknown): BusinessError {
  return new BusinessError('not-found', `${spec.name}: no row with ${spec.key} ${JSON.stringify(String(key))} in this tenant`, spec.key);
}
