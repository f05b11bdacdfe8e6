/**
 * The operator dashboard's mailboxes: messages waiting in each inbox and outbox queue of the
 * tenant, the age of the oldest, and dead letters per queue; and per connector (webhooks, AMQP,
 * FTP, XMPP) what waits, what was delivered and what failed (attempts from the Prometheus
 * registry, see counters.ts). Framework-free.
 */
import type { SqlClient } from '../db/sql';
import { CONNECTORS, deliveries } from './counters';

/** The connector a queue belongs to, from the names its nodes give their queues. */
export function connectorOf(queue: string): string {
  if (queue === 'webhooks' || queue.startsWith('webhook:')) return 'webhooks';
  const prefix = /^(amqp|ftp|xmpp):/.exec(queue);
  return prefix ? prefix[1] : 'mailbox';
}

export interface MailboxRow {
  box: 'inbox' | 'outbox';
  queue: string;
  connector: string;
  /** Messages waiting (claimable, leased or in a backoff). */
  depth: number;
  /** Age of the oldest waiting message in seconds, 0 when none waits. */
  oldestSeconds: number;
  deadLetters: number;
}

const BOXES_SQL = `SELECT box, queue, sum(depth)::int AS depth, max(oldest)::float8 AS oldest, sum(dead)::int AS dead FROM (
    SELECT 'inbox' AS box, queue, count(*) AS depth, extract(epoch FROM now() - min(created_at)) AS oldest, 0 AS dead FROM inbox WHERE tenant_id = $1 GROUP BY queue
    UNION ALL SELECT 'outbox', queue, count(*), extract(epoch FROM now() - min(created_at)), 0 FROM outbox WHERE tenant_id = $1 GROUP BY queue
    UNION ALL SELECT box, queue, 0, 0, count(*) FROM dead_letters WHERE tenant_id = $1 GROUP BY box, queue
  ) q GROUP BY box, queue ORDER BY box, queue`;

/** Every queue of the tenant that holds a message or a dead letter. */
export async function mailboxDepths(db: SqlClient, tenant: string): Promise<MailboxRow[]> {
  const { rows } = await db.query<{ box: 'inbox' | 'outbox'; queue: string; depth: number; oldest: number | null; dead: number }>(BOXES_SQL, [tenant]);
  return rows.map((r) => ({
    box: r.box,
    queue: r.queue,
    connector: connectorOf(r.queue),
    depth: Number(r.depth),
    oldestSeconds: Math.max(0, Math.round(Number(r.oldest ?? 0))),
    deadLetters: Number(r.dead),
  }));
}

export interface ConnectorRow {
  connector: string;
  /** Messages waiting in the connector's queues (this tenant). */
  waiting: number;
  deadLetters: number;
  /** Delivery attempts since the process started (all tenants). */
  delivered: number;
  failed: number;
}

/** One row per connector: the four always, in order, then any other that has counts. */
export async function connectorRows(db: SqlClient, tenant: string): Promise<ConnectorRow[]> {
  const [boxes, counts] = await Promise.all([mailboxDepths(db, tenant), deliveries()]);
  const rows = new Map<string, ConnectorRow>();
  const row = (connector: string) => {
    let r = rows.get(connector);
    if (!r) rows.set(connector, (r = { connector, waiting: 0, deadLetters: 0, delivered: 0, failed: 0 }));
    return r;
  };
  for (const c of CONNECTORS) row(c);
  for (const b of boxes) {
    if (b.connector === 'mailbox') continue;
    const r = row(b.connector);
    r.waiting += b.depth;
    r.deadLetters += b.deadLetters;
  }
  for (const [connector, c] of counts) Object.assign(row(connector), { delivered: c.delivered, failed: c.failed });
  return [...rows.values()];
}
