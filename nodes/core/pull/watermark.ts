/**
 * The watermark of a pulled source: how far the pull has taken it, and which items it has taken
 * there, so that the next request (the watermark sent as a query parameter) neither skips nor
 * repeats.
 *
 *   timestamp   the largest value at the item's watermark path (ISO 8601 text or a number)
 *   id          the largest id-like value there (numbers, numeric text, else text order)
 *   cursor      an opaque value the source returns in the body (a sync token, the next cursor)
 *
 * Sources are asked for items at or after the watermark: several items may share one timestamp
 * and arrive in different runs, so the ids taken at the watermark value (the boundary) are kept
 * with it and filtered out when the source returns them again. Items below the watermark of the
 * run's start were taken before (or the source ignores the parameter) and are dropped too. With
 * a cursor the boundary is the previous batch's ids. Everything here is pure.
 */
import { keyOf, valueAt } from './path';

export type WatermarkKind = 'timestamp' | 'id' | 'cursor';
export const WATERMARK_KINDS: readonly WatermarkKind[] = ['timestamp', 'id', 'cursor'];

/** Most ids kept at the boundary: more items than this sharing one timestamp may repeat. */
export const MAX_BOUNDARY = 10_000;

export interface WatermarkState {
  /** What is sent to the source; null before the first batch. */
  value: string | number | null;
  /** Ids already taken at `value` (cursor: the previous batch's ids). */
  boundary: string[];
}

export const EMPTY_WATERMARK: WatermarkState = { value: null, boundary: [] };

export interface WatermarkConfig {
  kind: WatermarkKind;
  /** Path of an item's id; empty: the item's JSON text is its identity. */
  idPath: string;
  /** timestamp, id: path of the value in each item. cursor: path in the page's body. */
  valuePath: string;
}

type Comparable = number | bigint | string;

function comparable(kind: WatermarkKind, value: string | number): Comparable {
  if (typeof value === 'number') return value;
  if (kind === 'timestamp') {
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) return ms;
    const n = Number(value);
    return Number.isFinite(n) && value.trim() !== '' ? n : value;
  }
  if (/^-?\d{1,300}$/.test(value)) return BigInt(value);
  return value;
}

/** <0, 0, >0; numbers before text when the kinds differ (a source should not mix them). */
export function compareMarks(kind: WatermarkKind, a: string | number, b: string | number): number {
  const x = comparable(kind, a);
  const y = comparable(kind, b);
  if (typeof x === 'string' || typeof y === 'string') {
    if (typeof x !== 'string') return -1;
    if (typeof y !== 'string') return 1;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The item's watermark value, or undefined when it has none (it is then taken, but moves nothing). */
function markOf(item: unknown, path: string): string | number | undefined {
  const v = valueAt(item, path);
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && v !== '') return v;
  return undefined;
}

export function idOf(item: unknown, idPath: string): string {
  if (idPath.trim() === '') return JSON.stringify(item) ?? 'undefined';
  return keyOf(valueAt(item, idPath)) ?? JSON.stringify(valueAt(item, idPath)) ?? 'undefined';
}

export interface Admitted {
  /** The items not taken before, in the source's order. */
  fresh: unknown[];
  /** Items dropped as already taken (within the run, at the boundary, or below the watermark). */
  duplicates: number;
  /** The watermark once `fresh` is stored. */
  next: WatermarkState;
}

/**
 * Sorts one page's items into fresh and taken, and the watermark after them. `current` is the
 * watermark the page continues from (committed, or advanced by the run's earlier pages); `floor`
 * the one the run started from; `seen` the ids the run has taken so far (updated).
 */
export function admit(
  config: WatermarkConfig,
  items: readonly unknown[],
  current: WatermarkState,
  floor: WatermarkState,
  seen: Set<string>,
  pageBody?: unknown,
): Admitted {
  const boundary = new Set(current.boundary);
  const fresh: unknown[] = [];
  const freshMarks: Array<{ id: string; mark: string | number | undefined }> = [];
  let duplicates = 0;
  for (const item of items) {
    const id = idOf(item, config.idPath);
    const mark = config.kind === 'cursor' ? undefined : markOf(item, config.valuePath);
    const stale = mark !== undefined && floor.value !== null && compareMarks(config.kind, mark, floor.value) < 0;
    if (seen.has(id) || boundary.has(id) || stale) {
      duplicates++;
      continue;
    }
    seen.add(id);
    fresh.push(item);
    freshMarks.push({ id, mark });
  }
  return { fresh, duplicates, next: advance(config, current, freshMarks, pageBody) };
}

function advance(
  config: WatermarkConfig,
  current: WatermarkState,
  taken: ReadonlyArray<{ id: string; mark: string | number | undefined }>,
  pageBody: unknown,
): WatermarkState {
  if (config.kind === 'cursor') {
    const cursor = markOf(pageBody, config.valuePath) ?? current.value;
    const ids = taken.length > 0 ? taken.map((t) => t.id) : cursor === current.value ? current.boundary : [];
    return { value: cursor, boundary: ids.slice(-MAX_BOUNDARY) };
  }
  let top = current.value;
  for (const { mark } of taken) if (mark !== undefined && (top === null || compareMarks(config.kind, mark, top) > 0)) top = mark;
  if (top === null) return current;
  const atTop = taken.filter((t) => t.mark !== undefined && compareMarks(config.kind, t.mark, top) === 0).map((t) => t.id);
  // Still at the same value: the items taken there earlier stay taken.
  const boundary = current.value !== null && compareMarks(config.kind, top, current.value) === 0 ? [...current.boundary, ...atTop] : atTop;
  return { value: top, boundary: boundary.slice(-MAX_BOUNDARY) };
}
