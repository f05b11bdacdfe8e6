/**
 * The storage tiers' interfaces (DESIGN.md, "Embedded defaults and real servers"). Each tier has
 * one interface and two implementations, the real server and the embedded default, so a tier
 * node is written once. Framework-free.
 *
 * Times are seconds since the epoch (SenML's t), as in the canonical message. Every read and
 * write names its tenant: nothing crosses tenants.
 */
import type { ResolvedRecord } from '../model/senml';

/** One resolved record with the tenant it belongs to (msg.device.tenant). */
export interface Reading {
  tenant: string;
  record: ResolvedRecord;
}

/** Short-term cache: latest value per (tenant, name) and a capped recent window per name. */
export interface ShortTermLimits {
  /** How long a name's latest value lives after its last write. */
  ttlSeconds: number;
  /** The window keeps at most this many records per name (newest by t). */
  windowSize: number;
  /** …and none older than this many seconds before the newest write. */
  windowSeconds: number;
}

export interface ShortTermStore {
  readonly kind: 'redis' | 'memory';
  /** Latest = greatest t per name (an older record arriving late does not replace it). */
  write(readings: readonly Reading[]): Promise<void>;
  latest(tenant: string, name: string): Promise<ResolvedRecord | undefined>;
  /** Latest records of every live name starting with prefix, in name order, at most limit. */
  latestByPrefix(tenant: string, prefix: string, limit?: number): Promise<ResolvedRecord[]>;
  /** The recent window of one name, oldest first. */
  window(tenant: string, name: string): Promise<ResolvedRecord[]>;
  close(): Promise<void>;
}

/** A time-series or rollup query. from is inclusive, to exclusive (seconds). */
export interface RangeQuery {
  tenant: string;
  /** Exactly one of name and prefix ('' matches every name). */
  name?: string;
  prefix?: string;
  from?: number;
  to?: number;
  /** 1..10000, default 1000. */
  limit?: number;
  /** Opaque, from the previous page; absent on the first. */
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  /** Present when there may be more: pass it back to get the next page. */
  cursor?: string;
}

export interface AppendResult {
  written: number;
  /** Readings the store refused for good (a bad document), with the reason; not retried. */
  rejected: { reading: Reading; reason: string }[];
}

export interface TimeSeriesStore {
  readonly kind: 'postgres' | 'pglite' | 'elasticsearch';
  append(readings: readonly Reading[]): Promise<AppendResult>;
  /** Records in (t, n) order, oldest first. */
  query(query: RangeQuery): Promise<Page<ResolvedRecord>>;
  /** Retention: drops readings older than cutoff (seconds); returns how many, when known. */
  dropBefore(cutoff: number): Promise<number | undefined>;
  close(): Promise<void>;
}

export type RollupSize = 'hour' | 'day';

export interface Rollup {
  n: string;
  size: RollupSize;
  /** Bucket start, seconds since the epoch (UTC hour or day). */
  bucket: number;
  count: number;
  min: number;
  max: number;
  sum: number;
  avg: number;
  last: number;
  /** Time of `last`. */
  lastT: number;
}

export interface LongTermStore {
  /** Folds numeric (v) records into their hour and day rollups; others are ignored. */
  add(readings: readonly Reading[]): Promise<number>;
  /** Rollups of one size in (bucket, n) order. */
  query(query: RangeQuery & { size: RollupSize }): Promise<Page<Rollup>>;
}
