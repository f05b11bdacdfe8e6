/**
 * When a schedule fires: a cron expression (seconds optional, in a time zone, through croner) or
 * a fixed interval. Fire times are whole instants every instance computes alike — a cron's are
 * the expression's, an interval's are multiples of it since the Unix epoch — so two instances
 * running the same flow name the same firing by the same time, which is what they claim.
 */
import { Cron } from 'croner';

export type ScheduleSpec = { kind: 'cron'; expression: string; timezone?: string } | { kind: 'interval'; seconds: number };

/** Bounds of a fixed interval, in seconds: one second to a year. */
export const INTERVAL_MIN_S = 1;
export const INTERVAL_MAX_S = 366 * 86_400;

export class ScheduleError extends Error {
  override readonly name = 'ScheduleError';
}

export interface Timing {
  /** The first fire time strictly after `after` (ms since the epoch); undefined when there is none (a cron naming a past year). */
  next(after: number): number | undefined;
  /** The last fire time at or before `at`; undefined when there is none. */
  latest(at: number): number | undefined;
  /** Frees what croner holds. */
  dispose(): void;
}

/** Whether `zone` is an IANA time zone this runtime knows. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** The timing of a spec; throws a ScheduleError naming what is wrong with it. */
export function createTiming(spec: ScheduleSpec): Timing {
  if (spec.kind === 'interval') return intervalTiming(spec.seconds);
  const expression = spec.expression.trim();
  if (expression === '') throw new ScheduleError('the cron expression is empty');
  const timezone = spec.timezone?.trim() || undefined;
  if (timezone && !isTimeZone(timezone)) throw new ScheduleError(`unknown time zone "${timezone}" (an IANA name such as Europe/Berlin)`);
  let cron: Cron;
  try {
    // No callback: croner only computes times; the scheduler owns the one timer.
    cron = new Cron(expression, { timezone });
  } catch (err) {
    throw new ScheduleError(`invalid cron expression "${expression}": ${(err as Error).message.replace(/^CronPattern: /, '')}`);
  }
  if (!cron.nextRun()) throw new ScheduleError(`the cron expression "${expression}" never fires again`);
  return {
    next: (after) => cron.nextRun(new Date(after))?.getTime(),
    // previousRuns excludes a run exactly at the reference: look from just after `at`.
    latest: (at) => cron.previousRuns(1, new Date(at + 1))[0]?.getTime(),
    dispose: () => cron.stop(),
  };
}

function intervalTiming(seconds: number): Timing {
  if (!Number.isInteger(seconds) || seconds < INTERVAL_MIN_S || seconds > INTERVAL_MAX_S) {
    throw new ScheduleError(`the interval is a whole number of seconds from ${INTERVAL_MIN_S} to ${INTERVAL_MAX_S}, not ${seconds}`);
  }
  const ms = seconds * 1000;
  return {
    next: (after) => (Math.floor(after / ms) + 1) * ms,
    latest: (at) => Math.floor(at / ms) * ms,
    dispose: () => undefined,
  };
}

/** What the status and messages call the schedule: the expression (and zone) or the interval. */
export function describeSpec(spec: ScheduleSpec): string {
  if (spec.kind === 'interval') return `every ${spec.seconds} s`;
  return spec.timezone ? `${spec.expression} (${spec.timezone})` : spec.expression;
}

/**
 * A fire time as the status shows it, in the schedule's time zone (else the runtime's):
 * `14:05:30`, with the date in front (`2025-03-01 14:05:30`) when it is not within the next day.
 */
export function formatFireTime(ms: number, timezone: string | undefined, now: number): string {
  const soon = ms >= now && ms - now < 86_400_000;
  // sv-SE writes dates and times in ISO order (2025-03-01 14:05:30).
  const format = new Intl.DateTimeFormat('sv-SE', {
    timeZone: timezone || undefined,
    ...(soon ? {} : { year: 'numeric', month: '2-digit', day: '2-digit' }),
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  });
  return format.format(new Date(ms));
}
