/**
 * Mosquitto (the Debian package) on a free loopback port, for benches that need a real MQTT 5
 * broker with `$share/` subscriptions (aedes has none). Its log of subscriptions tells when every
 * instance has subscribed: a message published to a share group before any member subscribed is
 * dropped, so a bench must wait for them on the broker's word, not on a timer.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freeTcpPort } from './harness';
import { until } from './runtime';

export interface Mosquitto {
  url: string;
  port: number;
  pid: number;
  /** Resolves once each client id has subscribed (since the broker started). */
  subscribed(clientIds: string[], ms?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startMosquitto(): Promise<Mosquitto> {
  try {
    execFileSync('mosquitto', ['-h'], { stdio: 'ignore' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('mosquitto is not installed (Debian package mosquitto; test/servers/servers.sh installs it)', { cause: err });
    }
    // `mosquitto -h` exits non-zero: it is there
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-bench-mosquitto-'));
  const port = await freeTcpPort();
  const conf = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      // The default (1,000 queued per subscriber beyond those in flight) drops QoS 1 messages of a
      // burst that a subscriber has not taken yet: a bench round would lose them.
      'max_queued_messages 0',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type subscribe',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const subscribers = new Set<string>();
  let tail = '';
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => {
    const text = partial + d.toString();
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // "<time>: <client id> <qos> <filter>"
      const m = /^\d+: (\S+) \d (\S+)$/.exec(line);
      if (m) subscribers.add(m[1]);
      else tail = (tail + line + '\n').slice(-4000);
    }
  });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }).finally(() => fs.rmSync(dir, { recursive: true, force: true }));
  try {
    await until(
      () => {
        if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}: ${tail}`);
        return new Promise<boolean>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        });
      },
      10_000,
      `mosquitto to listen on port ${port}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    subscribed: (clientIds, ms = 60_000) =>
      until(() => clientIds.every((id) => subscribers.has(id)), ms, `subscriptions of ${clientIds.filter((id) => !subscribers.has(id)).join(', ')}`),
    stop,
  };
}
