/**
 * Fault tests (issue 14, item 2): the platform on the real servers with devices under load
 * (tools/device-load) and a webhook subscriber, a server stopped and started under it, and the
 * counts every such test prints and asserts:
 *
 *   readings  sent (made by the devices), accepted (acknowledged to them), stored (accepted and
 *             found in the readings table), lost (accepted, not stored), duplicates (rows beyond a
 *             reading's first), strangers (rows matching no reading), storedUnacked (allowed);
 *   outbox    enqueued (distinct outbox messages: webhook events logged or waiting), delivered
 *             (distinct ids the receiver got), requests (every POST), conflicting (ids delivered as
 *             two different events), missing (accepted readings no delivered event carries),
 *             waiting (still in the outbox), dead (dead letters).
 *
 * The standalone platform runs as `npm start` runs it (test/support/platform.ts: dist/settings.js
 * with CONFLUX_* variables) on the shipped getting-started flow, written into its data directory
 * first with only the webhooks configuration changed: private destinations allowed (the receiver
 * is on 127.0.0.1) and, when given, a retry schedule and circuit breaker of the test's choosing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { migrate } from '../../nodes/core/db/migrate';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { LOAD_TRANSPORTS, type LoadDevice, type LoadTarget, type LoadTransport, type Reading } from '../../tools/device-load/load';
import { describePhase, examples, phaseKept, reconcile, type PhaseReport } from '../../tools/device-load/reconcile';
import { freePort, root } from './platform';
import type { Received } from './webhook-receiver';

export interface ReadingCounts {
  sent: number;
  accepted: number;
  stored: number;
  lost: number;
  duplicates: number;
  strangers: number;
  storedUnacked: number;
  rollupMismatches: number;
}

export interface OutboxCounts {
  enqueued: number;
  delivered: number;
  requests: number;
  conflicting: number;
  missing: number;
  waiting: number;
  dead: number;
}

/** `count` devices per transport, serials `<name>-<transport>-<i>`. */
export function faultDevices(name: string, transports: readonly LoadTransport[], count: number): LoadDevice[] {
  return transports.flatMap((transport) =>
    Array.from({ length: count }, (_, i) => ({ transport, serial: `${name}-${transport}-${i + 1}`, key: `key of ${name}-${transport}-${i + 1}` })),
  );
}

/**
 * Migrates the database and provisions what an operator would before the first start: the
 * devices with their keys and, given a URL, a webhook subscription to every reading.received.
 */
export async function provision(sql: SqlClient, devices: readonly LoadDevice[], webhookUrl?: string): Promise<void> {
  await migrate(sql);
  const store = createBusinessStore(sql);
  for (const d of devices) {
    const row = await store.create(d.tenant ?? 'default', 'devices', { serial: d.serial });
    await store.create(d.tenant ?? 'default', 'device_keys', { device_id: row.id, key: d.key });
  }
  if (webhookUrl) await store.create('default', 'webhook_subscriptions', { url: webhookUrl, events: ['reading.received'] });
}

export interface WebhookSettings {
  /** The retry schedule, as the editor field takes it ("5s, 5s, 10s"). Default: the standard one. */
  schedule?: string;
  /** How long the circuit stays open after failureThreshold failures in a row, s. */
  openSeconds?: number;
  failureThreshold?: number;
  connectTimeoutMs?: number;
}

/**
 * Writes the shipped getting-started flow (flows/default.json) as the flow file of dataDir, so the
 * platform starts on it rather than installing its first flows: the webhooks configuration allows
 * 127.0.0.1 and takes `webhooks`; everything else is as shipped.
 */
export function writeFlow(dataDir: string, webhooks: WebhookSettings = {}): FlowNode[] {
  const flow = JSON.parse(fs.readFileSync(path.join(root, 'flows', 'default.json'), 'utf8')) as FlowNode[];
  const config = flow.find((n) => n.type === 'conflux-webhooks');
  if (!config) throw new Error('flows/default.json has no conflux-webhooks node');
  Object.assign(config, { allowPrivate: true }, Object.fromEntries(Object.entries(webhooks).map(([k, v]) => [k, String(v)])));
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dataDir, 'flows.json'), JSON.stringify(flow), { mode: 0o600 });
  return flow;
}

