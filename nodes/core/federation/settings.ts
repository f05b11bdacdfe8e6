/**
 * The proxy's settings (seed 003's Config): one config row per tenant under the key `federation`,
 * written through the REST API (PUT /federation/settings) or conflux-business (config). Where the
 * local system's API is, and which App row is the local system (its UserApp rows hold the users'
 * credentials there; its name is Sen1Message/applicationSrc).
 */
import type { SqlClient } from '../db/sql';

export const SETTINGS_KEY = 'federation';

export interface FederationSettings {
  /** The name of the App row that is the local system. */
  application: string;
  /** The local system's API, e.g. http://legacy.example:8080 */
  baseUrl: string;
  /** GET: the readings to extract (JSON array, or an object with them at itemsPath). */
  readingsPath: string;
  itemsPath: string;
  /** POST: where incoming data is written. */
  ingestPath: string;
  /** The query parameter carrying how far a consumer has taken the readings, and what it is. */
  watermarkParam: string;
  watermarkKind: 'id' | 'timestamp';
  /** The reading's field holding the watermark value. */
  watermarkPath: string;
  /** Readings asked for per request (sent as `limit`). */
  pageSize: number;
}

export const DEFAULT_SETTINGS: Omit<FederationSettings, 'application' | 'baseUrl'> = {
  readingsPath: '/api/readings',
  itemsPath: '',
  ingestPath: '/api/ingest',
  watermarkParam: 'after',
  watermarkKind: 'id',
  watermarkPath: 'id',
  pageSize: 500,
};

export const SETTINGS_FIELDS = ['application', 'baseUrl', ...Object.keys(DEFAULT_SETTINGS)] as const;

export class SettingsError extends Error {
  override readonly name = 'SettingsError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** Checked settings with defaults filled; SettingsError names the first bad field. */
export function parseSettings(value: unknown): FederationSettings {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new SettingsError('the federation settings must be an object');
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) if (!(SETTINGS_FIELDS as readonly string[]).includes(k)) throw new SettingsError(`unknown setting "${k}"`, k);
  const s = { ...DEFAULT_SETTINGS, ...v } as Record<string, unknown>;
  for (const f of ['application', 'baseUrl', 'readingsPath', 'ingestPath', 'watermarkPath']) {
    if (typeof s[f] !== 'string' || s[f] === '') throw new SettingsError(`${f} must be a non-empty string`, f);
  }
  for (const f of ['itemsPath', 'watermarkParam']) if (typeof s[f] !== 'string') throw new SettingsError(`${f} must be a string`, f);
  if (!/^https?:\/\/[^/]/i.test(s.baseUrl as string)) throw new SettingsError('baseUrl must be an http:// or https:// URL', 'baseUrl');
  for (const f of ['readingsPath', 'ingestPath']) if (!(s[f] as string).startsWith('/')) throw new SettingsError(`${f} must start with /`, f);
  if (s.watermarkKind !== 'id' && s.watermarkKind !== 'timestamp') throw new SettingsError("watermarkKind must be 'id' or 'timestamp'", 'watermarkKind');
  if (!Number.isInteger(s.pageSize) || (s.pageSize as number) < 1 || (s.pageSize as number) > 10_000)
    throw new SettingsError('pageSize must be an integer from 1 to 10000', 'pageSize');
  return s as unknown as FederationSettings;
}

/** The tenant's settings; SettingsError when there are none or they are not valid. */
export async function loadSettings(db: SqlClient, tenant: string): Promise<FederationSettings> {
  const { rows } = await db.query<{ value: unknown }>('SELECT value FROM config WHERE tenant_id = $1 AND key = $2', [tenant, SETTINGS_KEY]);
  if (rows.length === 0) throw new SettingsError(`tenant ${tenant} has no federation settings (config key "${SETTINGS_KEY}")`);
  return parseSettings(rows[0].value);
}

/** `baseUrl` + path, with the base's own path kept (http://host/legacy + /api/x). */
export function localUrl(settings: FederationSettings, path: string): URL {
  const base = new URL(settings.baseUrl);
  return new URL(base.pathname.replace(/\/$/, '') + path, base);
}
