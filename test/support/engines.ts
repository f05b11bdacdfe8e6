/** The two engines every storage test runs against: a fresh database on the real server, PGlite in memory. */
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { freshDatabase } from '../support/servers';

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

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
