/**
 * The real Node-RED runtime for the benchmarks, in this process (RED.init + RED.start, as
 * settings.ts does), with this package's nodes and the core nodes: no test helper, so no sinon
 * spies on Node.prototype.send. The flow ends at `bench-count` nodes, registered from a throwaway
 * nodes directory, that count readings into `counters` and complete each message.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

/** dist/bench/runtime.js sits two levels below the package root. */
const packageRoot = path.resolve(__dirname, '..', '..');

export interface Counter {
  /** readings counted (records of msg.payload) */
  readings: number;
  messages: number;
  /** latencies in ms, from the `sent` record (monotonic ms) to the count */
  latencies: number[];
  last: number;
  /** called after each count */
  onCount?: () => void;
}

/** By count node id; the count nodes find it through globalThis (same process). */
export const counters = new Map<string, Counter>();
(globalThis as Record<string, unknown>).__confluxBenchCounters = counters;

const COUNT_NODE_JS = `
module.exports = function (RED) {
  function BenchCount(def) {
    RED.nodes.createNode(this, def);
    this.on('input', function (msg, send, done) {
      const c = globalThis.__confluxBenchCounters.get(def.id);
      if (c) {
        const t = Number(process.hrtime.bigint()) / 1e6;
        const records = Array.isArray(msg.payload) ? msg.payload : [];
        for (const r of records) if (typeof r.n === 'string' && r.n.endsWith('/sent')) c.latencies.push(t - r.v);
        c.readings += records.length;
        c.messages++;
        c.last = t;
        if (c.onCount) c.onCount();
      }
      send(msg); // on to an \`http response\` where a core HTTP flow answers after counting
      done();
    });
  }
  RED.nodes.registerType('bench-count', BenchCount);
};`;
const COUNT_NODE_HTML = `<script type="text/javascript">RED.nodes.registerType('bench-count',{category:'common',defaults:{},inputs:1,outputs:1,label:'bench count'});</script>`;

export interface Runtime {
  RED: any;
  server: http.Server;
  port: number;
  userDir: string;
  stop(): Promise<void>;
}

/** credentials: by node id, written as the flow's (unencrypted) credentials file. */
export async function startRuntime(
  flow: Array<Record<string, unknown>>,
  extraSettings: Record<string, unknown> = {},
  credentials?: Record<string, Record<string, unknown>>,
): Promise<Runtime> {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-bench-'));
  const countDir = path.join(userDir, 'bench-nodes');
  fs.mkdirSync(countDir);
  fs.writeFileSync(path.join(countDir, 'bench-count.js'), COUNT_NODE_JS);
  fs.writeFileSync(path.join(countDir, 'bench-count.html'), COUNT_NODE_HTML);
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flow));
  if (credentials) fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(credentials));
  const RED = require('node-red');
  const server = http.createServer();
  RED.init(server, {
    userDir,
    flowFile: 'flows.json',
    credentialSecret: false,
    nodesDir: [packageRoot, countDir],
    httpAdminRoot: false,
    httpNodeRoot: '/',
    httpStatic: undefined,
    disableEditor: true,
    logging: { console: { level: process.env.BENCH_LOG_LEVEL ?? 'warn', metrics: false, audit: false } },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    ...extraSettings,
  });
  server.on('request', RED.httpNode);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await RED.start();
  // RED.start() resolves before the flows have started: wait until every node exists.
  const ids = flow.filter((n) => n.type !== 'tab').map((n) => n.id as string);
  await until(() => ids.every((id) => RED.nodes.getNode(id)), 60_000, 'the flows to start');
  return {
    RED,
    server,
    port: (server.address() as { port: number }).port,
    userDir,
    stop: async () => {
      await RED.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(userDir, { recursive: true, force: true });
    },
  };
}

/** Resolves once fn() is true, checking every 50 ms; throws after ms. */
export async function until(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