export type FlowNode = Record<string, unknown> & { id: string; type: string; wires?: string[][] };

/** The one node of a type in a flow. */
export function nodeOf(flow: FlowNode[], type: string): FlowNode {
  const found = flow.filter((n) => n.type === type);
  if (found.length !== 1) throw new Error(`the flow has ${found.length} nodes of type ${type}, not one`);
  return found[0];
}

/** Free ports for the platform's HTTP, TCP, UDP and embedded MQTT listeners, and the devices' view of them. */
export async function platformPorts(): Promise<{ vars: Record<string, string>; target: LoadTarget }> {
  const vars = {
    CONFLUX_PORT: String(await freePort()),
    CONFLUX_TCP_PORT: String(await freePort()),
    CONFLUX_UDP_PORT: String(await freePort()),
    CONFLUX_MQTT_PORT: String(await freePort()),
  };
  return {
    vars,
    target: { httpBase: `http://127.0.0.1:${vars.CONFLUX_PORT}/devices`, tcpPort: Number(vars.CONFLUX_TCP_PORT), mqttPort: Number(vars.CONFLUX_MQTT_PORT) },
  };
}

/** What the devices counted against the readings table, summed over phases and transports. */
export async function readingCounts(sql: SqlClient, readings: readonly Reading[]): Promise<{ counts: ReadingCounts; reports: PhaseReport[] }> {
  const reports = await reconcile(sql, readings);
  const counts: ReadingCounts = { sent: 0, accepted: 0, stored: 0, lost: 0, duplicates: 0, strangers: 0, storedUnacked: 0, rollupMismatches: 0 };
  for (const report of reports) {
    counts.rollupMismatches += report.rollupMismatches.length;
    for (const t of LOAD_TRANSPORTS) {
      const x = report.transports[t];
      counts.sent += x.sent;
      counts.accepted += x.acked;
      counts.stored += x.stored;
      counts.lost += x.lost;
      counts.duplicates += x.duplicates;
      counts.strangers += x.strangers;
      counts.storedUnacked += x.storedUnacked;
    }
  }
  return { counts, reports };
}

/** The readings promise: every reading accepted in the end, each stored exactly once, rollups agreeing. */
export function assertReadingsKept(name: string, reports: PhaseReport[]): void {
  const failures = reports.filter((r) => !phaseKept(r)).map((r) => `${r.phase}: ${describePhase(r)}\n        e.g. ${examples(r).join('; ')}`);
  if (failures.length > 0) throw new Error(`faults ${name}: accepted readings not kept exactly once:\n${failures.join('\n')}`);
}

interface ReadingEventBody {
  id: string;
  type: string;
  subject: string;
  data?: { records?: Array<{ n: string; t: number; v?: number }> };
}

/** The event of a delivery, without what may differ between two sends of one reading (data.source: when and how it arrived). */
function sameEvent(body: string): string {
  const e = JSON.parse(body) as ReadingEventBody & { data?: { source?: unknown } };
  const { source: _source, ...data } = e.data ?? {};
  return JSON.stringify({ ...e, data });
}

/**
 * The webhook side: what the outbox took (events logged in webhook_deliveries or still waiting),
 * what the receiver got, and which accepted readings no delivered event carries. An id delivered
 * twice must be the same event (same type, subject, records); `strict` also requires the same bytes.
 */
