/**
 * The two ends of `npm run bench -- scale`, each in a worker thread of the bench's process so that
 * neither runs in an instance: the devices (mqtt.js clients publishing SenML packs to the broker)
 * and the webhook receiver (one HTTP endpoint that counts the readings each delivery carries).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

export type Side = 'conflux' | 'core';

export interface DevicesSetup {
  url: string;
  devices: number;
  perDevice: number;
  records: number;
  window: number;
  tenant: string;
  /** the first round's first time, seconds since the epoch */
  t0: number;
}
export interface ReceiverSetup {
  /** the subscription's whsec_ secret: a sample of signatures is checked on both sides */
  secret: string;
}

export type FromReceiver =
  | { port: number }
  | { progress: number }
  | { done: true; readings: number; events: number; last: number; verified: number; bad: string[]; strays: number }
  | { error: string };

export const serial = (i: number) => `scale-${String(i).padStart(3, '0')}`;
/** Conflux subscribes to senml/…, the core flow to core/…: the two never take each other's packs. */
export const topicOf = (side: Side, tenant: string, i: number) => `${side === 'conflux' ? 'senml' : 'core'}/${tenant}/${serial(i)}/attrs`;
export const epochMs = () => performance.timeOrigin + performance.now();

/**
 * The times of a round's readings, [from, to) in seconds: each round its own, so no round repeats
 * another's readings or event ids. t0 is recent (hours ago): the time-series node's retention
 * (30 days by default, first run 30 s after deploy) would delete older readings during a round.
 */
export const roundTimes = (t0: number, round: number, perDevice: number) => ({ from: t0 + round * perDevice, to: t0 + (round + 1) * perDevice });

/** A pack of `records` readings, all at one time of the round. */
function pack(setup: DevicesSetup, round: number, seq: number): string {
  const { records } = setup;
  const bt = roundTimes(setup.t0, round, setup.perDevice).from + seq;
  const out: Array<Record<string, unknown>> = [{ bn: 'room/', bt, bu: 'Cel', n: 'sensor0', v: 20 + (seq % 100) / 10 }];
  for (let k = 1; k < records; k++) out.push({ n: `sensor${k}`, v: 20 + ((seq * 7 + k) % 100) / 10 });
  return JSON.stringify(out);
}

async function devicesWorker(setup: DevicesSetup): Promise<void> {
  const mqtt = await import('mqtt');
  const ids = Array.from({ length: setup.devices }, (_, i) => i);
  const clients = await Promise.all(
    ids.map((i) => mqtt.connectAsync(setup.url, { protocolVersion: 4, clientId: `dev-${serial(i)}`, reconnectPeriod: 0, clean: true })),
  );
  parentPort!.on('message', (m: { side: Side; round: number }) => {
    const payloads = Array.from({ length: setup.perDevice }, (_, seq) => pack(setup, m.round, seq));
    void Promise.all(
      ids.map(async (i) => {
        let seq = 0;
        const topic = topicOf(m.side, setup.tenant, i);
        await Promise.all(
          Array.from({ length: setup.window }, async () => {
            while (seq < setup.perDevice) await clients[i].publishAsync(topic, payloads[seq++], { qos: 1 });
          }),
        );
      }),
    ).then(
      () => parentPort!.postMessage({ sent: true }),
      (err: Error) => parentPort!.postMessage({ error: err.message }),
    );
  });
  parentPort!.postMessage({ ready: true });
}

async function receiverWorker(setup: ReceiverSetup): Promise<void> {
  const { Webhook } = await import('standardwebhooks');
  const verifier = new Webhook(setup.secret);
  let target = Infinity;
  let times = { from: 0, to: 0 };
  let strays = 0;
  let seen = new Set<string>();
  let readings = 0;
  let verified = 0;
  let bad: string[] = [];
  let reported = true;
  let lastProgress = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = epochMs();
      res.writeHead(204).end();
      const id = String(req.headers['webhook-id']);
      if (seen.has(id)) return; // delivered again: counted once
      const body = Buffer.concat(chunks).toString('utf8');
      try {
        const event = JSON.parse(body) as { data: { records: Array<{ t: number }> } };
        const t = event.data.records[0]?.t;
        // A late repeat of an earlier round's delivery (a retry that crossed its acknowledgement) is not this round's.
        if (!(t >= times.from && t < times.to)) return void strays++;
        seen.add(id);
        readings += event.data.records.length;
        if (seen.size % 50 === 1) {
          verifier.verify(body, req.headers as Record<string, string>);
          verified++;
        }
      } catch (err) {
        bad.push(`${id}: ${(err as Error).message}`.slice(0, 200));
      }
      if (at - lastProgress > 250) {
        lastProgress = at;
        parentPort!.postMessage({ progress: readings } satisfies FromReceiver);
      }
      if (readings >= target && !reported) {
        reported = true;
        parentPort!.postMessage({ done: true, readings, events: seen.size, last: at, verified, bad, strays } satisfies FromReceiver);
      }
    });
  });
  server.keepAliveTimeout = 600_000; // longer than any pause between rounds: no close racing a reused connection
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  parentPort!.on('message', (m: { target: number; times: { from: number; to: number } } | 'report') => {
    if (m === 'report') {
      // the round gave up waiting: what arrived
      reported = true;
      parentPort!.postMessage({ done: true, readings, events: seen.size, last: epochMs(), verified, bad, strays } satisfies FromReceiver);
    } else {
      target = m.target;
      times = m.times;
      strays = 0;
      seen = new Set();
      readings = 0;
      verified = 0;
      bad = [];
      reported = false;
    }
  });
  parentPort!.postMessage({ port: (server.address() as AddressInfo).port } satisfies FromReceiver);
}

/** A worker of this file, and a way to wait for its next reply. */
export function startWorker<T extends { error?: string }>(
  data: { devices: DevicesSetup } | { receiver: ReceiverSetup },
  onProgress?: (m: T) => boolean,
): { worker: Worker; reply: () => Promise<T> } {
  const worker = new Worker(__filename, { workerData: data });
  const replies: Array<(m: T) => void> = [];
  worker.on('message', (m: T) => {
    if (onProgress?.(m)) return;
    replies.shift()?.(m);
  });
  worker.on('error', (err) => replies.shift()?.({ error: `worker failed: ${err.stack}` } as T));
  return { worker, reply: () => new Promise<T>((resolve) => replies.push(resolve)) };
}

if (!isMainThread) {
  const data = workerData as { devices?: DevicesSetup; receiver?: ReceiverSetup } | undefined;
  const fail = (err: Error) => parentPort!.postMessage({ error: err.stack ?? String(err) });
  if (data?.devices) devicesWorker(data.devices).catch(fail);
  else if (data?.receiver) receiverWorker(data.receiver).catch(fail);
}
