/**
 * The mailboxes (inbox, outbox): durable queues of messages with a stable id, drained by any
 * number of workers in any number of processes sharing one PostgreSQL (or one PGlite).
 * Framework-free: the conflux-mailbox node wraps it.
 *
 *   enqueue   one INSERT … ON CONFLICT DO NOTHING for the whole batch: a message id already in
 *             the box (per tenant and queue) is not added twice; enqueueClaimed inserts them
 *             already claimed by the caller, who delivers them at once
 *   claim     one UPDATE over a `FOR UPDATE SKIP LOCKED` sub-select: each claimer takes rows no
 *             other claimer holds, sets a lease (lease_until, claimed_by) and counts the attempt
 *   ack       deletes the rows the worker still holds; a row whose lease expired and that another
 *             worker claimed since is left to that worker
 *   nack      gives the row back with an exponential delay (or the caller's, e.g. a
 *             Retry-After), or after maxAttempts moves it to dead_letters, in one transaction
 *   defer     gives rows back after a delay without counting the attempt (the deliverer did not
 *             try: its endpoint was busy or its circuit open)
 *
 * Delivery is at least once: a worker that dies holding a batch leaves it leased until the
 * lease expires; then another worker claims it again, so a peer sees the messages of that batch
 * it had already received a second time and de-duplicates them on messageId.
 *
 * Writing to the outbox in the same transaction as the business change (the transactional
 * outbox) is `new Mailbox(tx, 'outbox').enqueue(…)` inside `db.transaction(async (tx) => …)`.
 */
import type { SqlClient } from '../db/sql';
import { backoffDelay, validateRetryPolicy, type RetryPolicy } from './backoff';

export { backoffDelay, DEFAULT_RETRY, scheduledRetry, type RetryPolicy } from './backoff';

export type BoxName = 'inbox' | 'outbox';
const BOXES: ReadonlySet<string> = new Set<BoxName>(['inbox', 'outbox']);

/** A row id of a box: a number while exact (always, in practice), else a bigint. */
export type RowId = number | bigint;

export interface NewMessage {
  /** Stable id the peer de-duplicates on; unique per tenant and queue. */
  messageId: string;
  /** Anything JSON can carry (not undefined). */
  payload: unknown;
  headers?: Record<string, unknown>;
}

export interface EnqueueOptions {
  /** Make the messages claimable only after this long. Default 0. */
  delayMs?: number;
}

export interface ClaimOptions {
  /** Most messages to take. 1..10000. */
  limit: number;
  /** How long the claim holds; after that another worker may claim the messages again. */
  leaseMs: number;
  /** Who claims: ack and nack only touch rows this worker still holds. */
  worker: string;
}

export interface ClaimedMessage {
  id: RowId;
  tenantId: string;
  queue: string;
  messageId: string;
  payload: unknown;
  headers: Record<string, unknown>;
  /** Claims so far, this one included (1 on the first delivery). */
  attempts: number;
  leaseUntil: Date;
  createdAt: Date;
  /** The error of the previous failed attempt, if any. */
  lastError: string | null;
}

export interface NackOptions {
  /** Retry after exactly this long instead of the policy's backoff (a peer's Retry-After). */
  delayMs?: number;
}

export type NackResult =
  /** Back in the queue, claimable again at availableAt. */
  | { outcome: 'retry'; attempts: number; delayMs: number; availableAt: Date }
  /** Moved to dead_letters. */
  | { outcome: 'dead'; attempts: number }
  /** The worker no longer holds the message (acked, lease lost to another worker, or no such id): nothing changed. */
  | { outcome: 'not-held' };

interface Row {
  id: RowId;
  tenant_id: string;
  queue: string;
  message_id: string;
  payload: unknown;
  headers: Record<string, unknown>;
  attempts: number;
  lease_until: Date;
  created_at: Date;
  last_error: string | null;
}

export const MAX_CLAIM = 10_000;
/** last_error is kept to this many characters. */
export const MAX_ERROR_LENGTH = 4_000;

function nonEmpty(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

function msParam(name: string, value: number, min: number): number {
  if (!(Number.isFinite(value) && value >= min)) throw new RangeError(`${name} must be a number >= ${min}, got ${value}`);
  return value;
}

export function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message || error.name : typeof error === 'string' ? error : (JSON.stringify(error) ?? String(error));
  return text.length > MAX_ERROR_LENGTH ? text.slice(0, MAX_ERROR_LENGTH) : text;
}

/**
 * The batch as one JSON text of [messageId, payload, headers] triples: one native stringify, where
 * three text arrays cost pg a JavaScript escape of every element (most of an enqueue's CPU).
 */
