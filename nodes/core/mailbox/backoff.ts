/** Retry policy of a mailbox: exponential backoff, then a dead letter. Pure, framework-free. */

export interface RetryPolicy {
  /** Delay after the first failed attempt; doubles with each further attempt. */
  baseDelayMs: number;
  /** Upper bound of the delay. */
  maxDelayMs: number;
  /** A message that has failed this many attempts goes to dead_letters instead of back to the queue. */
  maxAttempts: number;
  /**
   * 0..1: the delay is drawn uniformly from [delay·(1−jitter), delay], so many instances that
   * failed together do not retry in lockstep. Default 0 (deterministic).
   */
  jitter?: number;
}

export const DEFAULT_RETRY: Readonly<Required<RetryPolicy>> = { baseDelayMs: 1_000, maxDelayMs: 300_000, maxAttempts: 10, jitter: 0 };

export function validateRetryPolicy(policy: RetryPolicy): void {
  const { baseDelayMs, maxDelayMs, maxAttempts, jitter = 0 } = policy;
  if (!(Number.isFinite(baseDelayMs) && baseDelayMs >= 0)) throw new RangeError(`baseDelayMs must be a number >= 0, got ${baseDelayMs}`);
  if (!(Number.isFinite(maxDelayMs) && maxDelayMs >= baseDelayMs)) throw new RangeError(`maxDelayMs must be >= baseDelayMs, got ${maxDelayMs}`);
  if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) throw new RangeError(`maxAttempts must be an integer >= 1, got ${maxAttempts}`);
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`jitter must be within 0..1, got ${jitter}`);
}

/**
 * The delay before the next try of a message that has failed `attempts` times (attempts >= 1):
 * baseDelayMs · 2^(attempts−1), capped at maxDelayMs, less the jitter. Whole milliseconds.
 */
export function backoffDelay(attempts: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.min(attempts - 1, 52)); // 2^52 already exceeds any sane cap
  const delay = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** exponent);
  const jitter = policy.jitter ?? 0;
  return Math.round(jitter > 0 ? delay * (1 - jitter * random()) : delay);
}
