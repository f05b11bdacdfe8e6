/**
 * The standalone platform as `npm start` runs it, for tests: `node dist/settings.js` in a child
 * process with a throwaway CONFLUX_DATA_DIR and a free port on 127.0.0.1.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

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

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** The environment without any CONFLUX_* the caller's shell may carry, plus ours. */
function envWith(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CONFLUX_')) env[k] = v;
  return { ...env, ...vars };
}

/** Starts on vars.CONFLUX_PORT when given (a restart on the same address), else on a free port. */
export async function start(vars: Record<string, string>): Promise<Platform> {
  const port = vars.CONFLUX_PORT ? Number(vars.CONFLUX_PORT) : await freePort();
  const child = spawn(process.execPath, [settingsJs], {
    cwd: root,
    env: envWith({ CONFLUX_HOST: '127.0.0.1', CONFLUX_PORT: String(port), ...vars }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const platform: Platform = { child, port, base: `http://127.0.0.1:${port}`, output: () => log, exited };

  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`dist/settings.js exited with ${child.exitCode} before answering:\n${log}`);
    try {
      const res = await fetch(`${platform.base}/`, { signal: AbortSignal.timeout(2000) });
      last = `HTTP ${res.status}`;
      await res.arrayBuffer();
      // The banner is logged once RED.start() resolved; wait for it too.
      if (res.status === 200 && log.includes('MQTT:')) return platform;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop(platform);
  throw new Error(`GET / did not answer 200 within ${START_TIMEOUT_MS / 1000} s (last: ${last}):\n${log}`);
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
    next: () => (read < events.length ? Promise.resolve(events[read++]) : new Promise((resolve) => waiting.push((e) => { read++; resolve(e); }))),
    close: () => ws.close(),
  };
}

/** Presses an inject button; until a deploy has started the flow, the endpoint answers 404. */
export async function press(platform: Platform, injectId: string): Promise<void> {
  for (let i = 0; i < 40; i++) {
    const res = await fetch(`${platform.base}/inject/${injectId}`, { method: 'POST' });
    if (res.status === 200) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the inject button ${injectId} never answered 200`);
}
