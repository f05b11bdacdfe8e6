/**
 * Issue 13's acceptance for the shipped flows: the platform as `npm start` runs it (embedded
 * defaults, no server configured), then each seed flow added beside the getting-started flow
 * through the admin API, as the editor deploys an import. Each deploy answers 2xx, has no unknown
 * node, logs no error while it starts and settles (waited on the statuses it shows, never a fixed
 * pause), and leaves the platform running; a node whose server is not configured shows the status
 * naming the variable to set (read as the editor reads it, over /comms). One platform for all.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePort, freeUdpPort } from '../support/ports';
import { root, START_TIMEOUT_MS, usePlatform, waitForOutput, type Platform } from '../support/platform';
import { until } from '../support/wait';

type FlowNode = Record<string, unknown> & { id: string; type: string; name?: string; z?: string };
interface Status {
  text?: string;
  fill?: string;
  shape?: string;
}

const readFlow = (file: string): FlowNode[] => JSON.parse(fs.readFileSync(path.join(root, 'flows', file), 'utf8')) as FlowNode[];

// ws comes with node-red (the editor's own websocket library); Node 20 has no WebSocket client.
const WebSocket = require(require.resolve('ws', { paths: [path.dirname(require.resolve('node-red/package.json'))] }));

/** Every node status as the editor receives it (/comms, topic status/<id>), the last one per node. */
async function statusFeed(platform: Platform): Promise<{ last: Map<string, Status>; close: () => void }> {
  const ws = new WebSocket(`ws://127.0.0.1:${platform.port}/comms`);
  const last = new Map<string, Status>();
  ws.on('message', (data: Buffer) => {
    for (const event of [].concat(JSON.parse(data.toString()))) {
      const { topic, data: body } = event as { topic: string; data: Status };
      if (topic.startsWith('status/')) last.set(topic.slice('status/'.length), body ?? {});
    }
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  ws.send(JSON.stringify({ subscribe: 'status/#' }));
  return { last, close: () => ws.close() };
}

/** What each flow shows once it has settled: a status (by node type, and name when several) matching a pattern. */
interface Expect {
  type: string;
  name?: string;
  text: RegExp;
}

interface Shipped {
  file: string;
  settled: Expect[];
}

const SIX: Shipped[] = [
  {
    file: 'seed-000-integration-api.json',
    settled: [
      { type: 'conflux-http-pull', text: /^not configured: set CONFLUX_PULL_URL$/ },
      { type: 'conflux-short-term', text: /./ },
    ],
  },
  {
    file: 'seed-001-socket-concentrator.json',
    settled: [
      { type: 'conflux-tcp-in', text: /listening/ },
      { type: 'conflux-udp-in', text: /listening/ },
    ],
  },
  {
    file: 'seed-002-third-party-connections.json',
    settled: [
      { type: 'conflux-ftp-out', name: 'to one FTP server', text: /^not configured: set CONFLUX_FTP_HOST$/ },
      { type: 'conflux-webhook-in', text: /accepted/ },
    ],
  },
  {
    file: 'seed-003-federation-proxy.json',
    settled: [
      { type: 'conflux-xmpp-out', text: /^not configured: set CONFLUX_XMPP_JID$/ },
      { type: 'conflux-xmpp-in', text: /^not configured: set CONFLUX_XMPP_JID$/ },
    ],
  },
  {
    file: 'seed-004-cloud-logger.json',
    settled: [
      { type: 'conflux-amqp-out', text: /^not configured: set CONFLUX_AMQP_URL$/ },
      { type: 'conflux-amqp-in', text: /^not configured: set CONFLUX_AMQP_URL$/ },
      { type: 'conflux-http-pull', text: /^not configured: set CONFLUX_PULL_URL$/ },
    ],
  },
];

/** The smaller examples: they deploy beside the getting-started flow too. */
const EXAMPLES: Shipped[] = [
  { file: 'business-and-mailboxes.json', settled: [{ type: 'conflux-mailbox', text: /./ }] },
  { file: 'events-vehicle-processed.json', settled: [] },
  { file: 'http-pull.json', settled: [{ type: 'conflux-http-pull', text: /^not configured: set CONFLUX_PULL_URL$/ }] },
  { file: 'rest-api.json', settled: [] },
  { file: 'schedule.json', settled: [{ type: 'conflux-schedule', text: /./ }] },
  { file: 'senml-basics.json', settled: [] },
  { file: 'xmpp-federation.json', settled: [{ type: 'conflux-xmpp-out', text: /^not configured: set CONFLUX_XMPP_JID$/ }] },
];

describe('the shipped flows, each imported beside the getting-started flow of npm start', function () {
  this.timeout(START_TIMEOUT_MS * 3);
  const ports: Record<string, number> = {};
  // Free ports for every listener, so that runs beside other test runs do not meet (before the platform starts).
  before(async () => {
    Object.assign(ports, {
      tcp: await freePort(),
      udp: await freeUdpPort(),
      mqtt: await freePort(),
      concentratorTcp: await freePort(),
      concentratorUdp: await freeUdpPort(),
    });
  });
  const ctx = usePlatform(() => ({
    CONFLUX_TCP_PORT: String(ports.tcp),
    CONFLUX_UDP_PORT: String(ports.udp),
    CONFLUX_MQTT_PORT: String(ports.mqtt),
    CONFLUX_CONCENTRATOR_TCP_PORT: String(ports.concentratorTcp),
    CONFLUX_CONCENTRATOR_UDP_PORT: String(ports.concentratorUdp),
  }));

  const v2 = { 'Node-RED-API-Version': 'v2' };
  let feed: Awaited<ReturnType<typeof statusFeed>>;
  /** The flows as npm start deployed them: the getting-started flow (and whatever else it deploys). */
  let started: FlowNode[];

  before(async () => {
    // The first start's own work (the demo key and device) is done before any redeploy stops it.
    await waitForOutput(ctx.platform, /API key for tenant "default"; shown only this once/);
    await waitForOutput(ctx.platform, /created the demo device/);
    feed = await statusFeed(ctx.platform);
    started = ((await (await fetch(`${ctx.platform.base}/flows`, { headers: { ...v2, Accept: 'application/json' } })).json()) as { flows: FlowNode[] }).flows;
  });
  after(() => feed?.close());

  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(ctx.platform.output().slice(-4000));
  });

  const errorsIn = (log: string): string[] => log.split('\n').filter((l) => /\[error\]|unknown type|Waiting for missing types/i.test(l));

  it('the getting-started flow: deployed by npm start with no error, its listeners up', async () => {
    const own = readFlow('default.json');
    const ids = new Set(started.map((n) => n.id));
    for (const n of own) assert.ok(ids.has(n.id), `GET /flows lacks ${n.type} ${n.id}`);
    const tcp = own.find((n) => n.type === 'conflux-tcp-in')!;
    await until(
      () => `the getting-started TCP listener's status (${JSON.stringify(feed.last.get(tcp.id))})`,
      () => /listening/.test(feed.last.get(tcp.id)?.text ?? ''),
    );
    assert.deepEqual(errorsIn(ctx.platform.output()), []);
    assert.ok(!started.some((n) => n.type === 'unknown'));
  });

  async function deployBeside(shipped: Shipped): Promise<void> {
    const flow = readFlow(shipped.file);
    const platform = ctx.platform;
    const current = (await (await fetch(`${platform.base}/flows`, { headers: { ...v2, Accept: 'application/json' } })).json()) as { rev: string };
    for (const n of flow) feed.last.delete(n.id); // a status of an earlier deploy of the same flow is no sign
    const mark = platform.output().length;
    const res = await fetch(`${platform.base}/flows`, {
      method: 'POST',
      headers: { ...v2, 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify({ rev: current.rev, flows: [...started, ...flow] }),
    });
    assert.ok(res.status >= 200 && res.status < 300, `POST /flows answered ${res.status}: ${await res.text()}`);
    await until('"Started flows" after the deploy', () => platform.output().indexOf('Started flows', mark) >= 0, START_TIMEOUT_MS);

    // Settled: each expected node shows its status (the not-configured ones name their variable).
    for (const e of shipped.settled) {
      const node = flow.find((n) => n.type === e.type && (e.name === undefined || n.name === e.name));
      assert.ok(node, `${shipped.file} has a ${e.type} ${e.name ?? ''}`);
      await until(
        () => `${e.type} ${e.name ?? node.id} of ${shipped.file} to show ${e.text} (it shows ${JSON.stringify(feed.last.get(node.id))})`,
        () => e.text.test(feed.last.get(node.id)?.text ?? ''),
      );
    }

    const deployed = ((await (await fetch(`${platform.base}/flows`, { headers: { ...v2, Accept: 'application/json' } })).json()) as { flows: FlowNode[] })
      .flows;
    const unknown = deployed.filter((n) => n.type === 'unknown');
    assert.deepEqual(unknown, [], 'no unknown node');
    const ids = new Set(deployed.map((n) => n.id));
    for (const n of flow) assert.ok(ids.has(n.id), `GET /flows lacks ${n.type} ${n.id} of ${shipped.file}`);
    assert.deepEqual(errorsIn(platform.output().slice(mark)), [], `no error while ${shipped.file} deployed and settled`);
    assert.equal(platform.child.exitCode, null, 'the platform keeps running');
    assert.equal((await fetch(`${platform.base}/`)).status, 200);
  }

  for (const shipped of SIX) it(`${shipped.file}: deploys with no error and no unknown node`, () => deployBeside(shipped));

  it('seed 001 listens where CONFLUX_CONCENTRATOR_TCP_PORT says (its own port, beside the getting-started one)', async () => {
    await deployBeside(SIX[1]);
    for (const port of [ports.concentratorTcp, ports.tcp]) {
      const socket = net.connect(port, '127.0.0.1');
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      socket.destroy();
    }
  });

  for (const shipped of EXAMPLES) it(`example ${shipped.file}: deploys with no error and no unknown node`, () => deployBeside(shipped));
});
