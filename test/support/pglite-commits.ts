/**
 * A child process for the crash spec: opens PGlite at argv[2] through the platform's SqlClient
 * and commits transactions 1, 2, 3, … (10 rows each) until killed, printing `committed N` on
 * stdout once COMMIT of transaction N returned.
 */
import { openSql } from '../../nodes/core/db/sql';

async function main(dir: string): Promise<void> {
  const db = await openSql({ dataDir: dir });
  await db.exec('CREATE TABLE IF NOT EXISTS commits (tx integer NOT NULL, row integer NOT NULL, filler text NOT NULL)');
  const filler = 'x'.repeat(200);
  for (let tx = 1; ; tx++) {
    await db.transaction(async (t) => {
      for (let row = 0; row < 10; row++) await t.query('INSERT INTO commits (tx, row, filler) VALUES ($1, $2, $3)', [tx, row, filler]);
    });
    process.stdout.write(`committed ${tx}\n`);
  }
}

main(process.argv[2]).catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
