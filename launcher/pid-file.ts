/**
 * "Is the platform running?" for the launcher and the backup/restore commands. PGlite itself gives
 * no usable answer: its postmaster.pid holds a fixed fake pid (-42), stays behind after a crash,
 * and a second process may open the same folder beside the first (PGlite takes no lock), which
 * would corrupt it. So the platform records its pid in `<dataDir>/conflux.pid`
 * (claimPlatformPidFile), and backup and restore refuse while that pid is alive; on Linux they also
 * look for any process holding a file open under the database folder (processesUsing).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The file in which the running platform records its pid. */
export function platformPidFile(dataDir: string): string {
  return path.join(dataDir, 'conflux.pid');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/** The pid recorded in `<dataDir>/conflux.pid` when that process is alive; undefined otherwise (no file, or stale). */
export function runningPlatformPid(dataDir: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(platformPidFile(dataDir), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim().split(/\s+/)[0]);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  return alive(pid) ? pid : undefined;
}

/** True while the platform that recorded `<dataDir>/conflux.pid` is alive. */
export function isPlatformRunning(dataDir: string): boolean {
  return runningPlatformPid(dataDir) !== undefined;
}

/**
 * For the platform, at start: records this process's pid in `<dataDir>/conflux.pid` (replacing a
 * stale one). Returns a function that removes the file if it still names this process; call it on
 * exit. A pid file left by a crash is harmless: it is ignored once its pid has died.
 */
export function claimPlatformPidFile(dataDir: string): () => void {
  const file = platformPidFile(dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(file, `${process.pid}\n`);
  return () => {
    try {
      if (Number(fs.readFileSync(file, 'utf8').trim()) === process.pid) fs.unlinkSync(file);
    } catch {
      // already gone
    }
  };
}

/**
 * Linux only (elsewhere: empty): pids of the processes this user can inspect that hold a file open
 * under dir. PGlite keeps its WAL and relation files open while a database is open.
 */
export function processesUsing(dir: string): number[] {
  if (process.platform !== 'linux') return [];
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return [];
  }
  const prefix = real.endsWith(path.sep) ? real : real + path.sep;
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // another user's process, or gone
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = fs.readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target === real || target.startsWith(prefix)) {
        pids.push(Number(entry));
        break;
      }
    }
  }
  return pids;
}
