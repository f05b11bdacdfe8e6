/**
 * The standalone platform as `npm start` runs it, for tests: `node dist/settings.js` in a child
 * process with a throwaway CONFLUX_DATA_DIR and a free port on 127.0.0.1.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './ports';
import { until } from './wait';

export const root = path.resolve(__dirname, '..', '..', '..');
const settingsJs = path.join(root, 'dist', 'settings.js');
export const START_TIMEOUT_MS = 60_000;

export interface Platform {
  child: ChildProcess;
  port: number;
  base: string;
  output: () => string;
  exited: Promise<number | null>;
}

export { freePort };

/** The environment without any CONFLUX_* the caller's shell may carry, plus ours. */
function envWith(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CONFLUX_')) env[k] = v;
  return { ...env, ...vars };
}

export interface StartOptions {
  /** The soft limit of open files raised to this (`ulimit -Sn`); the start fails when the hard limit is lower. */
  openFiles?: number;
  /** The hard limit of open files, and so the soft one, set to this (`ulimit -n`): a host that allows few. */
  openFilesHard?: number;
}

/**
 * Starts on vars.CONFLUX_PORT when given (a restart on the same address), else on a free port.
 * With a limit of open files, through `bash -c 'ulimit … && exec node …'`.
 */
export async function start(vars: Record<string, string>, options: StartOptions = {}): Promise<Platform> {
  const port = vars.CONFLUX_PORT ? Number(vars.CONFLUX_PORT) : await freePort();
  const ulimit = options.openFilesHard
    ? `ulimit -n ${Math.trunc(options.openFilesHard)}`
    : options.openFiles
      ? `ulimit -Sn ${Math.trunc(options.openFiles)}`
      : '';
  const [command, args]: [string, string[]] = ulimit
    ? ['bash', ['-c', `${ulimit} && exec "$@"`, 'bash', process.execPath, settingsJs]]
    : [process.execPath, [settingsJs]];
  const child = spawn(command, args, {
    cwd: root,
    env: envWith({ CONFLUX_HOST: '127.0.0.1', CONFLUX_PORT: String(port), ...vars }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const platform: Platform = { child, port, base: `http://127.0.0.1:${port}`, output: () => log, exited };

  // settings.js listens, then starts Node-RED, then logs its banner (the MQTT line among it).
  try {
    await waitForOutput(platform, /MQTT:/, START_TIMEOUT_MS);
    const res = await fetch(`${platform.base}/`, { signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    const editor = vars.CONFLUX_EDITOR !== 'off'; // without the editor nothing is served at /
    if (res.status !== (editor ? 200 : 404)) throw new Error(`GET / answered ${res.status} after the banner`);
    return platform;
  } catch (err) {
    await stop(platform);
    throw new Error(`dist/settings.js did not start: ${(err as Error).message.split('\n')[0]}\n${log}`, { cause: err });
  }
}

/**
 * Resolves with the first match of pattern in the platform's output, as soon as the line that
 * holds it is written; fails when the platform exits first or after timeoutMs (one generous
 * deadline: a loaded machine may take most of a minute to start the flows).
 */
export function waitForOutput(platform: Platform, pattern: RegExp, timeoutMs = START_TIMEOUT_MS): Promise<RegExpMatchArray> {
  const { child } = platform;
  return new Promise((resolve, reject) => {
    // start() appends to the log in its own 'data' listeners, added before these: output() is current here.
    const check = (): boolean => {
      const m = pattern.exec(platform.output());
      if (m) finish(() => resolve(m));
      return m !== null;
    };
    const exited = (): void => finish(() => reject(new Error(`the platform exited before ${pattern} appeared in its log:\n${platform.output()}`)));
    const timer = setTimeout(
      () => finish(() => reject(new Error(`${pattern} did not appear in the log within ${timeoutMs / 1000} s:\n${platform.output()}`))),
      timeoutMs,
    );
    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.stderr!.off('data', check);
      child.off('exit', exited);
      settle();
    };
    if (check()) return;
    if (child.exitCode !== null || child.signalCode !== null) return exited();
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', exited);
  });
}

/** SIGTERM, then SIGKILL after 20 s; resolves with the exit code (null when killed). */
export async function stop(platform: Platform | undefined): Promise<number | null> {
  if (!platform) return null;
  const { child } = platform;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  try {
    return await platform.exited;
  } finally {
    clearTimeout(timer);
  }
}

export async function getJson(platform: Platform, url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${platform.base}${url}`, { headers: { Accept: 'application/json', ...headers }, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text for the assertion message
  }
  return { status: res.status, body };
}

export function tempDataDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-start-'));
}

// ws comes with node-red (the editor's own websocket library); Node 20 has no WebSocket client.
const WebSocket = require(require.resolve('ws', { paths: [path.dirname(require.resolve('node-red/package.json'))] }));

export interface DebugEvent {
  id: string;
  name?: string;
  format: string;
  msg: string;
}

/** The debug sidebar as the editor receives it: every debug event over the /comms websocket. */
export async function debugSidebar(platform: Platform): Promise<{ events: DebugEvent[]; next: () => Promise<DebugEvent>; close: () => void }> {
  const ws = new WebSocket(`ws://127.0.0.1:${platform.port}/comms`);
  const events: DebugEvent[] = [];
  const waiting: Array<(e: DebugEvent) => void> = [];
  ws.on('message', (data: Buffer) => {
    for (const event of [].concat(JSON.parse(data.toString()))) {
      const { topic, data: body } = event as { topic: string; data: DebugEvent };
      if (topic !== 'debug') continue;
      events.push(body);
      waiting.shift()?.(body);
    }
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  ws.send(JSON.stringify({ subscribe: 'debug' }));
  let read = 0;
  return {
    events,
    next: () =>
      read < events.length
        ? Promise.resolve(events[read++])
        : new Promise((resolve) =>
            waiting.push((e) => {
              read++;
              resolve(e);
            }),
          ),
    close: () => ws.close(),
  };
}

/** Presses an inject button; until a deploy has started the flow, the endpoint answers 404. */
export async function press(platform: Platform, injectId: string): Promise<void> {
  let last = 0;
  await until(
    () => `the inject button ${injectId} to answer 200 (last: ${last})`,
    async () => (last = (await fetch(`${platform.base}/inject/${injectId}`, { method: 'POST', signal: AbortSignal.timeout(10_000) })).status) === 200,
    START_TIMEOUT_MS,
  );
}

/**
 * Mocha hooks for the enclosing describe: the platform on a fresh data directory, started before
 * its tests (with `vars`, read then) and stopped and removed after them.
 */
export function usePlatform(vars: () => Record<string, string> = () => ({})): { readonly platform: Platform; readonly dataDir: string } {
  const dataDir = tempDataDir();
  let platform: Platform | undefined;
  before(async () => {
    platform = await start({ CONFLUX_DATA_DIR: dataDir, ...vars() });
  });
  after(async () => {
    await stop(platform);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return {
    get platform(): Platform {
      if (!platform) throw new Error('the platform has not started');
      return platform;
    },
    dataDir,
  };
}
