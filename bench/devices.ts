/**
 * `npm run bench -- devices`: readings per second accepted from devices and decoded into the
 * canonical message, per transport, by Conflux's listeners (conflux-tcp-in, -udp-in, -http-in,
 * -mqtt-in, each device authenticated with its own key, except over MQTT where the broker did)
 * against the same job done by a flow of Node-RED core nodes in the same run and the same runtime,
 * without authentication: `mqtt in`, `tcp in` (a stream of lines), `udp in`, `http in` +
 * `http response`, each followed by a `function` node that parses the SenML JSON, resolves base
 * name and time, prefixes the names with the device's serial and sets msg.device and msg.source
 * as Conflux does.
 *
 * Fairness: both sides run in the real Node-RED runtime (bench/runtime.ts: no test helper, so no
 * spies on send); each node has one wire (Conflux: listener → count; core: in → function →
 * count, and over HTTP count → `http response`, which is how a core flow answers); over MQTT both
 * sides are clients of one aedes broker in its own process (bench/broker.ts), subscribed with
 * QoS 1, and the same device connections publish to either side's topics; every UDP socket in the
 * runtime gets the same 4 MiB receive buffer (conflux-udp-in asks for it; the core `udp in` cannot,
 * so the bench sets it on every bound socket), and both sides' UDP rounds are counted by the same
 * rule over the same phase (from the first send until nothing arrived for 2 s).
 *
 * Each flow ends at a counting node that completes the message and records the latency. The
 * devices run in a worker thread (so they do not share the runtime's event loop) with the
 * reference device client (tools/device-client): DEVICES devices per transport, each sending
 * PER_DEVICE readings per round with up to WINDOW unacknowledged (TCP: ACK frames; MQTT: PUBACK of
 * QoS 1 from the broker; HTTP: the answer; the core `tcp in` gets lines as fast as the socket
 * takes them; UDP: each send awaited). Connections, logins and UDP tokens are made before the
 * clock starts (a session's SCRAM login happens once per connection, not per reading). A reading
 * is a SenML pack of two records, a temperature and `sent`, the device's send time on the
 * monotonic clock in ms, which the counting node subtracts from its own: latency from the
 * device's send to the canonical message.
 */
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { driveDevices, freeTcpPort, median, nowMs, percentile } from './harness';

const DEVICES = 20;
const PER_DEVICE = Number(process.env.BENCH_DEVICES_PER_DEVICE ?? 500);
const WINDOW = 16;
const ROUNDS = 5;
/** The latency phase: each device sends PACED_RATE readings per second, PACED_PER_DEVICE of them. */
const PACED_RATE = 50;
const PACED_PER_DEVICE = 100;
const ALL_TRANSPORTS = ['tcp', 'udp', 'http', 'mqtt'] as const;
/** For a quick look at some: BENCH_DEVICES_TRANSPORTS=http,mqtt. */
const TRANSPORTS = ALL_TRANSPORTS.filter((t) => (process.env.BENCH_DEVICES_TRANSPORTS ?? ALL_TRANSPORTS.join(',')).split(',').includes(t));
type Transport = (typeof ALL_TRANSPORTS)[number];
type Side = 'conflux' | 'core';
const TENANT = 'default';
// One set of devices per transport: a device has one live session, a new one replaces it.
const serial = (i: number) => `bench-${String(i).padStart(3, '0')}`;
const BASE: Record<Transport, number> = { tcp: 0, udp: DEVICES, http: 2 * DEVICES, mqtt: 3 * DEVICES };
const keyOf = (i: number) => `key of device ${i}`;

interface Setup {
  ports: { ctcp: number; btcp: number; cudp: number; budp: number; aedes: number; http: number };
  tokens: Buffer[][];
}

// ---------------------------------------------------------------------------------------------
// The devices (worker thread)

function pack(i: number, seq: number): Array<Record<string, unknown>> {
  return [
    { bn: 'room/', n: 'temperature', u: 'Cel', v: 20 + ((seq * 7 + i) % 100) / 10 },
    { n: 'sent', u: 'ms', v: nowMs() },
  ];
}

