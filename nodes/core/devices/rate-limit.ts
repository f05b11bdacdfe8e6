/**
 * Per-tenant rate limits for the listeners: a token bucket per key, refilled continuously.
 * Framework-free; `now` is injectable for tests.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** ratePerSecond 0 means unlimited. */
  constructor(
    private readonly ratePerSecond: number,
    private readonly burst = Math.max(1, ratePerSecond),
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes `cost` tokens for key; false when the bucket cannot pay (the caller refuses the message). */
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

  /** Seconds until key can pay `cost`, for a Retry-After header. */
  retryAfter(key: string, cost = 1): number {
    const b = this.buckets.get(key);
    if (!b || this.ratePerSecond <= 0) return 0;
    return Math.max(0, Math.ceil((cost - b.tokens) / this.ratePerSecond));
  }
}
