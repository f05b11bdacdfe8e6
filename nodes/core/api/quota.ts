/**
 * Quotas per API key: requests and bytes per period, shared by every instance on the database
 * (migration 007). A request costs one upsert that counts it and returns the window's totals:
 * the row per key and fixed window (aligned on the epoch, so every instance agrees on it without
 * talking to the others). The bytes of a response are known only after it is built: they are
 * kept in memory and added by the key's next request's upsert, or by a flush within a second, so
 * a request still costs one statement at most: the requests of a key that arrive while its upsert
 * is under way share the next one. Framework-free.
 */
import type { SqlClient } from '../db/sql';

export interface QuotaPolicy {
  /** Requests per period and key; 0: unlimited. */
  requests: number;
  /** Bytes (request plus response bodies) per period and key; 0: unlimited. */
  bytes: number;
  /** The period, in seconds. */
  periodSeconds: number;
}

export interface QuotaState {
  /** False when this request is over a quota: answer 410. */
  allowed: boolean;
  /** Which quota is used up, when one is. */
  exceeded?: 'requests' | 'bytes';
  /** The request quota (0 when only bytes are limited) and what is left of it after this request. */
  limit: number;
  remaining: number;
  /** When the window ends (ms since the epoch). */
  resetAt: number;
}

export interface QuotaKey {
  tenant: string;
  id: number | bigint;
}

interface Waiter {
  requestBytes: number;
  resolve(state: QuotaState): void;
  reject(err: Error): void;
}

/** Old windows are deleted after this many periods (and at least a day). */
const KEEP_PERIODS = 2;

export const quotaEnabled = (p: QuotaPolicy): boolean => p.requests > 0 || p.bytes > 0;

/** The start of the window `now` falls in (ms). */
export function windowStart(policy: QuotaPolicy, now: number): number {
  const period = policy.periodSeconds * 1000;
  return Math.floor(now / period) * period;
}

/** The RateLimit header fields (draft-ietf-httpapi-ratelimit-headers) for a state. */
export function rateLimitHeaders(policy: QuotaPolicy, state: QuotaState, now: number): Record<string, string> {
  const reset = String(Math.max(0, Math.ceil((state.resetAt - now) / 1000)));
  if (policy.requests === 0) return { 'ratelimit-reset': reset };
  return {
    'ratelimit-limit': String(policy.requests),
    'ratelimit-remaining': String(state.remaining),
    'ratelimit-reset': reset,
    'ratelimit-policy': `${policy.requests};w=${policy.periodSeconds}`,
  };
}

export class QuotaCounter {
  /** Bytes served but not yet counted, per `${key}:${window}`. */
  private readonly pending = new Map<string, { key: QuotaKey; window: number; bytes: number }>();
  /** Requests waiting for their key's upsert, per slot; and the slots whose upsert is under way. */
  private readonly waiting = new Map<string, { key: QuotaKey; window: number; waiters: Waiter[] }>();
  private readonly sending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private lastPrune = 0;