function batchJson(messages: readonly NewMessage[]): string {
  const triples: unknown[] = [];
  for (const [i, m] of messages.entries()) {
    nonEmpty(`messages[${i}].messageId`, m.messageId);
    if (m.payload === undefined) throw new TypeError(`messages[${i}].payload is undefined`);
    triples.push([m.messageId, m.payload, m.headers ?? {}]);
  }
  return JSON.stringify(triples);
}

const toClaimed = (r: Row): ClaimedMessage => ({
  id: r.id,
  tenantId: r.tenant_id,
  queue: r.queue,
  messageId: r.message_id,
  payload: r.payload,
  headers: r.headers,
  attempts: r.attempts,
  leaseUntil: r.lease_until,
  createdAt: r.created_at,
  lastError: r.last_error,
});

export class Mailbox {
  private readonly sql: {
    enqueue: string;
    enqueueClaimed: string;
    claim: string;
    ack: string;
    lock: string;
    retry: string;
    dead: string;
    defer: string;
  };

  constructor(
    private readonly db: SqlClient,
    readonly box: BoxName,
  ) {
    if (!BOXES.has(box)) throw new TypeError(`box must be 'inbox' or 'outbox', got ${String(box)}`);
    const ms = (p: string) => `(${p}::double precision * interval '1 millisecond')`;
    this.sql = {
      // One JSON parameter keeps it one statement whatever the batch size.
      enqueue: `INSERT INTO ${box} (tenant_id, queue, message_id, payload, headers, available_at)
        SELECT $1, $2, m.e->>0, (m.e->1)::jsonb, (m.e->2)::jsonb, now() + ${ms('$4')}
        FROM json_array_elements($3::json) WITH ORDINALITY AS m(e, n)
        ORDER BY m.n
        ON CONFLICT (tenant_id, queue, message_id) DO NOTHING`,
      // The same, born claimed by the enqueuing worker (attempt 1 under way): no separate claim.
      enqueueClaimed: `INSERT INTO ${box} (tenant_id, queue, message_id, payload, headers, available_at, attempts, lease_until, claimed_by)
        SELECT $1, $2, m.e->>0, (m.e->1)::jsonb, (m.e->2)::jsonb, now(), 1, now() + ${ms('$4')}, $5
        FROM json_array_elements($3::json) WITH ORDINALITY AS m(e, n)
        ORDER BY m.n
        ON CONFLICT (tenant_id, queue, message_id) DO NOTHING
        RETURNING id, tenant_id, queue, message_id, payload, headers, attempts, lease_until, created_at, last_error`,
      claim: `WITH claimed AS (
          UPDATE ${box}
          SET lease_until = now() + ${ms('$3')}, claimed_by = $4, attempts = attempts + 1
          WHERE id IN (
            SELECT id FROM ${box}
            WHERE queue = $1 AND available_at <= now() AND (lease_until IS NULL OR lease_until < now())
            ORDER BY id
            LIMIT $2
            FOR UPDATE SKIP LOCKED)
          RETURNING id, tenant_id, queue, message_id, payload, headers, attempts, lease_until, created_at, last_error)
        SELECT * FROM claimed ORDER BY id`,
      ack: `DELETE FROM ${box} WHERE id = ANY($1::bigint[]) AND claimed_by = $2`,
      lock: `SELECT attempts FROM ${box} WHERE id = $1 AND claimed_by = $2 FOR UPDATE`,
      retry: `UPDATE ${box}
        SET available_at = now() + ${ms('$2')}, lease_until = NULL, claimed_by = NULL, last_error = $3
        WHERE id = $1
        RETURNING available_at`,
      dead: `WITH gone AS (DELETE FROM ${box} WHERE id = $1 RETURNING *)
        INSERT INTO dead_letters (box, original_id, tenant_id, queue, message_id, payload, headers, attempts, last_error, created_at)
        SELECT '${box}', id, tenant_id, queue, message_id, payload, headers, attempts, $2, created_at FROM gone`,
      defer: `UPDATE ${box}
        SET available_at = now() + ${ms('$3')}, lease_until = NULL, claimed_by = NULL, attempts = greatest(attempts - 1, 0)
        WHERE id = ANY($1::bigint[]) AND claimed_by = $2`,
    };
  }

  /** Adds the messages not yet in the box (by tenant, queue, messageId); returns how many were new. */
  async enqueue(tenant: string, queue: string, messages: readonly NewMessage[], options: EnqueueOptions = {}): Promise<number> {
    nonEmpty('tenant', tenant);
    nonEmpty('queue', queue);
    const delayMs = msParam('delayMs', options.delayMs ?? 0, 0);
    if (messages.length === 0) return 0;
    const result = await this.db.query(this.sql.enqueue, [tenant, queue, batchJson(messages), delayMs]);
    return result.rowCount;
  }

