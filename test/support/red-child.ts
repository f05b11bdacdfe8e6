/**
 * A Node-RED runtime (test/support/red-runtime.ts) in a child process, started on a flow file,
 * for tests that run several instances of one flow and kill some: `started` resolves once every
 * node of the flow exists, `exited` when the process is gone (SIGKILL included).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';

export interface RedChild {
  child: ChildProcess;
  started: Promise<void>;
  /** The exit code, or null when a signal ended it. */
  exited: Promise<number | null>;
  output: () => string;
  /** SIGKILL unless already gone; resolves when it is. */
  kill: () => Promise<void>;
}

export function startRedChild(flowFile: string, env: Record<string, string> = {}): RedChild {
  const child = spawn(process.execPath, [path.join(__dirname, 'red-runtime.js'), flowFile], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      log += `${line}\n`;
      if (line === 'flows started') resolve();
    });
    child.once('exit', (code, signal) => reject(new Error(`the Node-RED child exited (${signal ?? code}) before its flows started:\n${log}`)));
  });
  started.catch(() => undefined); // a caller that never awaits it must not see an unhandled rejection
  return {
    child,
    started,
    exited,
    output: () => log,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
