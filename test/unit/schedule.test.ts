/**
 * conflux-schedule's core without Node-RED: fire times of cron expressions with seconds and time
 * zones and of fixed intervals, the missed-run policy, claiming in the in-process ledger, and the
 * scheduler on a fake clock (fire times as scheduled, a run going skips the firings meanwhile, the
 * run timeout, two schedulers on one ledger running each firing once).
 */
import { strict as assert } from 'node:assert';
import { memoryLedger, type ScheduleLedger } from '../../nodes/core/schedule/ledger';
import { missedFiring, Scheduler, type Clock, type Firing, type MissedPolicy } from '../../nodes/core/schedule/scheduler';
import { createTiming, formatFireTime, ScheduleError, type ScheduleSpec } from '../../nodes/core/schedule/timing';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

/** Timers that fire only when the test moves time forward. */
class FakeClock implements Clock {
  private timers = new Map<number, { at: number; fn: () => void }>();
  private seq = 0;
  constructor(public t: number) {}
  now = () => this.t;
  setTimer = (fn: () => void, ms: number) => {
    this.timers.set(++this.seq, { at: this.t + ms, fn });
    return this.seq;
  };
  clearTimer = (id: unknown) => void this.timers.delete(id as number);
  get pending() {
    return this.timers.size;
  }
  /** Moves to `to`, firing each timer due on the way at its own time, letting promises settle after each. */
  async advanceTo(to: number): Promise<void> {
    for (;;) {
      await settle();
      const due = [...this.timers].filter(([, x]) => x.at <= to).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
    }
    this.t = to;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}

interface Harness {
  scheduler: Scheduler;
  runs: Firing[];
  /** Ends the run of the firing at this index. */
  finish(i: number, err?: Error): void;
}

function harness(
  spec: ScheduleSpec,
  clock: FakeClock,
  options: { ledger?: ScheduleLedger; policy?: MissedPolicy; timeoutMs?: number; instant?: boolean; key?: string } = {},
): Harness {
  const runs: Firing[] = [];
  const ends: Array<(err?: Error) => void> = [];
  const scheduler = new Scheduler({
    key: options.key ?? 'k',
    timing: createTiming(spec),
    policy: options.policy ?? 'run-once',
    ledger: options.ledger ?? memoryLedger(clock.now),
    owner: 'test',
    runTimeoutMs: options.timeoutMs ?? 60_000,
    clock,
    run: (firing) => {
      runs.push(firing);
      if (options.instant) return Promise.resolve();
      return new Promise<void>((resolve, reject) => ends.push((err) => (err ? reject(err) : resolve())));
    },
  });
  return { scheduler, runs, finish: (i, err) => ends[i](err) };
}

describe('schedule core', () => {
  describe('fire times', () => {
    it('reads six fields as seconds first, and five as starting at second 0', () => {
      const every10s = createTiming({ kind: 'cron', expression: '*/10 * * * * *' });
      assert.equal(iso(every10s.next(at('2025-01-01T00:00:03.250Z'))), '2025-01-01T00:00:10.000Z');
      assert.equal(iso(every10s.next(at('2025-01-01T00:00:10.000Z'))), '2025-01-01T00:00:20.000Z', 'strictly after');
      assert.equal(iso(every10s.latest(at('2025-01-01T00:00:10.000Z'))), '2025-01-01T00:00:10.000Z', 'at or before');
      assert.equal(iso(every10s.latest(at('2025-01-01T00:00:19.999Z'))), '2025-01-01T00:00:10.000Z');
      const hourly = createTiming({ kind: 'cron', expression: '5 * * * *', timezone: 'UTC' });
      assert.equal(iso(hourly.next(at('2025-01-01T10:05:00.000Z'))), '2025-01-01T11:05:00.000Z');
    });

    it('reads the expression in its time zone, across a daylight-saving change', () => {
      const berlin = createTiming({ kind: 'cron', expression: '30 15 9 * * *', timezone: 'Europe/Berlin' });
      assert.equal(iso(berlin.next(at('2025-01-15T00:00:00Z'))), '2025-01-15T08:15:30.000Z', 'CET is UTC+1');
      assert.equal(iso(berlin.next(at('2025-07-15T00:00:00Z'))), '2025-07-15T07:15:30.000Z', 'CEST is UTC+2');
      // 2:30 does not exist in New York on 2025-03-09: a fixed-time job runs at the first valid time after the gap.
      const ny = createTiming({ kind: 'cron', expression: '0 30 2 * * *', timezone: 'America/New_York' });
      assert.equal(iso(ny.next(at('2025-03-09T05:00:00Z'))), '2025-03-09T07:00:00.000Z');
      assert.equal(iso(ny.next(at('2025-03-10T05:00:00Z'))), '2025-03-10T06:30:00.000Z');
    });

    it('fires a fixed interval at multiples since the epoch, the same on every instance', () => {
      const fiveMin = createTiming({ kind: 'interval', seconds: 300 });
      assert.equal(iso(fiveMin.next(at('2025-01-01T10:02:17.5Z'))), '2025-01-01T10:05:00.000Z');
      assert.equal(iso(fiveMin.next(at('2025-01-01T10:05:00Z'))), '2025-01-01T10:10:00.000Z');
      assert.equal(iso(fiveMin.latest(at('2025-01-01T10:05:00Z'))), '2025-01-01T10:05:00.000Z');
    });

    it('refuses a bad expression, an unknown zone and an interval out of bounds, naming the problem', () => {
      assert.throws(
        () => createTiming({ kind: 'cron', expression: '* * *' }),
        (err: Error) => err instanceof ScheduleError && /five, six, or seven/.test(err.message),
      );
      assert.throws(() => createTiming({ kind: 'cron', expression: '61 * * * * *' }), ScheduleError);
      assert.throws(() => createTiming({ kind: 'cron', expression: '' }), /empty/);
      assert.throws(() => createTiming({ kind: 'cron', expression: '* * * * *', timezone: 'Mars/Olympus' }), /unknown time zone "Mars\/Olympus"/);
      assert.throws(() => createTiming({ kind: 'cron', expression: '0 0 0 1 1 * 2001' }), /never fires again/);
      assert.throws(() => createTiming({ kind: 'interval', seconds: 0 }), ScheduleError);
      assert.throws(() => createTiming({ kind: 'interval', seconds: 1.5 }), ScheduleError);
    });

    it('shows the next run in the schedule’s zone, with the date when it is not within a day', () => {
      const now = at('2025-01-15T07:00:00Z');
      assert.equal(formatFireTime(at('2025-01-15T08:15:30Z'), 'Europe/Berlin', now), '09:15:30');
      assert.equal(formatFireTime(at('2025-02-01T08:15:30Z'), 'Europe/Berlin', now), '2025-02-01 09:15:30');
    });
  });

  describe('the missed-run policy', () => {
    const every10s = createTiming({ kind: 'cron', expression: '*/10 * * * * *' });
    it('names the newest firing missed since the last one, and nothing when none was missed or none ever fired', () => {
      const now = at('2025-01-01T00:01:05Z');
      assert.equal(iso(missedFiring(every10s, at('2025-01-01T00:00:20Z'), now)), '2025-01-01T00:01:00.000Z');
      assert.equal(missedFiring(every10s, at('2025-01-01T00:01:00Z'), now), undefined);
      assert.equal(missedFiring(every10s, undefined, now), undefined);
    });

    for (const policy of ['run-once', 'skip'] as const) {
      it(`${policy}: ${policy === 'run-once' ? 'runs the missed firing once, at start' : 'waits for the next fire time'}`, async () => {
        const clock = new FakeClock(at('2025-01-01T00:01:05Z'));
        const ledger = memoryLedger(clock.now);
        await ledger.claim('k', at('2025-01-01T00:00:20Z'), 'before', 1000);
        await ledger.finish('k', at('2025-01-01T00:00:20Z'), 'done');
        const h = harness({ kind: 'cron', expression: '*/10 * * * * *' }, clock, { ledger, policy, instant: true });
        await h.scheduler.start();
        await settle();
        const expected = policy === 'run-once' ? [{ fireTime: '2025-01-01T00:01:00.000Z', catchUp: true }] : [];
        assert.deepEqual(
          h.runs.map((r) => ({ fireTime: iso(r.fireTime), catchUp: r.catchUp })),
          expected,
        );
        assert.equal(iso(h.scheduler.next), '2025-01-01T00:01:10.000Z');
        await clock.advanceTo(at('2025-01-01T00:01:10Z'));
        assert.deepEqual(
          h.runs.slice(expected.length).map((r) => ({ fireTime: iso(r.fireTime), catchUp: r.catchUp })),
          [{ fireTime: '2025-01-01T00:01:10.000Z', catchUp: false }],
        );
        await h.scheduler.stop();
      });
    }
  });

  describe('the scheduler', () => {
    it('fires at each fire time with the scheduled time, even when the timer wakes late', async () => {
      const clock = new FakeClock(at('2025-01-01T00:00:00.400Z'));
      const h = harness({ kind: 'cron', expression: '* * * * * *' }, clock, { instant: true });
      await h.scheduler.start();
      assert.equal(iso(h.scheduler.next), '2025-01-01T00:00:01.000Z', 'the status can show the next run');
      await clock.advanceTo(at('2025-01-01T00:00:03.000Z'));
      assert.deepEqual(
        h.runs.map((r) => r.runId),
        ['k@2025-01-01T00:00:01.000Z', 'k@2025-01-01T00:00:02.000Z', 'k@2025-01-01T00:00:03.000Z'],
      );
      // The event loop was blocked for 2.5 s: the newest fire time once, not each one passed.
      clock.t = at('2025-01-01T00:00:06.500Z');
      await clock.advanceTo(clock.t);
      assert.deepEqual(iso(h.runs.at(-1)!.fireTime), '2025-01-01T00:00:06.000Z');
      assert.equal(h.runs.length, 4);
      assert.equal(iso(h.scheduler.next), '2025-01-01T00:00:07.000Z');
      await h.scheduler.stop();
      assert.equal(clock.pending, 0, 'stop frees the timer');
      assert.equal(h.scheduler.next, undefined);
    });

    it('skips the firings while a run is going, counts them, and runs again once it ended', async () => {
      const clock = new FakeClock(at('2025-01-01T00:00:00.500Z'));
      const ledger = memoryLedger(clock.now);
      const h = harness({ kind: 'interval', seconds: 1 }, clock, { ledger });
      await h.scheduler.start();
      await clock.advanceTo(at('2025-01-01T00:00:03.500Z'));
      assert.deepEqual(
        h.runs.map((r) => iso(r.fireTime)),
        ['2025-01-01T00:00:01.000Z'],
        'one run, never a second while it is going',
      );
      assert.equal(h.scheduler.skipped, 2);
      assert.equal(h.scheduler.running?.fireTime, at('2025-01-01T00:00:01Z'));
      h.finish(0);
      await settle();
      assert.equal(h.scheduler.running, undefined);
      await clock.advanceTo(at('2025-01-01T00:00:04.000Z'));
      assert.deepEqual(
        h.runs.map((r) => iso(r.fireTime)),
        ['2025-01-01T00:00:01.000Z', '2025-01-01T00:00:04.000Z'],
      );
      assert.equal(h.scheduler.fired, 2);
      await h.scheduler.stop();
    });

    it('ends a run after the run timeout, so the next firing runs', async () => {
      const clock = new FakeClock(at('2025-01-01T00:00:00.500Z'));
      const h = harness({ kind: 'interval', seconds: 1 }, clock, { timeoutMs: 1500 });
      await h.scheduler.start();
      await clock.advanceTo(at('2025-01-01T00:00:02.000Z'));
      assert.equal(h.runs.length, 1, 'the firing at 2 s is skipped: the run from 1 s is going');
      await clock.advanceTo(at('2025-01-01T00:00:02.600Z'));
      assert.equal(h.scheduler.running, undefined, 'over 1.5 s after it started');
      assert.match(h.scheduler.lastError, /took longer than 1.5 s/);
      await clock.advanceTo(at('2025-01-01T00:00:03.000Z'));
      assert.deepEqual(
        h.runs.map((r) => iso(r.fireTime)),
        ['2025-01-01T00:00:01.000Z', '2025-01-01T00:00:03.000Z'],
      );
      assert.equal(h.scheduler.failed, 1);
      await h.scheduler.stop();
    });

    it('counts a failed run and carries on', async () => {
      const clock = new FakeClock(at('2025-01-01T00:00:00.500Z'));
      const h = harness({ kind: 'interval', seconds: 1 }, clock);
      await h.scheduler.start();
      await clock.advanceTo(at('2025-01-01T00:00:01.000Z'));
      h.finish(0, new Error('the pull failed'));
      await clock.advanceTo(at('2025-01-01T00:00:02.000Z'));
      assert.equal(h.runs.length, 2);
      assert.equal(h.scheduler.failed, 1);
      await h.scheduler.stop();
    });

    it('runs each firing once when two schedulers share a ledger and a key', async () => {
      const clock = new FakeClock(at('2025-01-01T00:00:00.500Z'));
      const ledger = memoryLedger(clock.now);
      const a = harness({ kind: 'cron', expression: '* * * * * *' }, clock, { ledger, instant: true });
      const b = harness({ kind: 'cron', expression: '* * * * * *' }, clock, { ledger, instant: true });
      await Promise.all([a.scheduler.start(), b.scheduler.start()]);
      await clock.advanceTo(at('2025-01-01T00:00:10.000Z'));
      const all = [...a.runs, ...b.runs].map((r) => iso(r.fireTime)).sort();
      assert.equal(all.length, 10);
      assert.equal(new Set(all).size, 10, 'no fire time ran twice');
      assert.equal(a.scheduler.elsewhere + b.scheduler.elsewhere, 10, 'the other one saw each firing taken');
      await Promise.all([a.scheduler.stop(), b.scheduler.stop()]);
    });

    it('records a run going at stop as stopped, so the next start need not wait for its lease', async () => {
      const clock = new FakeClock(at('2025-01-01T00:00:00.500Z'));
      const ledger = memoryLedger(clock.now);
      const first = harness({ kind: 'interval', seconds: 1 }, clock, { ledger, policy: 'skip' });
      await first.scheduler.start();
      await clock.advanceTo(at('2025-01-01T00:00:01.000Z'));
      assert.ok(first.scheduler.running);
      await first.scheduler.stop();
      const second = harness({ kind: 'interval', seconds: 1 }, clock, { ledger, policy: 'skip', instant: true });
      await second.scheduler.start();
      await clock.advanceTo(at('2025-01-01T00:00:02.000Z'));
      assert.deepEqual(
        second.runs.map((r) => iso(r.fireTime)),
        ['2025-01-01T00:00:02.000Z'],
      );
      await second.scheduler.stop();
    });
  });
});
