/**
 * Who runs a firing. Every instance that sees a fire time come asks the ledger to claim it; the
 * ledger answers `claimed` to exactly one of them, `taken` to the others, and `busy` (the firing
 * is recorded as skipped) while an earlier run of the same schedule is still going anywhere. The
 * ledger also remembers when a schedule last fired, for the missed-run policy after a restart.
 *
 * On PostgreSQL (or PGlite) the claims are rows of schedule_runs (migration 008), taken under a
 * transaction-scoped advisory lock per schedule key, so instances on one database agree. Without
 * a database the ledger lives in this process: it survives a redeploy, not a restart.
 */
import { createHash } from 'node:crypto';
import type { SqlClient } from '../db/sql';

export type ClaimOutcome = 'claimed' | 'taken' | 'busy';
export type RunOutcome = 'done' | 'failed' | 'timeout' | 'stopped';

export interface ScheduleLedger {
  readonly kind: 'database' | 'in-process';
  /** The newest fire time claimed (run or skipped) for `key`, in ms since the epoch. */
  lastFire(key: string): Promise<number | undefined>;
  /**
   * Claims the firing (key, fireTime) for `owner`. A run claimed here counts as going until
   * finish() or until `leaseMs` have passed (an instance that died mid-run).
   */
  claim(key: string, fireTime: number, owner: string, leaseMs: number): Promise<ClaimOutcome>;
  /** Ends the run of a claimed firing. */
  finish(key: string, fireTime: number, outcome: RunOutcome): Promise<void>;
}

/** How long claimed firings are kept (the newest of a key is kept always). */
export const KEEP_MS = 86_400_000;
const PRUNE_EVERY_MS = 600_000;

/** A schedule key as an int8 for pg_advisory_xact_lock: the same on every instance. */
export function lockKey(key: string): string {
  return createHash('sha256').update(`conflux-schedule:${key}`).digest().readBigInt64BE(0).toString();
}

/** The ledger in schedule_runs of a migrated database. */
export function databaseLedger(sql: () => Promise<SqlClient>): ScheduleLedger {
  const pruned = new Map<string, number>();
  return {
    kind: 'database',
    async lastFire(key) {
      const { rows } = await (await sql()).query<{ t: Date | null }>('SELECT max(fire_time) AS t FROM schedule_runs WHERE schedule_key = $1', [key]);
      return rows[0]?.t ? rows[0].t.getTime() : undefined;
    },
    async claim(key, fireTime, owner, leaseMs) {
      const db = await sql();
      const at = new Date(fireTime);
      const outcome = await db.transaction(async (tx) => {
        // Serialises the claims of one key across instances: the overlap check and the insert are one step.
        await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [lockKey(key)]);
        const seen = await tx.query('SELECT 1 FROM schedule_runs WHERE schedule_key = $1 AND fire_time = $2', [key, at]);
        if (seen.rowCount > 0) return 'taken' as const;
        const going = await tx.query('SELECT 1 FROM schedule_runs WHERE schedule_key = $1 AND finished_at IS NULL AND lease_until > now() LIMIT 1', [key]);
        if (going.rowCount > 0) {
          await tx.query(
            `INSERT INTO schedule_runs (schedule_key, fire_time, claimed_by, lease_until, finished_at, outcome)
             VALUES ($1, $2, $3, now(), now(), 'skipped')`,
            [key, at, owner],
          );
          return 'busy' as const;
        }
        await tx.query(
          `INSERT INTO schedule_runs (schedule_key, fire_time, claimed_by, lease_until)
           VALUES ($1, $2, $3, now() + $4::float8 * interval '1 millisecond')`,
          [key, at, owner, leaseMs],
        );
        return 'claimed' as const;
      });
      if ((pruned.get(key) ?? 0) + PRUNE_EVERY_MS <= Date.now()) {
        pruned.set(key, Date.now());
        await db.query('DELETE FROM schedule_runs WHERE schedule_key = $1 AND fire_time < $2 AND finished_at IS NOT NULL', [key, new Date(fireTime - KEEP_MS)]);
      }
      return outcome;
    },
    async finish(key, fireTime, outcome) {
      await (
        await sql()
      ).query('UPDATE schedule_runs SET finished_at = now(), outcome = $3 WHERE schedule_key = $1 AND fire_time = $2 AND finished_at IS NULL', [
        key,
        new Date(fireTime),
        outcome,
      ]);
    },
  };
}

interface Claims {
  last?: number;
  /** Fire times claimed, recent ones only: a second claim of one of them is `taken`. */
  seen: Set<number>;
  /** The run going: its fire time and when its lease ends. */
  going?: { fireTime: number; until: number };
}

/** The ledger of one process, shared by every schedule in it (a redeploy keeps it). */
export function memoryLedger(now: () => number = Date.now): ScheduleLedger {
  const keys = new Map<string, Claims>();
  const of = (key: string): Claims => {
    let c = keys.get(key);
    if (!c) keys.set(key, (c = { seen: new Set() }));
    return c;
  };
  return {
    kind: 'in-process',
    lastFire: (key) => Promise.resolve(keys.get(key)?.last),
    claim(key, fireTime, _owner, leaseMs) {
      const c = of(key);
      if (c.seen.has(fireTime)) return Promise.resolve('taken');
      c.seen.add(fireTime);
      if (c.seen.size > 100) c.seen.delete(c.seen.values().next().value as number); // oldest first: a Set keeps insertion order
      c.last = Math.max(c.last ?? fireTime, fireTime);
      if (c.going && c.going.until > now()) return Promise.resolve('busy');
      c.going = { fireTime, until: now() + leaseMs };
      return Promise.resolve('claimed');
    },
    finish(key, fireTime) {
      const c = keys.get(key);
      if (c?.going?.fireTime === fireTime) c.going = undefined;
      return Promise.resolve();
    },
  };
}

/** The in-process ledger every node without a database shares. */
export const processLedger: ScheduleLedger = memoryLedger();
