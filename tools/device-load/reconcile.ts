/**
 * What a DeviceLoad counted against what the database holds: per phase and transport, the
 * readings acknowledged, found, lost (acknowledged, not stored), stored more than once; and
 * whether the rollups (hour and day: count and sum) agree with the stored readings. Reads the
 * readings table and rollups of the load's names only, on PostgreSQL or PGlite alike.
 */
import type { SqlClient } from '../../nodes/core/db/sql';
import { LOAD_TRANSPORTS, type LoadTransport, type Reading } from './load';

export interface TransportTally {
  /** Readings the devices made. */
  sent: number;
  acked: number;
  /** Acknowledged readings found in the readings table (once or more). */
  stored: number;
  /** Acknowledged and not stored. */
  lost: number;
  /** Rows beyond the first of one reading, acknowledged or not. */
  duplicates: number;
  /** Not acknowledged, yet stored (allowed: the platform died between commit and acknowledgement). */
  storedUnacked: number;
  /** Rows under the load's names that match no reading it made, or with another device time. */
  strangers: number;
  /** The lost readings, and those stored more than once. */
  lostReadings: Reading[];
  duplicated: Reading[];
}

export interface RollupMismatch {
  name: string;
  size: 'hour' | 'day';
  /** ISO time of the bucket start. */
  bucket: string;
  readings: { count: number; sum: number };
  rollup: { count: number; sum: number } | undefined;
}

export interface PhaseReport {
  phase: string;
  transports: Record<LoadTransport, TransportTally>;
  /** Buckets whose rollup disagrees with the readings stored in it (or has none, or has no readings). */
  rollupMismatches: RollupMismatch[];
}

function tally(): TransportTally {
  return { sent: 0, acked: 0, stored: 0, lost: 0, duplicates: 0, storedUnacked: 0, strangers: 0, lostReadings: [], duplicated: [] };
}

const byName = <T extends { name: string }>(rows: T[]) => {
  const map = new Map<string, T[]>();
  for (const r of rows) (map.get(r.name) ?? map.set(r.name, []).get(r.name)!).push(r);
  return map;
};

/** One report per phase of the readings (in order of first appearance). */
export async function reconcile(sql: SqlClient, readings: readonly Reading[]): Promise<PhaseReport[]> {
  const phases = [...new Set(readings.map((r) => r.phase))];
  const reports = new Map<string, PhaseReport>(
    phases.map((phase) => [
      phase,
      { phase, transports: Object.fromEntries(LOAD_TRANSPORTS.map((t) => [t, tally()])) as Record<LoadTransport, TransportTally>, rollupMismatches: [] },
    ]),
  );
  const tenants = [...new Set(readings.map((r) => r.tenant))];
  for (const tenant of tenants) {
    const ours = readings.filter((r) => r.tenant === tenant);
    const names = [...byName(ours).keys()];
    const { rows } = await sql.query<{ name: string; v: number | null; us: string }>(
      `SELECT name, v, (extract(epoch FROM t) * 1000000)::bigint::text AS us FROM readings WHERE tenant_id = $1 AND name = ANY($2::text[])`,
      [tenant, names],
    );
    // name -> v -> device times (µs) of the rows holding that value
    const stored = new Map<string, Map<number | null, number[]>>();
    for (const row of rows) {
      const values = stored.get(row.name) ?? stored.set(row.name, new Map()).get(row.name)!;
      (values.get(row.v) ?? values.set(row.v, []).get(row.v)!).push(Number(row.us));
    }
    const known = new Set<string>();
    for (const r of ours) {
      const t = reports.get(r.phase)!.transports[r.transport];
      const key = `${r.name}\u0000${r.v}`;
      known.add(key);
      t.sent++;
      if (r.acked) t.acked++;
      const times = stored.get(r.name)?.get(r.v) ?? [];
      const us = Math.round(r.t * 1e6);
      const same = times.filter((x) => Math.abs(x - us) <= 1).length;
      t.strangers += times.length - same;
      if (same > 0) {
        if (r.acked) t.stored++;
        else t.storedUnacked++;
      } else if (r.acked) {
        t.lost++;
        t.lostReadings.push(r);
      }
      if (same > 1) {
        t.duplicates += same - 1;
        t.duplicated.push(r);
      }
    }
    const first = new Map(ours.map((r) => [r.name, r]));
    for (const row of rows) {
      if (known.has(`${row.name}\u0000${row.v}`)) continue;
      const r = first.get(row.name)!;
      reports.get(r.phase)!.transports[r.transport].strangers++;
    }

    // Rollups against the readings as stored (whatever the tally above found).
    const expected = await sql.query<{ name: string; size: 'hour' | 'day'; bucket: Date; count: number; sum: number }>(
      `SELECT name, size, bucket, count(*)::int AS count, sum(v) AS sum FROM (
         SELECT name, s.size, date_trunc(s.size, t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, v
           FROM readings CROSS JOIN (VALUES ('hour'), ('day')) AS s(size)
          WHERE tenant_id = $1 AND name = ANY($2::text[]) AND v IS NOT NULL) x
       GROUP BY name, size, bucket`,
      [tenant, names],
    );
    const actual = await sql.query<{ name: string; size: 'hour' | 'day'; bucket: Date; count: number; sum: number }>(
      `SELECT name, size, bucket, count::int AS count, sum FROM rollups WHERE tenant_id = $1 AND name = ANY($2::text[])`,
      [tenant, names],
    );
    const key = (r: { name: string; size: string; bucket: Date }) => `${r.name}\u0000${r.size}\u0000${r.bucket.toISOString()}`;
    const rollups = new Map(actual.rows.map((r) => [key(r), r]));
    const mismatch = (name: string, m: RollupMismatch) => reports.get(first.get(name)!.phase)!.rollupMismatches.push(m);
    for (const e of expected.rows) {
      const a = rollups.get(key(e));
      rollups.delete(key(e));
      const sum = Number(e.sum);
      if (a && a.count === e.count && Math.abs(Number(a.sum) - sum) <= 1e-9 * Math.max(1, Math.abs(sum))) continue;
      mismatch(e.name, {
        name: e.name,
        size: e.size,
        bucket: e.bucket.toISOString(),
        readings: { count: e.count, sum },
        rollup: a && { count: a.count, sum: Number(a.sum) },
      });
    }
    for (const a of rollups.values()) {
      mismatch(a.name, {
        name: a.name,
        size: a.size,
        bucket: a.bucket.toISOString(),
        readings: { count: 0, sum: 0 },
        rollup: { count: a.count, sum: Number(a.sum) },
      });
    }
  }
  return phases.map((p) => reports.get(p)!);
}

