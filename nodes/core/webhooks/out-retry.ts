/**
 * When a webhook is tried again. The schedule is Standard Webhooks' example: at once, then after
 * 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (about 3 days and 4 hours in all), each
 * less up to 10 % jitter; after the last failure the delivery goes to dead letters. A 429 or 503
 * with Retry-After waits what the receiver asked instead. Framework-free.
 */
import { scheduledRetry, type RetryPolicy } from '../mailbox/backoff';

const S = 1_000;
const MIN = 60 * S;
const H = 60 * MIN;

/** The delays after the 1st, 2nd… failed attempt (10 attempts in all). */
export const STANDARD_SCHEDULE_MS: readonly number[] = [5 * S, 5 * MIN, 30 * MIN, 2 * H, 5 * H, 10 * H, 14 * H, 20 * H, 24 * H];
export const SCHEDULE_JITTER = 0.1;

export function webhookRetryPolicy(schedule: readonly number[] = STANDARD_SCHEDULE_MS, jitter = SCHEDULE_JITTER): RetryPolicy {
  return scheduledRetry(schedule, jitter);
}

/** Parses a schedule such as "5s, 5m, 30m, 2h" (units ms, s, m, h, d; a bare number is seconds). */
export function parseSchedule(text: string): number[] {
  const unit: Record<string, number> = { ms: 1, s: S, m: MIN, h: H, d: 24 * H, '': S };
  const delays = text
    .split(/[,\s]+/)
    .filter((p) => p !== '')
    .map((part) => {
      const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(part);
      if (!m) throw new RangeError(`not a delay: ${JSON.stringify(part)} (write e.g. 5s, 5m, 2h)`);
      return Math.round(Number(m[1]) * unit[m[2] ?? '']);
    });
  if (delays.length === 0) throw new RangeError('the schedule needs at least one delay');
  return delays;
}

/**
 * Retry-After (RFC 9110 10.2.3) as milliseconds from now: delta-seconds or an HTTP date (a date
 * in the past gives 0). undefined when absent or unreadable. Capped at maxMs.
 */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now(), maxMs = 24 * H): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Math.min(maxMs, Number(text) * S);
  if (!/[a-z]/i.test(text)) return undefined; // a negative or fractional number is no date either
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.min(maxMs, Math.max(0, at - now));
}
