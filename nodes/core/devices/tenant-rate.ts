/**
 * The gateway's per-tenant rate limit, shared by every Conflux instance on the gateway's database:
 * one token bucket per gateway and tenant (rate_buckets, migration 013), refilled continuously at
 * ratePerSecond up to burst, on the database's clock. Framework-free.
 *
 * An instance does not ask the database for every message: it leases a slice of the bucket
 * (`slice` tokens, by default a tenth of the rate) with one INSERT … ON CONFLICT DO UPDATE …
 * RETURNING, and spends it in memory. A lease that finds less than one token tells how long until
 * a whole slice has refilled; until then the instance refuses that tenant without asking again.
 * Concurrent messages of a tenant wait on one lease. So a tenant at or over its rate costs an
 * instance about rate/slice queries a second, however hard it floods.
 *
 * What the instances accept together never exceeds what the bucket gave out: burst + rate × t
 * since the bucket was made. Over a window of any length W they accept at most
 * burst + rate × W + (instances × slice): each may have leased up to a slice just before the
 * window and spend it inside. The price of the slices is the other way: a tenant may be refused
 * on one instance while tokens sit leased on another (at most a slice each).
 *
 * ratePerSecond 0 is unlimited: take() answers at once and nothing touches the database.
 */
import type { SqlClient } from '../db/sql';

/** What the device listeners need of a rate limit. */
export interface TenantRate {
  /** Whether tenant may send one more message; rejects when the shared budget cannot be reached. */
  take(tenant: string): Promise<boolean>;
  /** Seconds until tenant is likely to be accepted again (Retry-After), after a refusal; 0 when unknown. */
  retryAfter(tenant: string): number;
}

export interface TenantRateOptions {
  /** The gateway's database; rejects with the reason it cannot be opened. */
  sql: () => Promise<SqlClient>;
  /** Names the budget: the gateway node's id, the same on every instance that runs the same flows. */
  scope: string;
  ratePerSecond: number;
  /** Default max(1, ratePerSecond). */
  burst?: number;
  /** Tokens one lease takes at most. Default a tenth of the rate (or of the burst if smaller), at least 1. */
  slice?: number;
  /** After a failed lease, take() rejects at once for this long, ms, rather than ask again. Default 1,000. */
  failureHoldMs?: number;
  /** ms since the epoch. Given (tests), it is the bucket's clock as well; else the bucket uses the database's. */
  now?: () => number;
}

interface Local {
  /** Tokens leased and not spent yet. */
  leased: number;
  /** Until then (local ms) the bucket is known empty. */
  until: number;
  lease?: Promise<void>;
  failedUntil: number;
  failure?: Error;
}

const MAX_TENANTS = 100_000;

// $6 null: the database's clock; statement_timestamp() is one value through the statement.
const NOW = `COALESCE($6::float8, extract(epoch FROM statement_timestamp())::float8 * 1000)`;
const AVAIL = `LEAST($4::float8, b.tokens + GREATEST(0, ${NOW} - b.at_ms) * $3::float8 / 1000)`;
const GRANT = `LEAST($5::float8, floor(${AVAIL}))`;
// SET expressions all read the row as it was: granted and tokens agree. A new bucket starts full.
const LEASE = /* sql */ `
INSERT INTO rate_buckets AS b (scope, tenant, tokens, at_ms, granted)
VALUES ($1, $2, $4::float8 - LEAST($5::float8, floor($4::float8)), ${NOW}, LEAST($5::float8, floor($4::float8)))
ON CONFLICT (scope, tenant) DO UPDATE SET granted = ${GRANT}, tokens = ${AVAIL} - ${GRANT}, at_ms = GREATEST(b.at_ms, ${NOW})
RETURNING granted, tokens`;

export class TenantRateLimiter implements TenantRate {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly slice: number;
  private readonly buckets = new Map<string, Local>();
  private readonly clock: () => number;

  constructor(private readonly options: TenantRateOptions) {
    this.ratePerSecond = Math.max(0, options.ratePerSecond);
    this.burst = Math.max(1, options.burst ?? this.ratePerSecond);
    this.slice = Math.max(1, Math.floor(options.slice ?? Math.min(this.ratePerSecond, this.burst) / 10));
    this.clock = options.now ?? Date.now;
  }

  async take(tenant: string): Promise<boolean> {
    if (this.ratePerSecond <= 0) return true;
    const b = this.local(tenant);
    for (;;) {
      if (b.leased >= 1) {
        b.leased--;
        return true;
      }
      const t = this.clock();
      if (t < b.until) return false;
      if (t < b.failedUntil) throw b.failure!;
      b.lease ??= this.lease(tenant, b).finally(() => (b.lease = undefined));
      await b.lease; // then take from it, or ask again if the others waiting took it all
    }
  }

  retryAfter(tenant: string): number {
    const b = this.buckets.get(tenant);
    if (!b || this.ratePerSecond <= 0) return 0;
    return Math.max(0, Math.ceil((b.until - this.clock()) / 1000));
  }

  private local(tenant: string): Local {
    let b = this.buckets.get(tenant);
    if (!b) {
      if (this.buckets.size >= MAX_TENANTS) this.buckets.delete(this.buckets.keys().next().value as string); // bounded
      b = { leased: 0, until: 0, failedUntil: 0 };
      this.buckets.set(tenant, b);
    }
    return b;
  }

  private async lease(tenant: string, b: Local): Promise<void> {
    const { sql, scope, now } = this.options;
    try {
      const db = await sql();
      const { rows } = await db.query<{ granted: number; tokens: number }>(LEASE, [
        scope,
        tenant,
        this.ratePerSecond,
        this.burst,
        this.slice,
        now ? now() : null,
      ]);
      const { granted, tokens } = rows[0];
      b.leased += granted;
      if (granted < 1) b.until = this.clock() + Math.max(1, Math.ceil(((this.slice - tokens) / this.ratePerSecond) * 1000));
    } catch (err) {
      b.failure = new Error(`the rate limit cannot be checked: ${(err as Error).message}`);
      b.failedUntil = this.clock() + (this.options.failureHoldMs ?? 1_000);
      throw b.failure;
    }
  }
}
