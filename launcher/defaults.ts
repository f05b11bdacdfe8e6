/**
 * The embedded defaults the standalone platform falls back to when no real server is configured
 * (DESIGN.md, "Embedded defaults and real servers"). One row per role: later issues add rows here
 * and the start-up log, the docs and the tests pick them up. Framework-free.
 */
export interface EmbeddedDefault {
  /** What the row is about, as the log names it. */
  readonly role: string;
  /** The CONFLUX_* variable that switches the role to a real server. */
  readonly env: string;
  /** What runs inside the process when the variable is not set. */
  readonly embedded: string;
  /** What the variable points at. */
  readonly real: string;
}

export const EMBEDDED_DEFAULTS: readonly EmbeddedDefault[] = [
  { role: 'storage', env: 'CONFLUX_POSTGRES_URL', embedded: 'embedded (PGlite)', real: 'PostgreSQL' },
  { role: 'cache', env: 'CONFLUX_REDIS_URL', embedded: 'in-process', real: 'Redis' },
  { role: 'time series', env: 'CONFLUX_ELASTICSEARCH_NODES', embedded: 'in the storage database', real: 'Elasticsearch' },
  { role: 'MQTT', env: 'CONFLUX_MQTT_URL', embedded: 'embedded broker', real: 'external broker' },
];

export type Env = Readonly<Record<string, string | undefined>>;

/** True when the role's variable holds a value (blank counts as unset). */
export function isConfigured(row: EmbeddedDefault, env: Env): boolean {
  return (env[row.env] ?? '').trim() !== '';
}

/**
 * One log line per role, e.g. "storage: embedded (PGlite) — set CONFLUX_POSTGRES_URL" or
 * "storage: PostgreSQL (CONFLUX_POSTGRES_URL)". The variable's value is never printed: a URL
 * can carry a password.
 */
export function describeDefaults(env: Env, rows: readonly EmbeddedDefault[] = EMBEDDED_DEFAULTS): string[] {
  return rows.map((row) => (isConfigured(row, env) ? `${row.role}: ${row.real} (${row.env})` : `${row.role}: ${row.embedded} — set ${row.env}`));
}
