/** The two engines every storage test runs against: a fresh database on the real server, PGlite in memory. */
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { freshDatabase } from './servers';

export interface Engine {
  name: 'PostgreSQL' | 'PGlite';
  /** A new, empty database. */
  open(): Promise<SqlClient>;
}

export const ENGINES: readonly Engine[] = [
  { name: 'PostgreSQL', open: async () => openSql({ connectionString: await freshDatabase(), poolSize: 5 }) },
  { name: 'PGlite', open: () => openSql({}) },
];

/** PGlite takes about 2 s to start (more on a busy machine). */
export const OPEN_TIMEOUT_MS = 30_000;

/**
 * The database a describe block of storage tests shares: opened and migrated before its tests
 * (within OPEN_TIMEOUT_MS), handed to opened() for the block's own setup, closed after them.
 */
export function withMigratedDatabase(engine: Engine, opened: (db: SqlClient) => void): void {
  let db: SqlClient | undefined;
  before(async function () {
    this.timeout(OPEN_TIMEOUT_MS);
    db = await engine.open();
    await migrate(db);
    opened(db);
  });
  after(async () => db?.close());
}