/** Whether the phase kept its promise: nothing acknowledged lost, nothing twice, rollups equal. */
export function phaseKept(report: PhaseReport): boolean {
  return (
    report.rollupMismatches.length === 0 &&
    LOAD_TRANSPORTS.every((t) => {
      const x = report.transports[t];
      return x.lost === 0 && x.duplicates === 0 && x.strangers === 0 && x.acked === x.sent;
    })
  );
}

/** "http acked 812 stored 812, tcp acked 950 stored 947 (lost 3, duplicates 2), …; rollups agree" */
export function describePhase(report: PhaseReport): string {
  const parts = LOAD_TRANSPORTS.filter((t) => report.transports[t].sent > 0).map((t) => {
    const x = report.transports[t];
    const faults = [
      x.acked < x.sent ? `never acknowledged ${x.sent - x.acked}` : '',
      x.lost ? `lost ${x.lost}` : '',
      x.duplicates ? `duplicates ${x.duplicates}` : '',
      x.strangers ? `unexpected rows ${x.strangers}` : '',
    ].filter(Boolean);
    return `${t} acked ${x.acked} stored ${x.stored}${faults.length ? ` (${faults.join(', ')})` : ''}`;
  });
  const m = report.rollupMismatches;
  const rollups = m.length === 0 ? 'rollups agree' : `rollups disagree in ${m.length} buckets (${describeMismatch(m[0])}${m.length > 1 ? ', …' : ''})`;
  return `${parts.join(', ')}; ${rollups}`;
}

/** A few lost and duplicated readings and a rollup that disagrees: for a failure message. */
export function examples(report: PhaseReport, max = 6): string[] {
  const out: string[] = [];
  for (const t of LOAD_TRANSPORTS) {
    const x = report.transports[t];
    for (const r of x.lostReadings.slice(0, 2)) out.push(`${t} lost: ${r.name} v=${r.v} (sent ${r.attempts}×)`);
    for (const r of x.duplicated.slice(0, 2)) out.push(`${t} twice or more: ${r.name} v=${r.v} (sent ${r.attempts}×)`);
  }
  if (report.rollupMismatches.length > 0) out.push(describeMismatch(report.rollupMismatches[0]));
  return out.slice(0, max);
}

function describeMismatch(m: RollupMismatch): string {
  const r = m.rollup ? `rollup count ${m.rollup.count} sum ${m.rollup.sum}` : 'no rollup';
  return `${m.name} ${m.size} ${m.bucket}: readings count ${m.readings.count} sum ${m.readings.sum}, ${r}`;
}
