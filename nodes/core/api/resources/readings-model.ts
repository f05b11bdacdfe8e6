/**
 * Seed 004's four data sets read back from the time-series tier. Readings are stored as resolved
 * SenML records named `<deviceId>/<sensorId>/<quantity>` (codecs/eapi.ts maps the cloud logger's
 * messages to them):
 *
 *   measurement  one numeric record                        <dev>/<sensor>/<unitType>, v, u
 *   geodata      latitude + longitude (+ accuracy) records <dev>/<sensor>/latitude|longitude|accuracy
 *   occurrence   <dev>/<sensor>/<typeName> vs newState (+ .../previous vs previousState)
 *   deviation    <dev>/<sensor>/deviation/<type> vb enter|leave (+ /reason, /limitzone vs)
 *
 * Records of one device and sensor at one time form a block: the store returns records in (t, n)
 * order, and names sharing the prefix `<dev>/<sensor>/` are contiguous in byte order, so a block
 * arrives in one run. Items are built per block, so a page never splits a geodata point or a
 * deviation. The API's cursor is its own: the position (t, block, items of that block already
 * returned), since a page boundary may fall inside a block and the store's cursor knows records,
 * not items. The next page queries the store from t again and skips what came before.
 * Records of other shapes are left out (reading them is the device-wide query's business only
 * when they fit a kind). Framework-free.
 */
import { formatEapiTime, normalizeSensorId } from '../../codecs/eapi';
import type { ResolvedRecord } from '../../model/senml';
import { compareUtf8 } from '../../stores/short-term-memory';
import { MAX_LIMIT } from '../../stores/query';
import type { TimeSeriesStore } from '../../stores/types';
import { ApiError } from '../operation';

export type ReadingKind = 'measurements' | 'geodata' | 'occurrences' | 'deviations';
export const READING_KINDS: readonly ReadingKind[] = ['measurements', 'geodata', 'occurrences', 'deviations'];

/** SenML units back to the cloud logger's unit tokens. */
export const EAPI_UNITS: Readonly<Record<string, string>> = { Cel: '°C', K: 'K', degF: '°F', '%RH': '%', '%': '%' };
const DEVIATION_TYPES: ReadonlySet<string> = new Set(['battery', 'failure', 'missing', 'radio', 'limit']);

/** The sensor id as seed 004 gives it: an Int64 (a number while exact), else the name's text. */
export function sensorIdOf(segment: string): number | string {
  if (!/^[+-]?\d+$/.test(segment)) return segment;
  try {
    return normalizeSensorId(segment);
  } catch {
    return segment;
  }
}

export type Item = Record<string, unknown>;

const isGeo = (r: ResolvedRecord, q: string) => r.v !== undefined && (r.u === 'lat' || r.u === 'lon' || (q === 'accuracy' && r.u === 'm'));

/** The items of kind in one block (records of one device and sensor at one time, in name order). */
export function itemsOf(kind: ReadingKind, records: readonly ResolvedRecord[], v2: boolean): Item[] {
  if (records.length === 0) return [];
  const [deviceId, sid] = records[0].n.split('/');
  const sensorId = sensorIdOf(sid);
  const timeStamp = formatEapiTime(records[0].t);
  const common = { sensorId, deviceId, timeStamp };
  // Measurements stand alone; the other kinds join a record with its companions by name.
  const byName = kind === 'measurements' ? undefined : new Map(records.map((r) => [r.n, r]));
  const out: Item[] = [];
  for (const r of records) {
    const parts = r.n.split('/');
    if (parts.length < 3) continue;
    const q = parts[2];
    if (kind === 'measurements' && parts.length === 3 && r.v !== undefined && !isGeo(r, q)) {
      const item: Item = { sensorId, deviceId, timeStamp, value: r.v, unit: r.u === undefined ? '' : (EAPI_UNITS[r.u] ?? r.u), unitType: q };
      if (v2) {
        item.name = r.n;
        if (r.u !== undefined) item.senmlUnit = r.u;
      }
      out.push(item);
    } else if (kind === 'occurrences' && parts.length === 3 && r.vs !== undefined) {
      const previous = byName!.get(`${r.n}/previous`)?.vs;
      const item: Item = { ...common, typeName: q, newState: r.vs, ...(previous !== undefined ? { previousState: previous } : {}) };
      if (v2) item.name = r.n;
      out.push(item);
    } else if (kind === 'deviations' && parts.length === 4 && q === 'deviation' && r.vb !== undefined && DEVIATION_TYPES.has(parts[3])) {
      const limitzone = byName!.get(`${r.n}/limitzone`)?.vs;
      const item: Item = {
        ...common,
        historyType: r.vb ? 'enter' : 'leave',
        deviationType: parts[3],
        reason: byName!.get(`${r.n}/reason`)?.vs ?? '',
        ...(limitzone !== undefined ? { limitzone } : {}),
      };
      if (v2) item.name = r.n;
      out.push(item);
    }
  }
  if (kind === 'geodata') {
    const base = `${deviceId}/${sid}`;
    const lat = byName!.get(`${base}/latitude`);
    const lon = byName!.get(`${base}/longitude`);
    const acc = byName!.get(`${base}/accuracy`);
    if (lat?.u === 'lat' && lon?.u === 'lon' && lat.v !== undefined && lon.v !== undefined) {
      const item: Item = { ...common, latitude: lat.v, longitude: lon.v, ...(acc?.u === 'm' && acc.v !== undefined ? { accuracy: acc.v } : {}) };
      if (v2) item.name = base;
      out.push(item);
    }
  }
  return out;
}

