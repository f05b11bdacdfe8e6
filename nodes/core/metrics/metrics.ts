/**
 * The process's Prometheus metrics (prom-client), served at /metrics by the conflux-metrics
 * plugin. The hot paths (every message through a Conflux node) bump plain numbers in a Map;
 * prom-client reads them when scraped. Mailbox depth and age are queried at scrape time from
 * every database a conflux-postgres node has open. Framework-free.
 *
 *   conflux_node_messages_total{type,node,name,direction}   in | out | error, per Conflux node
 *   conflux_device_sessions{transport}                       live device sessions
 *   conflux_device_refusals_total{transport,reason}          refused connections, frames, datagrams
 *   conflux_mailbox_depth{box,queue}                         messages waiting (inbox, outbox)
 *   conflux_mailbox_oldest_seconds{box,queue}                age of the oldest of them
 *   conflux_deliveries_total{connector,outcome}              webhooks, amqp, ftp, xmpp
 *   conflux_delivery_seconds{connector}                      one delivery attempt's duration
 *   conflux_api_requests_total{status}                       REST API answers by status
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SqlClient } from '../db/sql';

export const registry = new Registry();

export type Direction = 'in' | 'out' | 'error';

interface NodeCounts {
  type: string;
  name: string;
  in: number;
  out: number;
  error: number;
}

const nodeCounts = new Map<string, NodeCounts>();

/** Counts one message into, out of, or failed in a Conflux node. */
export function countNodeMessage(id: string, type: string, name: string | undefined, direction: Direction): void {
  let c = nodeCounts.get(id);
  if (!c) nodeCounts.set(id, (c = { type, name: name ?? '', in: 0, out: 0, error: 0 }));
  c[direction]++;
}

/** Drops the counts of nodes no longer deployed (their series end). */
export function keepNodes(ids: ReadonlySet<string>): void {
  for (const id of nodeCounts.keys()) if (!ids.has(id)) nodeCounts.delete(id);
}

new Counter({
  name: 'conflux_node_messages_total',
  help: 'Messages into (in), out of (out) and failed in (error) each Conflux node',
  labelNames: ['type', 'node', 'name', 'direction'],
  registers: [registry],
  collect() {
    this.reset();
    for (const [node, c] of nodeCounts)
      for (const direction of ['in', 'out', 'error'] as const) if (c[direction] > 0) this.inc({ type: c.type, node, name: c.name, direction }, c[direction]);
  },
});

const sessions = new Gauge({ name: 'conflux_device_sessions', help: 'Live device sessions', labelNames: ['transport'], registers: [registry] });

export function sessionOpened(transport: string): void {
  sessions.inc({ transport });
}

export function sessionClosed(transport: string): void {
  sessions.dec({ transport });
}

const refusals = new Counter({
  name: 'conflux_device_refusals_total',
  help: 'Device connections, frames and datagrams refused, by reason',
  labelNames: ['transport', 'reason'],
  registers: [registry],
});

export function deviceRefused(transport: string, reason: string): void {
  refusals.inc({ transport, reason });
}

const deliveries = new Counter({
  name: 'conflux_deliveries_total',
  help: 'Delivery attempts to third parties by connector and outcome',
  labelNames: ['connector', 'outcome'],
  registers: [registry],
});
const deliverySeconds = new Histogram({
  name: 'conflux_delivery_seconds',
  help: 'Duration of one delivery attempt (request to answer, publish to confirm)',
  labelNames: ['connector'],
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

/** One delivery attempt: outcome 'delivered', 'retry', 'dead', 'disabled' or 'failed'. */
export function delivery(connector: string, outcome: string, seconds?: number): void {
  deliveries.inc({ connector, outcome });
  if (seconds !== undefined) deliverySeconds.observe({ connector }, seconds);
}

const apiRequests = new Counter({ name: 'conflux_api_requests_total', help: 'REST API answers by status', labelNames: ['status'], registers: [registry] });

export function apiAnswered(status: number): void {
  apiRequests.inc({ status: String(status) });
}

// ── Mailboxes, queried when scraped ──

const databases = new Set<SqlClient>();

/** Reports this database's mailboxes while it is open (returns the function that stops it). */
export function watchMailboxes(db: SqlClient): () => void {
  databases.add(db);
  return () => databases.delete(db);
}

interface BoxRow {
  box: string;
  queue: string;
  depth: string;
  oldest: number | null;
}

const MAILBOX_SQL = `SELECT 'inbox' AS box, queue, count(*) AS depth, extract(epoch FROM now() - min(created_at))::float8 AS oldest FROM inbox GROUP BY queue
  UNION ALL SELECT 'outbox', queue, count(*), extract(epoch FROM now() - min(created_at))::float8 FROM outbox GROUP BY queue`;

async function mailboxRows(): Promise<BoxRow[]> {
  const all = await Promise.all(
    [...databases].map((db) =>
      db.query<BoxRow>(MAILBOX_SQL).then(
        (r) => r.rows,
        () => [] as BoxRow[],
      ),
    ),
  );
  return all.flat();
}

let scrape: Promise<BoxRow[]> | undefined;
/** Both gauges read one query per database and scrape. */
function boxes(): Promise<BoxRow[]> {
  scrape ??= mailboxRows().finally(() => setImmediate(() => (scrape = undefined)));
  return scrape;
}

new Gauge({
  name: 'conflux_mailbox_depth',
  help: 'Messages waiting in each mailbox queue',
  labelNames: ['box', 'queue'],
  registers: [registry],
  async collect() {
    this.reset();
    for (const r of await boxes()) this.inc({ box: r.box, queue: r.queue }, Number(r.depth));
  },
});

new Gauge({
  name: 'conflux_mailbox_oldest_seconds',
  help: 'Age of the oldest message waiting in each mailbox queue',
  labelNames: ['box', 'queue'],
  registers: [registry],
  async collect() {
    this.reset();
    const oldest = new Map<string, { box: string; queue: string; age: number }>();
    for (const r of await boxes()) {
      const k = `${r.box}\u0000${r.queue}`;
      const age = r.oldest ?? 0;
      if (age >= (oldest.get(k)?.age ?? -1)) oldest.set(k, { box: r.box, queue: r.queue, age });
    }
    for (const o of oldest.values()) this.set({ box: o.box, queue: o.queue }, o.age);
  },
});

/** The exposition text and its content type. */
export async function exposition(): Promise<{ contentType: string; text: string }> {
  return { contentType: registry.contentType, text: await registry.metrics() };
}
