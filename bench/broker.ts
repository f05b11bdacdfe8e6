/**
 * An aedes MQTT broker in a child process of its own, so that neither side of a comparison has
 * its broker in the runtime's event loop: both sides' devices and subscribers go through it.
 * `node dist/bench/broker.js` prints the port once it listens and exits when its parent goes.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';

export interface Broker {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export async function startBroker(): Promise<Broker> {
  const child: ChildProcess = fork(__filename, ['--serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port?: number }) => (m.port ? resolve(m.port) : reject(new Error('the broker did not start'))));
    child.once('exit', (code) => reject(new Error(`the broker exited with ${code}`)));
  });
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function serve(): Promise<void> {
  const { Aedes } = await import('aedes');
  const aedes = new Aedes();
  await aedes.listen();
  const server = net.createServer(aedes.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.send!({ port: (server.address() as net.AddressInfo).port });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

if (require.main === module && process.argv.includes('--serve')) {
  serve().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