async function deviceWorker(setup: Setup): Promise<void> {
  const { connect } = await import('../tools/device-client/tcp');
  const { buildDatagram } = await import('../tools/device-client/udp');
  const { postReadings } = await import('../tools/device-client/http');
  const mqtt = await import('mqtt');
  const { ports } = setup;
  const ids = Array.from({ length: DEVICES }, (_, i) => i);

  const ctcp = await Promise.all(ids.map((i) => connect({ port: ports.ctcp, serial: serial(BASE.tcp + i), key: keyOf(BASE.tcp + i), timeoutMs: 60_000 })));
  const btcp = await Promise.all(
    ids.map(
      (i) =>
        new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host: '127.0.0.1', port: ports.btcp }, () => resolve(s));
          s.setNoDelay(true);
          s.once('error', reject);
          void i;
        }),
    ),
  );
  // The same device connections publish to either side's topics on the one broker.
  const devicesMqtt = await Promise.all(
    ids.map((i) => mqtt.connectAsync(`mqtt://127.0.0.1:${ports.aedes}`, { protocolVersion: 4, clientId: serial(BASE.mqtt + i), reconnectPeriod: 0 })),
  );
  const mqttTopic = (side: Side, i: number) => `/${side === 'conflux' ? 'senml' : 'core'}/${TENANT}/${serial(BASE.mqtt + i)}/attrs`;
  // One socket per device; the datagram is the reference client's (buildDatagram).
  const udp = ids.map(() => dgram.createSocket('udp4').on('error', () => undefined));
  const tokens = setup.tokens.map((list) => [...list]);
  const origin = `http://127.0.0.1:${ports.http}`;

  /** 0: as fast as the window allows; otherwise readings per second per device, each sent on time without waiting for the previous one. */
  let pacing = 0;

  /** Runs send(i, seq) PER_DEVICE (paced: PACED_PER_DEVICE) times per device, at most `window` at once per device. */
  const drive = (window: number, send: (i: number, seq: number) => Promise<unknown>) =>
    driveDevices({ devices: DEVICES, perDevice: PER_DEVICE, window, pacing, pacedPerDevice: PACED_PER_DEVICE }, send);

  const jobs: Record<Transport, Record<Side, () => Promise<unknown>>> = {
    tcp: {
      conflux: () => drive(WINDOW, (i, seq) => ctcp[i].sendReadings('senml-json', pack(i, seq))),
      core: () =>
        drive(1, (i, seq) => {
          const ok = btcp[i].write(`${JSON.stringify({ serial: serial(BASE.tcp + i), senml: pack(i, seq) })}\n`);
          return ok ? Promise.resolve() : new Promise((resolve) => btcp[i].once('drain', resolve));
        }),
    },
    udp: {
      conflux: () =>
        drive(1, async (i, seq) => {
          const token = tokens[i].pop();
          if (!token) throw new Error('out of UDP tokens');
          await sendTo(udp[i], ports.cudp, buildDatagram({ serial: serial(BASE.udp + i), token, format: 'senml-json', payload: pack(i, seq) }));
        }),
      core: () => drive(1, (i, seq) => sendTo(udp[i], ports.budp, Buffer.from(JSON.stringify({ serial: serial(BASE.udp + i), senml: pack(i, seq) })))),
    },
    http: {
      conflux: () =>
        drive(WINDOW, async (i, seq) => {
          const r = await postReadings({
            base: `${origin}/devices`,
            serial: serial(BASE.http + i),
            key: keyOf(BASE.http + i),
            format: 'senml+json',
            body: pack(i, seq),
          });
          if (r.status !== 202) throw new Error(`conflux-http-in answered ${r.status}: ${JSON.stringify(r.problem)}`);
        }),
      core: () =>
        drive(WINDOW, async (i, seq) => {
          const r = await postReadings({ base: `${origin}/bench`, serial: serial(BASE.http + i), format: 'senml+json', body: pack(i, seq) });
          if (r.status !== 202) throw new Error(`http in answered ${r.status}`);
        }),
    },
    mqtt: {
      conflux: () => drive(WINDOW, (i, seq) => devicesMqtt[i].publishAsync(mqttTopic('conflux', i), JSON.stringify(pack(i, seq)), { qos: 1 })),
      core: () => drive(WINDOW, (i, seq) => devicesMqtt[i].publishAsync(mqttTopic('core', i), JSON.stringify(pack(i, seq)), { qos: 1 })),
    },
  };

  parentPort!.on('message', (m: { transport: Transport; side: Side; pacing: number } | 'stop') => {
    if (m === 'stop') {
      void (async () => {
        await Promise.all([
          ...ctcp.map((c) => c.close()),
          ...devicesMqtt.map((c) => c.endAsync()),
          ...udp.map((u) => new Promise<void>((resolve) => u.close(() => resolve()))),
        ]);
        for (const s of btcp) s.destroy();
        parentPort!.postMessage({ stopped: true });
      })();
      return;
    }
    pacing = m.pacing;
    jobs[m.transport][m.side]().then(
      () => parentPort!.postMessage({ sent: true }),
      (err: Error) => parentPort!.postMessage({ error: err.message }),
    );
  });
  parentPort!.postMessage({ ready: true });
}

