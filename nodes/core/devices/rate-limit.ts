/**
 * An in-process token bucket per key, refilled continuously: for limits that belong to one process
 * by nature (the reports a listener sends to its Catch node, nodes/shared/reporter.ts). The
 * gateway's per-tenant limit is shared by every instance instead: tenant-rate.ts. Framework-free;
 * `now` is injectable for tests.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** ratePerSecond 0 means unlimited. */
  constructor(
    private readonly ratePerSecond: number,
    private readonly burst = Math.max(1, ratePerSecond),
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes `cost` tokens for key; false when the bucket cannot pay. */
  take(key: string, cost = 1): boolean {
    if (this.ratePerSecond <= 0) return true;
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: t };
      this.buckets.set(key, b);
      if (this.buckets.size > 100_000) this.buckets.delete(this.buckets.keys().next().value as string); // bounded
    }
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.ratePerSecond);
    b.at = t;
    if (b.tokens < cost) return false;
    b.tokens -= cost;
    return true;
  }
}
