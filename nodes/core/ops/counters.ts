/**
 * The counts the operator dashboard shows, read from the process's Prometheus registry
 * (nodes/core/metrics/metrics.ts) rather than counted a second time: messages the device
 * listeners passed on, device refusals by reason, delivery attempts per connector and outcome.
 * These are process-wide (not per tenant), as /metrics reports them. Framework-free.
 */
import { registry } from '../metrics/metrics';

interface Value {
  labels: Record<string, string | number | undefined>;
  value: number;
}

async function values(name: string): Promise<Value[]> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return [];
  return (await metric.get()).values as Value[];
}

/** The listener nodes whose outputs are readings from devices. */
export const LISTENER_TYPES: ReadonlySet<string> = new Set(['conflux-http-in', 'conflux-mqtt-in', 'conflux-tcp-in', 'conflux-udp-in']);

/** Messages with readings the device listeners have passed on since the process started. */
export async function deviceMessagesTotal(): Promise<number> {
  let total = 0;
  for (const v of await values('conflux_node_messages_total')) {
    if (v.labels.direction === 'out' && LISTENER_TYPES.has(String(v.labels.type))) total += v.value;
  }
  return total;
}

export interface RefusalRow {
  transport: string;
  reason: string;
  count: number;
}

/** Refused connections, frames and datagrams, most frequent first. */
export async function refusals(): Promise<RefusalRow[]> {
  return (await values('conflux_device_refusals_total'))
    .filter((v) => v.value > 0)
    .map((v) => ({ transport: String(v.labels.transport ?? ''), reason: String(v.labels.reason ?? ''), count: v.value }))
    .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
}

export const CONNECTORS = ['webhooks', 'amqp', 'ftp', 'xmpp'] as const;

export interface DeliveryCounts {
  delivered: number;
  /** Every attempt that did not deliver: retry, dead, disabled, failed. */
  failed: number;
  dead: number;
}

/** Delivery attempts per connector (all four, zero when unused). */
export async function deliveries(): Promise<Map<string, DeliveryCounts>> {
  const byConnector = new Map<string, DeliveryCounts>(CONNECTORS.map((c) => [c, { delivered: 0, failed: 0, dead: 0 }]));
  for (const v of await values('conflux_deliveries_total')) {
    const connector = String(v.labels.connector ?? '');
    let c = byConnector.get(connector);
    if (!c) byConnector.set(connector, (c = { delivered: 0, failed: 0, dead: 0 }));
    if (v.labels.outcome === 'delivered') c.delivered += v.value;
    else c.failed += v.value;
    if (v.labels.outcome === 'dead') c.dead += v.value;
  }
  return byConnector;
}

/** A per-second rate from successive samples of a growing total (one meter per dashboard). */
export class RateMeter {
  private last: { total: number; at: number } | undefined;

  /** The rate since the previous sample; 0 on the first, or when the total went back (a restart). */
  sample(total: number, atMs: number): number {
    const previous = this.last;
    this.last = { total, at: atMs };
    if (!previous || atMs <= previous.at || total < previous.total) return 0;
    return ((total - previous.total) * 1000) / (atMs - previous.at);
  }
}
