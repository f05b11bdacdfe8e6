/**
 * How the backup and restore commands end: a work function's exit code, or, when it throws, the
 * reason on stderr and the code the error carries (2 for configuration, BackupError's own, else 1).
 */
import { BackupError } from '../launcher/backup';
import { ConfigError } from '../launcher/config';
import { OWNER_ONLY_UMASK } from '../nodes/core/db/owner-only';

export function runCli(name: string, work: () => Promise<number>): void {
  // Archives and restored databases hold every device's key: owner-only, like the data dir.
  process.umask(OWNER_ONLY_UMASK);
  work().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof ConfigError || err instanceof BackupError) {
        console.error(`conflux ${name}: ${err.message}`);
        process.exitCode = err instanceof BackupError ? err.exitCode : 2;
        return;
      }
      console.error(`conflux ${name}: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exitCode = 1;
    },
  );
}
