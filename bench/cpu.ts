/**
 * CPU time of processes from /proc (Linux), for benches that report CPU per item: user + system
 * time of a process and all its threads (libuv's pool, PostgreSQL's backends, ...), whoever
 * started it. Resolution is the kernel's clock tick (usually 10 ms): read over rounds of seconds.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

let ticksPerSecond: number | undefined;
function tick(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticksPerSecond;
}

interface Stat {
  ppid: number;
  /** user + system seconds of the process itself */
  own: number;
  /** user + system seconds of its children that ended and were waited for */
  children: number;
}

function stat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const t = tick();
  return { ppid: Number(f[1]), own: (Number(f[11]) + Number(f[12])) / t, children: (Number(f[13]) + Number(f[14])) / t };
}

/** CPU seconds (user + system) a process has used so far, its ended children included; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  const s = stat(pid);
  return s ? s.own + s.children : 0;
}

/**
 * CPU seconds of a process and its live children, plus its ended children: for PostgreSQL's
 * postmaster, the whole server (every backend, the WAL writer, the checkpointer, ...).
 */
export function treeCpuSeconds(pid: number): number {
  const root = stat(pid);
  if (!root) return 0;
  let sum = root.own + root.children;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(Number(entry));
    if (s && s.ppid === pid) sum += s.own;
  }
  return sum;
}

/** The whole machine's busy and total CPU seconds so far (all cores, from /proc/stat). */
export function machineCpuSeconds(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0) / tick();
  const idle = (v[3] + v[4]) / tick();
  return { busy: total - idle, total };
}

/** The parent of a process (e.g. the postmaster of a PostgreSQL backend). */
export function parentPid(pid: number): number {
  const s = stat(pid);
  if (!s) throw new Error(`no process ${pid}`);
  return s.ppid;
}
