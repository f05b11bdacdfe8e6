/**
 * What the webhook sender reads and writes in the business store (migration 005): a tenant's
 * subscriptions, with the password and signing secret the business entity never returns, cached
 * for `ttlMs` so a busy flow does not query per event (a change shows within that time); the
 * 410 switch-off; and the attempt log, written in batches, with each event's body (migration 012,
 * for a resend). A change through the REST API reaches the stores of this process at once
 * (subscriptionsChanged); other processes see it within ttlMs. Framework-free.
 */
import type { SqlClient } from '../db/sql';
import type { RowId } from '../mailbox/mailbox';
import { Batcher } from '../stores/batcher';

export interface Subscription {
  id: number;
  tenant: string;
  url: string;
  events: string[];
  username: string | null;
  password: string | null;
  secret: string | null;
  headers: Record<string, string>;
  enabled: boolean;
  /** The parsed url; undefined when it does not parse. */
  target: URL | undefined;
}

export type AttemptOutcome = 'delivered' | 'retry' | 'dead' | 'disabled';

/** PostgreSQL text holds no NUL: a receiver's binary answer would fail the log (and the ack with it). */
const textOnly = (s: string | null): string | null => (s === null ? null : s.replace(/\0/g, '\uFFFD'));

export interface Attempt {
  tenant: string;
  subscriptionId: number;
  eventId: string;
  eventType: string;
  attempt: number;
  status: number | null;
  outcome: AttemptOutcome;
  durationMs: number;
  response: string | null;
  error: string | null;
  /** The JSON body sent; kept once per tenant and event id (webhook_events) for a resend. */
  body?: string;
}

/** The stores of this process, told when the REST API changes a tenant's subscriptions. */
const live = new Set<SubscriptionStore>();

/** Drops the cached subscriptions of tenant in every store of this process: a pause or a new subscription counts from the next event. */
export function subscriptionsChanged(tenant: string): void {
  for (const store of live) store.forget(tenant);
}

interface Row {
  id: number | string;
  tenant_id: string;
  url: string;
  events: string[];
  username: string | null;
  password: string | null;
  secret: string | null;
  headers: Record<string, unknown>;
  enabled: boolean;
}

const SELECT = `SELECT id, tenant_id, url, events, username, password, secret, headers, enabled FROM webhook_subscriptions WHERE tenant_id = $1 ORDER BY id`;

function toSubscription(r: Row): Subscription {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers ?? {})) if (v !== null && v !== undefined) headers[k] = String(v);
  return {
    id: Number(r.id),
    tenant: r.tenant_id,
    url: r.url,
    events: r.events ?? [],
    username: r.username,
    password: r.password,
    secret: r.secret,
    headers,
    enabled: r.enabled,
    target: URL.canParse(r.url) ? new URL(r.url) : undefined,
  };
}

export class SubscriptionStore {
  private readonly cache = new Map<string, { at: number; subs: Promise<Subscription[]> }>();
  private readonly log: Batcher<Attempt>;
  private readonly done: Batcher<{ rowId: RowId; attempt: Attempt }>;

  constructor(
    private readonly db: SqlClient,
    private readonly ttlMs: number,
    /** The outbox worker whose delivered messages `delivered` deletes. */
    private readonly worker: string,
  ) {
    this.log = new Batcher<Attempt>({ maxBatch: 1_000, maxDelayMs: 5, maxPending: 100_000, write: (items) => this.writeLog(items) });
    this.done = new Batcher({ maxBatch: 1_000, maxDelayMs: 5, maxPending: 100_000, write: (items) => this.writeDone(items) });
    live.add(this);
  }

  /** Reads the tenant's subscriptions again on the next event. */
  forget(tenant: string): void {
    this.cache.delete(tenant);
  }

  /** Every subscription of the tenant (enabled or not), at most ttlMs old. */
  all(tenant: string, now = Date.now()): Promise<Subscription[]> {
    const hit = this.cache.get(tenant);
    if (hit && now - hit.at < this.ttlMs) return hit.subs;
    const subs = this.db.query<Row>(SELECT, [tenant]).then((r) => r.rows.map(toSubscription));
    this.cache.set(tenant, { at: now, subs });
    subs.catch(() => this.cache.delete(tenant)); // a failed load is not cached
    return subs;
  }

  async byId(tenant: string, id: number): Promise<Subscription | undefined> {
    return (await this.all(tenant)).find((s) => s.id === id);
  }