  constructor(
    private readonly db: () => Promise<SqlClient>,
    private readonly policy: QuotaPolicy,
    private readonly now: () => number = Date.now,
    private readonly flushMs = 1_000,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {}

  /** Counts one request of key (with the bytes of its body) and says whether it may be served. */
  charge(key: QuotaKey, requestBytes: number): Promise<QuotaState> {
    const window = windowStart(this.policy, this.now());
    const slot = `${key.id}:${window}`;
    let batch = this.waiting.get(slot);
    if (!batch) {
      batch = { key, window, waiters: [] };
      this.waiting.set(slot, batch);
    }
    const promise = new Promise<QuotaState>((resolve, reject) => batch.waiters.push({ requestBytes, resolve, reject }));
    if (!this.sending.has(slot)) this.send(slot);
    return promise;
  }

  /**
   * One upsert for every request of a key that arrived while its previous upsert was under way:
   * a busy key's requests would otherwise queue one by one on its row's lock.
   */
  private send(slot: string): void {
    const batch = this.waiting.get(slot);
    if (!batch) return;
    this.waiting.delete(slot);
    this.sending.add(slot);
    const carried = this.pending.get(slot)?.bytes ?? 0;
    this.pending.delete(slot);
    const n = batch.waiters.length;
    const bodies = batch.waiters.reduce((sum, w) => sum + w.requestBytes, 0);
    this.db()
      .then((db) =>
        db.query<{ requests: number | bigint | string; bytes: number | bigint | string }>(
          `INSERT INTO api_usage AS u (key_id, window_start, tenant_id, requests, bytes) VALUES ($1, to_timestamp($2::double precision / 1000), $3, $4, $5)
           ON CONFLICT (key_id, window_start) DO UPDATE SET requests = u.requests + EXCLUDED.requests, bytes = u.bytes + EXCLUDED.bytes
           RETURNING requests, bytes`,
          [batch.key.id, batch.window, batch.key.tenant, n, carried + bodies],
        ),
      )
      .then(
        ({ rows: [row] }) => {
          const first = Number(row.requests) - n;
          // The bytes of these requests' answers are not in yet: a key is refused once it has used its bytes up.
          const bytesBefore = Number(row.bytes) - bodies;
          batch.waiters.forEach((w, i) => w.resolve(this.state(first + i + 1, bytesBefore, batch.window)));
        },
        (err: Error) => {
          if (carried > 0) this.addBytes(batch.key, carried, batch.window);
          for (const w of batch.waiters) w.reject(err);
        },
      )
      .finally(() => {
        this.sending.delete(slot);
        this.send(slot);
      });
    this.maybePrune(this.now());
  }

  private state(requests: number, bytesBefore: number, window: number): QuotaState {
    const overRequests = this.policy.requests > 0 && requests > this.policy.requests;
    const overBytes = this.policy.bytes > 0 && bytesBefore >= this.policy.bytes;
    return {
      allowed: !overRequests && !overBytes,
      exceeded: overRequests ? 'requests' : overBytes ? 'bytes' : undefined,
      limit: this.policy.requests,
      remaining: this.policy.requests > 0 ? Math.max(0, this.policy.requests - requests) : 0,
      resetAt: window + this.policy.periodSeconds * 1000,
    };
  }

  /** Adds the bytes of an answer to key's usage (counted with its next request, or the next flush). */
  addBytes(key: QuotaKey, bytes: number, window = windowStart(this.policy, this.now())): void {
    if (this.policy.bytes === 0 || bytes <= 0) return;
    const slot = `${key.id}:${window}`;
    const entry = this.pending.get(slot);
    if (entry) entry.bytes += bytes;
    else this.pending.set(slot, { key, window, bytes });
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush().catch(this.onError);
    }, this.flushMs);
  }

  /** Writes every pending byte count (on a timer, and on close). */
  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const entries = [...this.pending.values()];
    this.pending.clear();
    const db = await this.db();
    for (const e of entries) {
      await db.query(
        `INSERT INTO api_usage AS u (key_id, window_start, tenant_id, requests, bytes) VALUES ($1, to_timestamp($2::double precision / 1000), $3, 0, $4)
         ON CONFLICT (key_id, window_start) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes`,
        [e.key.id, e.window, e.key.tenant, e.bytes],
      );
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  /** Deletes windows long past, at most once an hour per instance (any instance may: it is idempotent). */
  private maybePrune(now: number): void {
    if (now - this.lastPrune < 3_600_000) return;
    this.lastPrune = now;
    const keepMs = Math.max(86_400_000, KEEP_PERIODS * this.policy.periodSeconds * 1000);
    this.db()
      .then((db) => db.query('DELETE FROM api_usage WHERE window_start < to_timestamp($1::double precision / 1000)', [now - keepMs]))
      .catch(this.onError);
  }
}