function sendTo(socket: dgram.Socket, port: number, datagram: Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.send(datagram, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
}

// ---------------------------------------------------------------------------------------------
// The runtime (main thread)

/** What the core flows' function node does: the decoding job, without authentication. */
function decoder(transport: Transport): string {
  const identity: Record<Transport, string> = {
    tcp: 'const body = JSON.parse(msg.payload); const serial = body.serial; const tenant = "default"; const pack = body.senml;',
    udp: 'const body = JSON.parse(msg.payload); const serial = body.serial; const tenant = "default"; const pack = body.senml;',
    http: 'const text = Buffer.isBuffer(msg.payload) ? msg.payload.toString("utf8") : msg.payload; const pack = typeof text === "string" ? JSON.parse(text) : text; const serial = msg.req.params.serial; const tenant = "default";',
    mqtt: 'const levels = msg.topic.split("/"); const tenant = levels[2]; const serial = levels[3]; const pack = JSON.parse(msg.payload);',
  };
  return `
let pack, serial, tenant;
try {
  ${identity[transport].replace(/const /g, '')}
} catch (err) { node.error(err, msg); return null; }
if (!Array.isArray(pack) || !serial) { node.error("not a SenML pack", msg); return null; }
const now = Date.now() / 1000;
let bn = "", bt = 0, bu;
const records = [];
for (const r of pack) {
  if (typeof r !== "object" || r === null) { node.error("a record is not an object", msg); return null; }
  if (r.bn !== undefined) bn = r.bn;
  if (r.bt !== undefined) bt = r.bt;
  if (r.bu !== undefined) bu = r.bu;
  const n = bn + (r.n || "");
  if (!/^[A-Za-z0-9][-:./_A-Za-z0-9]*$/.test(n)) { node.error("bad name " + n, msg); return null; }
  const t = (r.t || 0) + bt;
  const rec = { n: serial + "/" + n, t: t > 268435456 ? t : now + t };
  if (typeof r.v === "number") rec.v = r.v; else if (r.vs !== undefined) rec.vs = r.vs; else if (r.vb !== undefined) rec.vb = r.vb;
  else { node.error("no value in " + n, msg); return null; }
  const u = r.u !== undefined ? r.u : bu;
  if (u !== undefined) rec.u = u;
  records.push(rec);
}
msg.payload = records;
msg.device = { tenant: tenant, id: serial };
msg.source = { transport: "${transport}", format: "senml-json", receivedAt: now };
return msg;`;
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(resolve));
  return port;
}

/** The receive buffer every UDP socket of the runtime gets: conflux-udp-in's own choice. */
const UDP_RECV_BUFFER = 4 * 1024 * 1024;

