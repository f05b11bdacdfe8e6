/**
 * Versioned schema migrations, run at start on PostgreSQL and PGlite alike. Each migration runs
 * in its own transaction under a transaction-scoped advisory lock, and is recorded in
 * schema_migrations with a checksum of its SQL. Several instances starting at once on one
 * PostgreSQL queue on the lock; each re-reads what is applied once it holds it, so every
 * migration runs exactly once.
 */
import { createHash } from 'node:crypto';
import type { SqlClient } from './sql';
import { MIGRATIONS } from './migrations';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export interface MigrateResult {
  /** Versions this call applied, in order; empty when the schema was already current. */
  applied: number[];
  /** The highest version now applied. */
  version: number;
}

export class MigrationError extends Error {
  override readonly name = 'MigrationError';
}

/** Any fixed int8 will do; every Conflux instance must use the same one. */
export const MIGRATION_LOCK_KEY = 0x436f6e666c7578; // 'Conflux'

export function checksum(sql: string): string {
  return createHash('sha256').update(sql).digest('hex');
}

function validate(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (!Number.isInteger(m.version) || m.version < 1) throw new MigrationError(`migration ${m.name}: bad version ${m.version}`);
    if (i > 0 && m.version <= migrations[i - 1].version) throw new MigrationError(`migrations out of order at version ${m.version}`);
  });
}

/** Applies every pending migration; returns what it applied. Safe to call from many instances. */
export async function migrate(db: SqlClient, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrateResult> {
  validate(migrations);
  const applied: number[] = [];
  for (;;) {
    const step = await db.transaction(async (tx) => {
      // The lock also covers creating schema_migrations: concurrent CREATE TABLE IF NOT EXISTS can collide.
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        checksum   text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await tx.query<{ version: number; checksum: string }>('SELECT version, checksum FROM schema_migrations');
      const done = new Map(rows.map((r) => [r.version, r.checksum]));
      for (const m of migrations) {
        const sum = done.get(m.version);
        if (sum !== undefined && sum !== checksum(m.sql)) {
          throw new MigrationError(`migration ${m.version} (${m.name}) changed after it was applied; add a new migration instead`);
        }
      }
      const next = migrations.find((m) => !done.has(m.version));
      const current = Math.max(0, ...done.keys());
      if (!next) return { version: current };
      if (next.version < current) {
        throw new MigrationError(`migration ${next.version} (${next.name}) is older than the applied version ${current}`);
      }
      await tx.exec(next.sql);
      await tx.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [next.version, next.name, checksum(next.sql)]);
      return { version: next.version, applied: next.version };
    });
    if (step.applied === undefined) return { applied, version: step.version };
    applied.push(step.applied);
  }
}