  /**
   * Adds the messages not yet in the box already claimed by `worker` for leaseMs, as if it had
   * claimed them at once (attempts 1), and returns those it added: a worker with room delivers
   * what it just stored without a round trip to claim it. Durable the same: if the worker dies,
   * the lease ends and another claims them.
   */
  async enqueueClaimed(tenant: string, queue: string, messages: readonly NewMessage[], claim: { worker: string; leaseMs: number }): Promise<ClaimedMessage[]> {
    nonEmpty('tenant', tenant);
    nonEmpty('queue', queue);
    nonEmpty('worker', claim.worker);
    msParam('leaseMs', claim.leaseMs, 1);
    if (messages.length === 0) return [];
    const { rows } = await this.db.query<Row>(this.sql.enqueueClaimed, [tenant, queue, batchJson(messages), claim.leaseMs, claim.worker]);
    return rows.map(toClaimed);
  }

  /** Takes up to `limit` claimable messages of the queue (all tenants), oldest first, leased to `worker`. */
  async claim(queue: string, options: ClaimOptions): Promise<ClaimedMessage[]> {
    nonEmpty('queue', queue);
    nonEmpty('worker', options.worker);
    if (!(Number.isInteger(options.limit) && options.limit >= 1 && options.limit <= MAX_CLAIM)) {
      throw new RangeError(`limit must be an integer within 1..${MAX_CLAIM}, got ${options.limit}`);
    }
    msParam('leaseMs', options.leaseMs, 1);
    const { rows } = await this.db.query<Row>(this.sql.claim, [queue, options.limit, options.leaseMs, options.worker]);
    return rows.map(toClaimed);
  }

  /** Deletes the delivered messages `worker` still holds; returns how many it deleted. */
  async ack(ids: readonly RowId[], worker: string): Promise<number> {
    nonEmpty('worker', worker);
    if (ids.length === 0) return 0;
    const result = await this.db.query(this.sql.ack, [ids.map(String), worker]);
    return result.rowCount;
  }

  /**
   * Reports a failed delivery of a message `worker` holds: it becomes claimable again after the
   * backoff delay, or, once it has been tried maxAttempts times, moves to dead_letters.
   */
  async nack(id: RowId, worker: string, error: unknown, policy: RetryPolicy, options: NackOptions = {}): Promise<NackResult> {
    nonEmpty('worker', worker);
    validateRetryPolicy(policy);
    const override = options.delayMs === undefined ? undefined : Math.round(msParam('delayMs', options.delayMs, 0));
    const lastError = errorText(error);
    return this.db.transaction(async (tx): Promise<NackResult> => {
      const { rows } = await tx.query<{ attempts: number }>(this.sql.lock, [String(id), worker]);
      if (rows.length === 0) return { outcome: 'not-held' };
      const attempts = rows[0].attempts;
      if (attempts >= policy.maxAttempts) {
        await tx.query(this.sql.dead, [String(id), lastError]);
        return { outcome: 'dead', attempts };
      }
      const delayMs = override ?? backoffDelay(attempts, policy);
      const updated = await tx.query<{ available_at: Date }>(this.sql.retry, [String(id), delayMs, lastError]);
      return { outcome: 'retry', attempts, delayMs, availableAt: updated.rows[0].available_at };
    });
  }

  /**
   * Gives back messages `worker` holds without counting the claim as an attempt: claimable again
   * after delayMs. Returns how many it gave back.
   */
  async defer(ids: readonly RowId[], worker: string, delayMs: number): Promise<number> {
    nonEmpty('worker', worker);
    msParam('delayMs', delayMs, 0);
    if (ids.length === 0) return 0;
    const result = await this.db.query(this.sql.defer, [ids.map(String), worker, Math.round(delayMs)]);
    return result.rowCount;
  }

  /** Messages in the queue (claimable, leased or waiting out a backoff), optionally of one tenant. */
  async depth(queue: string, tenant?: string): Promise<number> {
    nonEmpty('queue', queue);
    const { rows } =
      tenant === undefined
        ? await this.db.query<{ n: number }>(`SELECT count(*) AS n FROM ${this.box} WHERE queue = $1`, [queue])
        : await this.db.query<{ n: number }>(`SELECT count(*) AS n FROM ${this.box} WHERE queue = $1 AND tenant_id = $2`, [queue, tenant]);
    return Number(rows[0].n);
  }
}