export async function outboxCounts(sql: SqlClient, received: readonly Received[], readings: readonly Reading[], strict = true): Promise<OutboxCounts> {
  const logged = await sql.query<{ event_id: string }>(`SELECT DISTINCT event_id FROM webhook_deliveries`);
  const waitingRows = await sql.query<{ message_id: string }>(`SELECT message_id FROM outbox WHERE queue = 'webhooks'`);
  const dead = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM dead_letters WHERE queue = 'webhooks'`);
  const enqueued = new Set(logged.rows.map((r) => r.event_id));
  for (const r of waitingRows.rows) enqueued.add(r.message_id.slice(r.message_id.indexOf(':') + 1));

  const bodies = new Map<string, string>();
  let conflicting = 0;
  const carried = new Set<string>();
  for (const r of received) {
    const id = String(r.headers['webhook-id']);
    const seen = bodies.get(id);
    if (seen === undefined) {
      bodies.set(id, r.body);
      for (const rec of (JSON.parse(r.body) as ReadingEventBody).data?.records ?? []) carried.add(`${rec.n}\u0000${rec.v}`);
    } else if (strict ? seen !== r.body : sameEvent(seen) !== sameEvent(r.body)) conflicting++;
  }
  const missing = readings.filter((r) => r.acked && !carried.has(`${r.name}\u0000${r.v}`)).length;
  return {
    enqueued: enqueued.size,
    delivered: bodies.size,
    requests: received.length,
    conflicting,
    missing,
    waiting: waitingRows.rows.length,
    dead: dead.rows[0].n,
  };
}

/** The line a fault test prints: `faults <name>: sent=… accepted=… stored=… duplicates=0 …`. */
export function countsLine(name: string, readings: ReadingCounts, outbox?: OutboxCounts, extra: Record<string, string | number> = {}): string {
  const fields: Record<string, string | number> = {
    sent: readings.sent,
    accepted: readings.accepted,
    stored: readings.stored,
    lost: readings.lost,
    duplicates: readings.duplicates,
    ...(readings.storedUnacked ? { storedUnacked: readings.storedUnacked } : {}),
    ...(outbox
      ? {
          enqueued: outbox.enqueued,
          delivered: outbox.delivered,
          requests: outbox.requests,
          conflicting: outbox.conflicting,
          missing: outbox.missing,
          outbox: outbox.waiting,
          dead: outbox.dead,
        }
      : {}),
    ...extra,
  };
  return `faults ${name}: ${Object.entries(fields)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}`;
}

// ws comes with node-red (the editor's own websocket library); Node 20 has no WebSocket client.
const WebSocket = require(require.resolve('ws', { paths: [path.dirname(require.resolve('node-red/package.json'))] }));

export interface NodeStatus {
  fill?: string;
  shape?: string;
  text?: string;
  at: number;
}

export interface DebugMessage {
  id: string;
  msg: string;
  at: number;
}

/**
 * What the editor shows while a fault goes on, over the platform's /comms websocket: every node
 * status (topic status/<id>) in order, per node, and every debug sidebar message.
 */
export async function editorFeed(port: number): Promise<{ statuses: Map<string, NodeStatus[]>; debug: DebugMessage[]; close: () => void }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/comms`);
  const statuses = new Map<string, NodeStatus[]>();
  const debug: DebugMessage[] = [];
  ws.on('message', (data: Buffer) => {
    for (const event of [].concat(JSON.parse(data.toString()))) {
      const { topic, data: body } = event as { topic: string; data: Record<string, unknown> | undefined };
      if (topic.startsWith('status/')) {
        const id = topic.slice('status/'.length);
        (statuses.get(id) ?? statuses.set(id, []).get(id)!).push({ ...(body ?? {}), at: Date.now() });
      } else if (topic === 'debug' && body) debug.push({ id: String(body.id), msg: String(body.msg), at: Date.now() });
    }
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  ws.send(JSON.stringify({ subscribe: 'status/#' }));
  ws.send(JSON.stringify({ subscribe: 'debug' }));
  return { statuses, debug, close: () => ws.close() };
}

/** Throws with the end of its log when the platform has exited: a fault must not take it down. */
export function assertRunning(platform: { child: { exitCode: number | null; signalCode: string | null }; output: () => string }): void {
  const { exitCode, signalCode } = platform.child;
  if (exitCode !== null || signalCode !== null) throw new Error(`the platform exited (${exitCode ?? signalCode}):\n${platform.output().slice(-4000)}`);
}