// ─── Paging ───────────────────────────────────────────────────────────────────────────────

/** Where a page stopped: the block at t and skip items of it already returned. */
export interface Position {
  t: number;
  block: string;
  skip: number;
}

const TAG = 'rd1';

export function encodePosition(kind: ReadingKind, p: Position): string {
  return Buffer.from(JSON.stringify([TAG, kind, p.t, p.block, p.skip])).toString('base64url');
}

/** The position of a cursor this kind's query returned; 400 naming `cursor` otherwise. */
export function decodePosition(kind: ReadingKind, cursor: string): Position {
  let v: unknown;
  try {
    v = cursor.length <= 2000 && /^[A-Za-z0-9_-]+$/.test(cursor) ? JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) : undefined;
  } catch {
    v = undefined;
  }
  if (
    !Array.isArray(v) ||
    v.length !== 5 ||
    v[0] !== TAG ||
    v[1] !== kind ||
    typeof v[2] !== 'number' ||
    !Number.isFinite(v[2]) ||
    typeof v[3] !== 'string' ||
    !Number.isSafeInteger(v[4]) ||
    v[4] < 0
  ) {
    throw new ApiError('invalid-request', `cursor is not one a ${kind} query returned`, 'cursor');
  }
  return { t: v[2], block: v[3], skip: v[4] };
}

/** The block a record belongs to: its `<dev>/<sensor>` (a shorter name is a block of its own). */
function blockOf(n: string): string {
  const a = n.indexOf('/');
  const b = a < 0 ? -1 : n.indexOf('/', a + 1);
  return b < 0 ? n : n.slice(0, b);
}

const before = (t: number, block: string, p: Position) => t < p.t || (t === p.t && compareUtf8(block, p.block) < 0);

export interface ReadingQuery {
  tenant: string;
  kind: ReadingKind;
  /** `<serial>/` or `<serial>/<sensorId>/`. */
  prefix: string;
  from?: number;
  to?: number;
  limit: number;
  cursor?: string;
  v2: boolean;
  /** Most records read from the store for one page before it returns what it has (with a cursor). */
  scanBudget?: number;
}

/** One page of items of a kind, in (time, device/sensor, name) order. */
export async function readPage(store: TimeSeriesStore, q: ReadingQuery): Promise<{ items: Item[]; cursor?: string }> {
  const start = q.cursor === undefined ? undefined : decodePosition(q.kind, q.cursor);
  const from = start === undefined ? q.from : Math.max(q.from ?? -Infinity, start.t);
  const budget = q.scanBudget ?? 5 * MAX_LIMIT;
  const storeLimit = Math.min(MAX_LIMIT, Math.max(100, q.limit * 4 + 16));
  const items: Item[] = [];
  let done: Position | undefined = start; // the end of the last block taken whole
  let scanned = 0;
  let storeCursor: string | undefined;
  let block: { t: number; key: string; records: ResolvedRecord[] } | undefined;

  /** Takes a complete block; returns the position to stop at when the page is full. */
  const take = (b: { t: number; key: string; records: ResolvedRecord[] }): Position | undefined => {
    if (start && before(b.t, b.key, start)) return undefined; // re-read from start.t: came before
    const all = itemsOf(q.kind, b.records, q.v2);
    const first = start && b.t === start.t && b.key === start.block ? start.skip : 0;
    for (let i = first; i < all.length; i++) {
      if (items.length === q.limit) return { t: b.t, block: b.key, skip: i };
      items.push(all[i]);
    }
    done = { t: b.t, block: b.key, skip: Math.max(all.length, first) };
    return undefined;
  };

  for (;;) {
    const result = await store.query({ tenant: q.tenant, prefix: q.prefix, from, to: q.to, limit: storeLimit, cursor: storeCursor }).catch((err: unknown) => {
      throw err instanceof RangeError ? new ApiError('invalid-request', err.message, 'cursor') : err;
    });
    for (const r of result.items) {
      scanned++;
      const key = blockOf(r.n);
      if (block && block.t === r.t && block.key === key) {
        block.records.push(r);
        continue;
      }
      if (block) {
        const stop = take(block);
        if (stop) return { items, cursor: encodePosition(q.kind, stop) };
        // Scanned enough: stop between blocks; the next page starts after this one. (A full page
        // reads on to the next item of its kind, so that it says "no more" when there is none.)
        if (scanned >= budget && done !== start) return { items, cursor: encodePosition(q.kind, done!) };
      }
      block = { t: r.t, key, records: [r] };
    }
    storeCursor = result.cursor;
    if (!storeCursor) break;
  }
  if (block) {
    const stop = take(block);
    if (stop) return { items, cursor: encodePosition(q.kind, stop) };
  }
  return { items };
}
