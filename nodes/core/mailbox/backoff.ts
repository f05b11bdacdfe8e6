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
  /**
   * Explicit delays instead of the doubling: the delay after the n-th failed attempt is
   * schedule[n−1] (the last entry repeats). baseDelayMs and maxDelayMs are then unused.
   */
  schedule?: readonly number[];
}

export const DEFAULT_RETRY: Readonly<Required<Omit<RetryPolicy, 'schedule'>>> = { baseDelayMs: 1_000, maxDelayMs: 300_000, maxAttempts: 10, jitter: 0 };

export function validateRetryPolicy(policy: RetryPolicy): void {
  const { baseDelayMs, maxDelayMs, maxAttempts, jitter = 0 } = policy;
  if (!(Number.isFinite(baseDelayMs) && baseDelayMs >= 0)) throw new RangeError(`baseDelayMs must be a number >= 0, got ${baseDelayMs}`);
  if (!(Number.isFinite(maxDelayMs) && maxDelayMs >= baseDelayMs)) throw new RangeError(`maxDelayMs must be >= baseDelayMs, got ${maxDelayMs}`);
  if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) throw new RangeError(`maxAttempts must be an integer >= 1, got ${maxAttempts}`);
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`jitter must be within 0..1, got ${jitter}`);
  if (policy.schedule !== undefined) {
    if (policy.schedule.length === 0) throw new RangeError('schedule must not be empty');
    for (const d of policy.schedule) if (!(Number.isFinite(d) && d >= 0)) throw new RangeError(`schedule delays must be numbers >= 0, got ${d}`);
  }
}

/**
 * A schedule-based policy: one try at once, then one after each delay; the message is
 * dead-lettered when the last try fails (maxAttempts = delays + 1).
 */
export function scheduledRetry(delaysMs: readonly number[], jitter = 0): RetryPolicy {
  const policy: RetryPolicy = { baseDelayMs: 0, maxDelayMs: Math.max(0, ...delaysMs), maxAttempts: delaysMs.length + 1, jitter, schedule: [...delaysMs] };
  validateRetryPolicy(policy);
  return policy;
}

/**
 * The delay before the next try of a message that has failed `attempts` times (attempts >= 1):
 * baseDelayMs · 2^(attempts−1), capped at maxDelayMs (or the schedule's entry), less the jitter.
 * Whole milliseconds.
 */
export function backoffDelay(attempts: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.min(attempts - 1, 52)); // 2^52 already exceeds any sane cap
  const { schedule } = policy;
  const delay = schedule?.length
    ? schedule[Math.max(0, Math.min(attempts - 1, schedule.length - 1))]
    : Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** exponent);
  const jitter = policy.jitter ?? 0;
  return Math.round(jitter > 0 ? delay * (1 - jitter * random()) : delay);
}