export async function run(): Promise<boolean> {
  const { report, machine } = await import('./harness');
  const { createBusinessStore } = await import('../nodes/core/stores/business');
  const { startBroker } = await import('./broker');
  const { startRuntime, counters } = await import('./runtime');

  // The same socket buffers on both sides: the core `udp in` has no setting for it, so every UDP
  // socket bound in this process gets conflux-udp-in's 4 MiB.
  const bind = dgram.Socket.prototype.bind;
  dgram.Socket.prototype.bind = function (this: dgram.Socket, ...args: unknown[]) {
    this.once('listening', () => this.setRecvBufferSize(UDP_RECV_BUFFER));
    return (bind as (...a: unknown[]) => dgram.Socket).apply(this, args);
  } as typeof bind;

  // One broker for both sides' MQTT, in its own process.
  const broker = await startBroker();
  const ports = {
    ctcp: await freeTcpPort(),
    btcp: await freeTcpPort(),
    cudp: await freeUdpPort(),
    budp: await freeUdpPort(),
    aedes: broker.port,
    http: 0,
  };
  const flow: Record<string, unknown>[] = [
    { id: 'tab', type: 'tab', label: 'devices' },
    { id: 'db', type: 'conflux-postgres', url: '' },
    { id: 'gw', type: 'conflux-gateway', database: 'db', udpTokenTtl: '3600' },
    { id: 'c-tcp', type: 'conflux-tcp-in', z: 'tab', gateway: 'gw', host: '127.0.0.1', port: String(ports.ctcp), wires: [['count-c-tcp']] },
    { id: 'c-udp', type: 'conflux-udp-in', z: 'tab', gateway: 'gw', host: '127.0.0.1', port: String(ports.cudp), wires: [['count-c-udp']] },
    { id: 'c-http', type: 'conflux-http-in', z: 'tab', gateway: 'gw', basePath: '/devices', wires: [['count-c-http']] },
    // Client of the broker: aedes matches '+' to an empty level only for clean sessions, so the
    // leading-slash SenML topic is named (see test/integration/mqtt-in.test.ts).
    {
      id: 'c-mqtt',
      type: 'conflux-mqtt-in',
      z: 'tab',
      gateway: 'gw',
      mode: 'client',
      url: broker.url,
      protocolVersion: '4',
      clientId: 'conflux-devices',
      topics: '/senml/+/+/attrs',
      qos: '1',
      wires: [['count-c-mqtt']],
    },
    {
      id: 'broker',
      type: 'mqtt-broker',
      name: 'aedes',
      broker: '127.0.0.1',
      port: String(ports.aedes),
      clientid: 'core-mqtt-in',
      autoConnect: true,
      usetls: false,
      protocolVersion: '4',
      keepalive: '60',
      cleansession: true,
    },
    {
      id: 'b-mqtt',
      type: 'mqtt in',
      z: 'tab',
      topic: '/core/+/+/attrs',
      qos: '1',
      datatype: 'utf8',
      broker: 'broker',
      nl: false,
      rap: true,
      rh: 0,
      inputs: 0,
      wires: [['f-mqtt']],
    },
    {
      id: 'b-tcp',
      type: 'tcp in',
      z: 'tab',
      server: 'server',
      host: '',
      port: String(ports.btcp),
      datamode: 'stream',
      datatype: 'utf8',
      newline: '\\n',
      topic: '',
      trim: false,
      base64: false,
      tls: '',
      wires: [['f-tcp']],
    },
    {
      id: 'b-udp',
      type: 'udp in',
      z: 'tab',
      iface: '',
      port: String(ports.budp),
      ipv: 'udp4',
      multicast: 'false',
      group: '',
      datatype: 'utf8',
      wires: [['f-udp']],
    },
    { id: 'b-http', type: 'http in', z: 'tab', url: '/bench/:serial/telemetry', method: 'post', upload: false, swaggerDoc: '', wires: [['f-http']] },
    { id: 'r-http', type: 'http response', z: 'tab', statusCode: '202', headers: {}, wires: [] },
    ...TRANSPORTS.map((t) => ({ id: `f-${t}`, type: 'function', z: 'tab', func: decoder(t), outputs: 1, wires: [[`count-b-${t}`]] })),
    // One wire per node: the core HTTP flow answers after counting (count → http response).
    ...TRANSPORTS.flatMap((t) => [`count-c-${t}`, `count-b-${t}`]).map((id) => ({
      id,
      type: 'bench-count',
      z: 'tab',
      wires: id === 'count-b-http' ? [['r-http']] : [],
    })),
  ];

  const rt = await startRuntime(flow);
  ports.http = rt.port;
  const sql = await (rt.RED.nodes.getNode('db') as { sql(): Promise<any> }).sql();
  const store = createBusinessStore(sql);
  for (let i = 0; i < 4 * DEVICES; i++) {
    const dev = await store.create(TENANT, 'devices', { serial: serial(i) });
    await store.create(TENANT, 'device_keys', { device_id: dev.id, key: keyOf(i) });
  }
  const gw = rt.RED.nodes.getNode('gw');
  const directory = await gw.directory();
  const tokens: Buffer[][] = [];
  for (let i = 0; i < DEVICES; i++) {
    const device = (await directory.credentials(serial(BASE.udp + i))).device;
    const list: Buffer[] = [];
    for (let n = 0; n < PER_DEVICE * (ROUNDS + 1) + PACED_PER_DEVICE; n += 100)
      list.push(...(await gw.tokens.issue(device, 100)).map((t: { token: Buffer }) => Buffer.from(t.token)));
    tokens.push(list);
  }
  // Let the listeners bind and both MQTT clients connect and subscribe.
  await new Promise((r) => setTimeout(r, 1_500));

  const worker = new Worker(__filename, { workerData: { ports, tokens } satisfies Setup });
  const replies: Array<(m: any) => void> = [];
  worker.on('message', (m) => replies.shift()?.(m));
  worker.on('error', (err) => replies.shift()?.({ error: `the device worker failed: ${err.stack}` }));
  const reply = () => new Promise<any>((resolve) => replies.push(resolve));
  const ready = await reply();
  assert.ok(ready.ready, JSON.stringify(ready));

  const total = DEVICES * PER_DEVICE;
  /** One round: all devices of one side of one transport send; readings per second at the counting node. */
  async function once(transport: Transport, side: Side, pacing = 0): Promise<{ rate: number; received: number; latencies: number[] }> {
    const id = `count-${side === 'conflux' ? 'c' : 'b'}-${transport}`;
    const target = pacing ? DEVICES * PACED_PER_DEVICE : total;
    let allIn: () => void = () => undefined;
    const all = new Promise<void>((resolve) => (allIn = resolve));
    const round = { readings: 0, messages: 0, latencies: [] as number[], last: 0, onCount: () => round.messages === target && allIn() };
    counters.set(id, round);
    const start = nowMs();
    worker.postMessage({ transport, side, pacing });
    const sent = await reply();
    if (sent.error) throw new Error(`${side} ${transport}: ${sent.error}`);
    // The same rule for every side and transport (UDP may lose datagrams): the round ends when all
    // arrived or nothing arrived for 2 s; its rate is what arrived over the time until the last one.
    for (;;) {
      const before = round.messages;
      const timedOut = await Promise.race([all.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 2_000))]);
      if (!timedOut || round.messages === before) break;
    }
    counters.delete(id);
    return { rate: round.messages / ((round.last - start) / 1000), received: round.messages, latencies: round.latencies };
  }

  const results: Array<{
    transport: Transport;
    conflux: number;
    core: number;
    runs: Record<Side, number[]>;
    lat: Record<Side, number[]>;
    paced: Record<Side, number[]>;
    lost: Record<Side, number>;
    pacedLost: Record<Side, number>;
  }> = [];
  for (const transport of TRANSPORTS) {
    const rates: Record<Side, number[]> = { conflux: [], core: [] };
    const lat: Record<Side, number[]> = { conflux: [], core: [] };
    const lost: Record<Side, number> = { conflux: 0, core: 0 };
    for (let r = -1; r < ROUNDS; r++) {
      for (const side of ['conflux', 'core'] as const) {
        const o = await once(transport, side);
        process.stderr.write(
          `  ${transport} ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${side}: ${Math.round(o.rate).toLocaleString('en-US')}/s (${o.received}/${total})\n`,
        );
        if (r < 0) continue;
        rates[side].push(o.rate);
        lat[side].push(...o.latencies);
        lost[side] += total - o.received;
      }
    }
    const paced: Record<Side, number[]> = { conflux: [], core: [] };
    const pacedLost: Record<Side, number> = { conflux: 0, core: 0 };
    for (const side of ['conflux', 'core'] as const) {
      const o = await once(transport, side, PACED_RATE);
      process.stderr.write(`  ${transport} paced ${DEVICES * PACED_RATE}/s: ${side}: ${o.received}/${DEVICES * PACED_PER_DEVICE}\n`);
      paced[side] = o.latencies;
      pacedLost[side] = DEVICES * PACED_PER_DEVICE - o.received;
    }
    results.push({ transport, conflux: median(rates.conflux), core: median(rates.core), runs: rates, lat, paced, lost, pacedLost });
  }

  worker.postMessage('stop');
  await reply();
  await worker.terminate();
  await rt.stop();
  await broker.stop();
  dgram.Socket.prototype.bind = bind;

  const names: Record<Transport, [string, string]> = {
    tcp: ['conflux-tcp-in (SCRAM session, JSON frames, ACK each)', '`tcp in` (stream of lines) + function'],
    udp: ['conflux-udp-in (single-use token per datagram)', '`udp in` + function'],
    http: ['conflux-http-in (device key, 202)', '`http in` + function + `http response`'],
    mqtt: ['conflux-mqtt-in (client of the aedes broker, QoS 1, PUBACK once counted)', '`mqtt in` on the same broker (QoS 1) + function'],
  };
  const ok = report(
    'Devices: readings/s accepted and decoded into the canonical message, against core nodes + function',
    'readings',
    results.map((r) => ({
      name: names[r.transport][0],
      baselineName: names[r.transport][1],
      subjectPerSec: r.conflux,
      baselinePerSec: r.core,
      ratio: r.conflux / r.core,
      floor: 1,
      subjectRuns: r.runs.conflux,
      baselineRuns: r.runs.core,
    })),
  );
  console.log(
    `\n${DEVICES} devices per transport, ${PER_DEVICE} readings each per round (${total.toLocaleString('en-US')}), up to ${WINDOW} unacknowledged per device; ${ROUNDS} rounds after a warm-up, alternating, median kept.`,
  );
  const f = (x: number | undefined) => (x === undefined ? '–' : x.toFixed(1));
  const pct = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${f(percentile(s, 50))} | ${f(percentile(s, 99))}`;
  };
  console.log(
    `\nLatency (ms) from the device's send to the canonical message at the counting node. Paced: ${DEVICES} devices × ${PACED_RATE} readings/s (${(DEVICES * PACED_RATE).toLocaleString('en-US')}/s), ${PACED_PER_DEVICE} each; at full load: over the timed rounds above (mostly time queued).\n`,
  );
  console.log(
    '| transport | paced Conflux p50 | p99 | paced core p50 | p99 | full-load Conflux p50 | p99 | full-load core p50 | p99 | lost at full load (Conflux / core) |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(
      `| ${r.transport} | ${pct(r.paced.conflux)} | ${pct(r.paced.core)} | ${pct(r.lat.conflux)} | ${pct(r.lat.core)} | ${r.lost.conflux} / ${r.lost.core}${r.pacedLost.conflux + r.pacedLost.core ? ` (paced: ${r.pacedLost.conflux} / ${r.pacedLost.core})` : ''} |`,
    );
  }
  console.log(`\n${machine()}`);
  return ok;
}

if (!isMainThread && (workerData as Setup | undefined)?.ports) {
  deviceWorker(workerData as Setup).catch((err) => {
    parentPort!.postMessage({ error: (err as Error).stack });
  });
}
