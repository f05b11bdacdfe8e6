/**
 * A schedule's life: arm one timer for the next fire time, claim each firing in the ledger, run
 * it (the node hands a message to the flow and resolves once the flow has finished with it), and
 * end the run when it finishes or its timeout passes. A firing while a run is going is skipped; a
 * firing missed while the schedule was down runs once at start or is skipped, as the policy says.
 *
 * Framework-free: the node supplies run(); tests supply a clock.
 */
import type { ClaimOutcome, RunOutcome, ScheduleLedger } from './ledger';
import type { Timing } from './timing';

export type MissedPolicy = 'run-once' | 'skip';
export const MISSED_POLICIES: readonly MissedPolicy[] = ['run-once', 'skip'];

export interface Firing {
  key: string;
  /** The scheduled fire time (ms since the epoch), not when the timer woke. */
  fireTime: number;
  /** `<key>@<fire time ISO>`: the same on every instance, one per firing. */
  runId: string;
  /** True for the run of a firing missed while the schedule was down. */
  catchUp: boolean;
}

export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** A timer never waits longer than this before looking at the clock again (a suspended machine, a clock set). */
export const MAX_TIMER_MS = 60_000;
/** A run's claim outlives its timeout by this much, so the claim never lapses before the timeout ends the run. */
export const LEASE_MARGIN_MS = 1_000;

export interface SchedulerOptions {
  key: string;
  timing: Timing;
  policy: MissedPolicy;
  ledger: ScheduleLedger;
  /** Who claims, for schedule_runs.claimed_by: host:pid:node. */
  owner: string;
  /** A run not finished by then is over (and a firing after it may run). */
  runTimeoutMs: number;
  /** Starts the run of a firing; settles when it is over (rejects when it failed). */
  run(firing: Firing): Promise<void>;
  /** Something the status shows changed. */
  onChange?(): void;
  /** The ledger could not be asked, or a run failed or timed out. */
  onError?(err: Error, firing?: Firing): void;
  /** A firing missed while the schedule was down, and what the policy did with it. */
  onMissed?(fireTime: number, policy: MissedPolicy): void;
  clock?: Clock;
}

/** The firing a start must run for the policy: the newest fire time after the last one claimed, if any. */
export function missedFiring(timing: Timing, lastFire: number | undefined, now: number): number | undefined {
  if (lastFire === undefined) return undefined; // never fired: nothing was missed
  const latest = timing.latest(now);
  return latest !== undefined && latest > lastFire ? latest : undefined;
}

export function runIdOf(key: string, fireTime: number): string {
  return `${key}@${new Date(fireTime).toISOString()}`;
}

export class RunTimeout extends Error {
  override readonly name = 'RunTimeout';
}

export class Scheduler {
  /** The next fire time armed; undefined before start, after stop, or when the schedule has no more. */
  next: number | undefined;
  /** The firing whose run is going here. */
  running: Firing | undefined;
  /** Firings run here. */
  fired = 0;
  /** Firings skipped because a run was going (here or on another instance). */
  skipped = 0;
  /** Firings another instance claimed. */
  elsewhere = 0;
  /** Runs that failed or timed out, and firings the ledger could not claim. */
  failed = 0;
  lastError = '';

  private readonly clock: Clock;
  private timer: unknown;
  private stopped = false;
  private started = false;

  constructor(private readonly options: SchedulerOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** Applies the missed-run policy, then arms the timer. Resolves once armed (the catch-up run goes on by itself). */
  async start(): Promise<void> {
    if (this.started) throw new Error('a scheduler starts once');
    this.started = true;
    const { ledger, key, timing, policy } = this.options;
    let last: number | undefined;
    try {
      last = await ledger.lastFire(key);
    } catch (err) {
      this.error(err as Error); // cannot know what was missed: fire on schedule from now on
    }
    if (this.stopped) return;
    const now = this.clock.now();
    const missed = missedFiring(timing, last, now);
    this.arm(now);
    if (missed === undefined) return;
    this.options.onMissed?.(missed, policy);
    if (policy === 'run-once') void this.fire(missed, true);
  }

  /** Stops the timer; a run going here is recorded as stopped, so a next start need not wait for its lease. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.next = undefined;
    this.options.timing.dispose();
    const going = this.running;
    this.running = undefined;
    if (going) await this.options.ledger.finish(going.key, going.fireTime, 'stopped');
  }

  private arm(after: number): void {
    this.next = this.options.timing.next(after);
    this.options.onChange?.();
    if (this.next !== undefined) this.wait();
  }

  private wait(): void {
    const ms = Math.min(Math.max(0, this.next! - this.clock.now()), MAX_TIMER_MS);
    this.timer = this.clock.setTimer(() => this.tick(), ms);
  }

  private tick(): void {
    this.timer = undefined;
    if (this.stopped || this.next === undefined) return;
    const now = this.clock.now();
    if (now < this.next) return this.wait(); // woke early (the cap, or a clock a little behind the timer)
    // Woke late past several fire times (a blocked event loop, a suspended machine): the newest once.
    const due = Math.max(this.next, this.options.timing.latest(now) ?? this.next);
    void this.fire(due, false);
    this.arm(due);
  }

  private async fire(fireTime: number, catchUp: boolean): Promise<void> {
    const { key, ledger, owner, runTimeoutMs } = this.options;
    const firing: Firing = { key, fireTime, runId: runIdOf(key, fireTime), catchUp };
    let claim: ClaimOutcome;
    try {
      claim = await ledger.claim(key, fireTime, owner, runTimeoutMs + LEASE_MARGIN_MS);
    } catch (err) {
      this.failed++;
      return this.error(new Error(`cannot claim the firing ${firing.runId}: ${(err as Error).message}`), firing);
    }
    if (this.stopped) {
      if (claim === 'claimed') await ledger.finish(key, fireTime, 'stopped').catch(() => undefined);
      return;
    }
    if (claim !== 'claimed') {
      if (claim === 'busy') this.skipped++;
      else this.elsewhere++;
      return this.options.onChange?.();
    }
    this.running = firing;
    this.fired++;
    this.lastError = '';
    this.options.onChange?.();
    let outcome: RunOutcome = 'done';
    try {
      await this.within(new Promise<void>((resolve) => resolve(this.options.run(firing))), runTimeoutMs);
    } catch (err) {
      outcome = err instanceof RunTimeout ? 'timeout' : 'failed';
      this.failed++;
      if (!this.stopped) this.error(err as Error, firing);
    }
    if (this.running !== firing) return; // stop() ended it
    this.running = undefined;
    try {
      await ledger.finish(key, fireTime, outcome);
    } catch (err) {
      this.error(new Error(`cannot record the end of ${firing.runId}: ${(err as Error).message}`), firing);
    }
    this.options.onChange?.();
  }

  private within(run: Promise<void>, ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = this.clock.setTimer(() => reject(new RunTimeout(`the run took longer than ${ms / 1000} s`)), ms);
      run.then(resolve, reject).finally(() => this.clock.clearTimer(timer));
    });
  }

  private error(err: Error, firing?: Firing): void {
    this.lastError = err.message;
    this.options.onError?.(err, firing);
    this.options.onChange?.();
  }
}
