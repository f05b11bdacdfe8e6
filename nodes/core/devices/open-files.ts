/**
 * Whether the process may open enough files for its gateway's Max sessions. Each device session
 * is a socket, and past the open-files limit Node accepts a connection and closes it at once
 * with nothing in the log: the device sees its connection drop before the login, and the
 * operator sees nothing. So a gateway checks at start and warns (docs/operations.md, "Many
 * device sessions"). Linux only (/proc/self/limits); elsewhere the check is skipped. Framework-free.
 */
import * as fs from 'node:fs';

/** Files a platform holds besides its sessions: Node-RED's own, database pools, listeners. */
export const FILES_BESIDES_SESSIONS = 1024;

/**
 * The soft limit of open files in a /proc/<pid>/limits text (Node raises it to the hard limit
 * when it starts); Infinity when unlimited, undefined when the text has no such line.
 */
export function openFilesLimit(limits: string): number | undefined {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  if (!m) return undefined;
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/** This process's open-files limit; undefined where /proc is not there to tell. */
export function ownOpenFilesLimit(): number | undefined {
  try {
    return openFilesLimit(fs.readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}

/** The warning for a gateway whose Max sessions the limit cannot hold; undefined when it can. */
export function sessionFilesWarning(maxSessions: number, limit: number | undefined): string | undefined {
  const needed = maxSessions + FILES_BESIDES_SESSIONS;
  if (limit === undefined || limit >= needed) return undefined;
  return (
    `Max sessions is ${maxSessions}, but this process may open only ${limit} files: about ${Math.max(0, limit - FILES_BESIDES_SESSIONS)} devices ` +
    `can be connected at once, and the next ones are cut off without a word. Raise the hard limit of open files to at least ${needed} ` +
    `(LimitNOFILE, docker --ulimit nofile; docs/operations.md, "Many device sessions") or lower Max sessions`
  );
}