  /** Switches a subscription off (the receiver answered 410 Gone); true if this call did it. */
  async disable(tenant: string, id: number, reason: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE webhook_subscriptions SET enabled = false, disabled_at = now(), disabled_reason = $3, updated_at = now()
       WHERE tenant_id = $1 AND id = $2 AND enabled`,
      [tenant, id, reason],
    );
    const cached = this.cache.get(tenant);
    if (cached) void cached.subs.then((subs) => subs.forEach((s) => s.id === id && (s.enabled = false))).catch(() => undefined);
    return rowCount > 0;
  }

  /** Resolves once the attempt is in the log (written with others in one INSERT). */
  record(attempt: Attempt): Promise<void> {
    return this.log.add([attempt]);
  }

  /**
   * A delivered message: deletes it from the outbox (if this worker still holds it) and logs the
   * attempt, many at once in one statement (one round trip instead of an ack and a log write).
   */
  delivered(rowId: RowId, attempt: Attempt): Promise<void> {
    return this.done.add([{ rowId, attempt }]);
  }

  /**
   * Drops the delivery log older than keepDays and the event bodies no logged attempt refers to
   * any more (a resend needs both); returns how many log rows went.
   */
  async prune(keepDays: number): Promise<number> {
    const { rowCount } = await this.db.query(`DELETE FROM webhook_deliveries WHERE attempted_at < now() - make_interval(days => $1::int)`, [keepDays]);
    await this.db.query(
      `DELETE FROM webhook_events e WHERE e.created_at < now() - make_interval(days => $1::int)
       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.tenant_id = e.tenant_id AND d.event_id = e.event_id)`,
      [keepDays],
    );
    return rowCount;
  }

  async close(): Promise<void> {
    live.delete(this);
    await this.done.close();
    await this.log.close();
  }

  private async writeDone(items: { rowId: RowId; attempt: Attempt }[]): Promise<void> {
    const { sql, params } = this.logStatement(
      items.map((i) => i.attempt),
      'acked AS (DELETE FROM outbox WHERE id = ANY($2::bigint[]) AND claimed_by = $3), ',
    );
    await this.db.query(sql, [...params, items.map((i) => String(i.rowId)), this.worker]);
  }

  private async writeLog(items: Attempt[]): Promise<void> {
    const { sql, params } = this.logStatement(items);
    await this.db.query(sql, params);
  }

  // The attempts as one JSON parameter (one native stringify; pg would escape every element of ten
  // text arrays in JavaScript). The join drops attempts of a subscription deleted meanwhile (its
  // foreign key would fail the batch). The same statement keeps each event's body once (a retry
  // or another subscriber finds it there: DO NOTHING).
  private logStatement(items: Attempt[], before = ''): { sql: string; params: unknown[] } {
    // One body per event in the batch: an event to 100 subscribers is 100 attempts, one body.
    const bodies = new Set<string>();
    const firstBody = (a: Attempt): string | null => {
      if (a.body === undefined) return null;
      const key = `${a.tenant}\n${a.eventId}`;
      if (bodies.has(key)) return null;
      bodies.add(key);
      return a.body;
    };
    const rows = items.map((a) => [
      a.tenant,
      String(a.subscriptionId),
      a.eventId,
      a.eventType,
      a.attempt,
      a.status,
      a.outcome,
      a.durationMs,
      textOnly(a.response),
      textOnly(a.error),
      firstBody(a),
    ]);
    return {
      sql: `WITH ${before}bodies AS (
         INSERT INTO webhook_events (tenant_id, event_id, event_type, body)
         SELECT b->>0, b->>2, b->>3, b->>10 FROM json_array_elements($1::json) AS b WHERE b->>10 IS NOT NULL
         ON CONFLICT DO NOTHING)
       INSERT INTO webhook_deliveries (tenant_id, subscription_id, event_id, event_type, attempt, status, outcome, duration_ms, response, error)
       SELECT a.e->>0, (a.e->>1)::bigint, a.e->>2, a.e->>3, (a.e->>4)::int, (a.e->>5)::int, a.e->>6, (a.e->>7)::int, a.e->>8, a.e->>9
       FROM json_array_elements($1::json) WITH ORDINALITY AS a(e, i)
       JOIN webhook_subscriptions w ON w.tenant_id = a.e->>0 AND w.id = (a.e->>1)::bigint
       ORDER BY a.i`,
      params: [JSON.stringify(rows)],
    };
  }
}
