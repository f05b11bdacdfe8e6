/**
 * npm run restore -- <file> [--force]
 *
 * Replaces the standalone platform's embedded database (<CONFLUX_DATA_DIR>/pglite) with a backup
 * made by `npm run backup`. Stop the platform first: a restore refuses while it runs. Without
 * --force it refuses to replace an existing database; with --force the old one is kept beside it
 * as pglite.before-restore-<UTC timestamp>. The archive is unpacked and opened in a temporary
 * folder first: a corrupt archive leaves the existing database untouched.
 * Exit codes: 0 done, 1 failed, 2 usage or configuration, 4 platform running, 5 file missing,
 * 6 corrupt archive, 7 a database exists (use --force).
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { embeddedDir, restoreEmbedded } from '../launcher/backup';
import { readConfig } from '../launcher/config';
import { runCli } from './cli';

const USAGE = 'usage: npm run restore -- <file> [--force]';

async function main(argv: string[]): Promise<number> {
  let file: string;
  let force: boolean;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { force: { type: 'boolean', short: 'f' }, help: { type: 'boolean', short: 'h' } },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length !== 1 || positionals[0].trim() === '') throw new Error('name one backup file');
    file = positionals[0];
    force = values.force === true;
  } catch (err) {
    console.error(`conflux restore: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const config = readConfig(process.env, process.cwd());
  const info = await restoreEmbedded(path.resolve(process.cwd(), file), embeddedDir(config.dataDir), { force, dataDir: config.dataDir });
  console.log(`conflux restore: restored ${path.resolve(process.cwd(), file)} into ${info.pgliteDir} (schema version ${info.schemaVersion})`);
  if (info.movedAside) console.log(`conflux restore: the previous database is kept in ${info.movedAside}; delete it once you no longer need it`);
  return 0;
}

runCli('restore', () => main(process.argv.slice(2)));
