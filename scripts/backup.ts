/**
 * npm run backup [-- --out <file>]
 *
 * Writes a gzip tarball of the standalone platform's embedded database (<CONFLUX_DATA_DIR>/pglite)
 * to <file>, by default backups/conflux-<UTC timestamp>.tar.gz under the working directory, and
 * prints its path and size. Stop the platform first: a backup refuses while it runs.
 * Exit codes: 0 done, 1 failed, 2 usage or configuration, 3 no database, 4 platform running,
 * 7 the output file exists.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { backupEmbedded, defaultBackupFile, embeddedDir } from '../launcher/backup';
import { readConfig } from '../launcher/config';
import { runCli } from './cli';

const USAGE = 'usage: npm run backup [-- --out <file>]';

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

async function main(argv: string[]): Promise<number> {
  let out: string | undefined;
  try {
    const { values } = parseArgs({ args: argv, options: { out: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } } });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    out = values.out;
  } catch (err) {
    console.error(`conflux backup: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (out !== undefined && out.trim() === '') {
    console.error(`conflux backup: --out needs a file name\n${USAGE}`);
    return 2;
  }
  const config = readConfig(process.env, process.cwd());
  const file = path.resolve(process.cwd(), out ?? defaultBackupFile());
  const info = await backupEmbedded(embeddedDir(config.dataDir), file, { dataDir: config.dataDir });
  console.log(`conflux backup: wrote ${info.file} (${size(info.bytes)}, ${info.bytes} bytes; schema version ${info.schemaVersion})`);
  return 0;
}

runCli('backup', () => main(process.argv.slice(2)));
