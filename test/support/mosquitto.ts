/**
 * A mosquitto broker (a real MQTT 5 broker, Debian's package, installed by test/servers/servers.sh)
 * on a free loopback port that can be stopped and started again on the same port, keeping its
 * persistence: sessions, their subscriptions and queued QoS 1 messages survive a restart, as on a
 * production broker (mosquitto saves them on a clean shutdown). No limit on queued messages, so a
 * test's counts are never cut by the broker's default of 1,000 per session.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './ports';
import { until } from './wait';

export class Mosquitto {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private log = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<Mosquitto> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-mosquitto-'));
    const broker = new Mosquitto(await freePort(), dir);
    fs.writeFileSync(
      path.join(dir, 'mosquitto.conf'),
      [
        `listener ${broker.port} 127.0.0.1`,
        'allow_anonymous true',
        'persistence true',
        `persistence_location ${dir}/`,
        'max_queued_messages 0',
        'user root',
        'log_dest stderr',
        '',
      ].join('\n'),
    );
    await broker.launch();
    return broker;
  }

  /** Starts the broker (again) on its port and persistence; resolves once it accepts connections. */
  async launch(): Promise<void> {
    if (this.child) return;
    const child = spawn('mosquitto', ['-c', path.join(this.dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.once('error', (err) => (this.log += `\n${err.message}`)); // ENOENT: not installed
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stderr!.on('data', (d: Buffer) => (this.log = (this.log + d.toString()).slice(-4000)));
    await until(
      () => `mosquitto to listen on port ${this.port}: ${this.log}`,
      () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`mosquitto exited (${child.exitCode ?? child.signalCode}): ${this.log}`);
        return new Promise<boolean>((resolve) => {
          const s = net.connect(this.port, '127.0.0.1', () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        });
      },
    );
  }

  /** A clean shutdown (SIGTERM: mosquitto saves its persistence); resolves once the process has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await this.exited;
  }

  async close(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
