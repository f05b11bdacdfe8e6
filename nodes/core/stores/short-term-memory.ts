/**
 * The short-term cache tier's embedded default (DESIGN.md, "Embedded defaults and real servers"):
 * the ShortTermStore of types.ts in process memory, with the semantics of the Redis store
 * (short-term-redis.ts), which shares this file's write planning so the two cannot drift:
 *
 * - latest(tenant, name): the record with the greatest t; an older record arriving late does not
 *   replace it, an equal t does (the later write wins). It expires ttlSeconds after it was last
 *   replaced; an expired latest is gone, so any record replaces it.
 * - window(tenant, name): records ordered by (t, then their JSON text in byte order, as a Redis
 *   sorted set orders equal scores), oldest first; at most windowSize, none with t older than
 *   windowSeconds before the newest t in it. Identical records collapse into one. The window
 *   expires max(ttlSeconds, windowSeconds) after the last write to the name.
 * - latestByPrefix: live names starting with prefix, in byte (UTF-8, i.e. code point) order.
 * - Records are kept as their JSON text and parsed on read, so a reader gets exactly what Redis
 *   would give back (a copy, never the writer's object).
 *
 * Memory is bounded: at most maxNames (tenant, name) entries across all tenants, evicting the
 * least recently written; dead entries are dropped when a read meets them and by a sweep on an
 * unref'd timer that close() clears. Framework-free.
 */
import type { ResolvedRecord } from '../model/senml';
import type { Reading, ShortTermLimits, ShortTermStore } from './types';

export const DEFAULT_MAX_NAMES = 100_000;
export const DEFAULT_PREFIX_LIMIT = 1000;

/** Throws a TypeError unless the limits are usable; returns them in milliseconds as both stores need. */
export function checkLimits(limits: ShortTermLimits): { ttlMs: number; windowTtlMs: number } {
  const { ttlSeconds, windowSize, windowSeconds } = limits;
  if (!(typeof ttlSeconds === 'number' && Number.isFinite(ttlSeconds) && ttlSeconds > 0)) {
    throw new TypeError('short-term ttlSeconds must be a positive number');
  }
  if (!(Number.isSafeInteger(windowSize) && windowSize >= 0)) {
    throw new TypeError('short-term windowSize must be a non-negative integer');
  }
  if (!(typeof windowSeconds === 'number' && Number.isFinite(windowSeconds) && windowSeconds >= 0)) {
    throw new TypeError('short-term windowSeconds must be a non-negative number');
  }
  const ms = (s: number) => Math.max(1, Math.round(s * 1000));
  return { ttlMs: ms(ttlSeconds), windowTtlMs: ms(Math.max(ttlSeconds, windowSeconds)) };
}

/** Checks a latestByPrefix limit (default 1000). */
export function checkPrefixLimit(limit: number | undefined): number {
  const n = limit ?? DEFAULT_PREFIX_LIMIT;
  if (!(Number.isSafeInteger(n) && n >= 0)) throw new TypeError('latestByPrefix limit must be a non-negative integer');
  return n;
}

/**
 * Compares strings in UTF-8 byte order (= code point order), as Redis compares members. JS `<`
 * compares UTF-16 code units, which puts U+E000..U+FFFF after the surrogate pairs of U+10000+.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        // Move surrogates (D800..DFFF) above E000..FFFF.
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** One window member: its t and its JSON text. */
export interface WindowItem {
  t: number;
  json: string;
}

const compareItems = (a: WindowItem, b: WindowItem): number => (a.t !== b.t ? a.t - b.t : compareUtf8(a.json, b.json));

/** What one write() does to one (tenant, name). */
export interface NamePlan {
  /** The batch's latest candidate: greatest t, the last one written on a tie. */
  latestT: number;
  latestJson: string;
  /** The batch's records in window order, de-duplicated and already cut to the limits (empty when windowSize is 0). */
  window: WindowItem[];
}

/**
 * Validates a batch and groups it by tenant and name. Cutting each name's records to the window
 * limits here is safe: whatever the store already holds, a record the batch alone pushes out of
 * the window (by count or by age) is out of the merged window too.
 */
export function planWrite(readings: readonly Reading[], limits: ShortTermLimits): Map<string, Map<string, NamePlan>> {
  if (!Array.isArray(readings)) throw new TypeError('short-term write takes an array of readings');
  const plan = new Map<string, Map<string, NamePlan>>();
  for (let i = 0; i < readings.length; i++) {
    const reading = readings[i];
    const record = reading?.record;
    if (typeof reading?.tenant !== 'string') throw new TypeError(`reading ${i}: tenant must be a string`);
    if (record === null || typeof record !== 'object') throw new TypeError(`reading ${i}: record must be an object`);
    if (typeof record.n !== 'string') throw new TypeError(`reading ${i}: record n must be a string`);
    if (typeof record.t !== 'number' || !Number.isFinite(record.t)) throw new TypeError(`reading ${i}: record t must be a finite number`);
    const json = JSON.stringify(record);
    let names = plan.get(reading.tenant);
    if (!names) plan.set(reading.tenant, (names = new Map()));
    const entry = names.get(record.n);
    if (!entry) {
      names.set(record.n, { latestT: record.t, latestJson: json, window: limits.windowSize > 0 ? [{ t: record.t, json }] : [] });
    } else {
      if (record.t >= entry.latestT) {
        entry.latestT = record.t;
        entry.latestJson = json;
      }
      if (limits.windowSize > 0) entry.window.push({ t: record.t, json });
    }
  }
  if (limits.windowSize > 0) {
    for (const names of plan.values()) {
      for (const entry of names.values()) {
        if (entry.window.length > 1) entry.window = trimWindow(entry.window.sort(compareItems), limits);
      }
    }
  }
  return plan;
}

/** Drops duplicates from a sorted window and cuts it to the limits (keeps the newest). */
function trimWindow(items: WindowItem[], limits: ShortTermLimits): WindowItem[] {
  const oldest = items[items.length - 1].t - limits.windowSeconds;
  const out: WindowItem[] = [];
  for (const item of items) {
    const last = out[out.length - 1];
    if (last && last.json === item.json) continue;
    out.push(item);
  }
  let start = Math.max(0, out.length - limits.windowSize);
  while (start < out.length && out[start].t < oldest) start++;
  return start === 0 ? out : out.slice(start);
}

/** Merges two sorted windows (duplicates collapse) and cuts the result to the limits. */
function mergeWindows(a: WindowItem[], b: WindowItem[], limits: ShortTermLimits): WindowItem[] {
  if (a.length === 0) return b;
  const merged: WindowItem[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && compareItems(a[i], b[j]) <= 0)) merged.push(a[i++]);
    else merged.push(b[j++]);
  }
  return trimWindow(merged, limits);
}

interface TenantEntry {
  id: string;
  names: Map<string, NameEntry>;
  /** The tenant's names in byte order, kept while prefix reads use it; undefined until one does. */
  sorted?: string[];
}

interface NameEntry {
  tenant: TenantEntry;
  name: string;
  latest?: string;
  latestT: number;
  latestExpires: number;
  window: WindowItem[];
  windowExpires: number;
}

/** First index in a sorted array whose name is >= key. */
function lowerBound(sorted: string[], key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareUtf8(sorted[mid], key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The in-process store also tells how many (tenant, name) entries it holds (for a status count). */
export interface MemoryShortTermStore extends ShortTermStore {
  readonly kind: 'memory';
  readonly size: number;
}

export function createMemoryShortTerm(limits: ShortTermLimits & { maxNames?: number }): MemoryShortTermStore {
  const { ttlMs, windowTtlMs } = checkLimits(limits);
  const maxNames = limits.maxNames ?? DEFAULT_MAX_NAMES;
  if (!(Number.isSafeInteger(maxNames) && maxNames > 0)) throw new TypeError('short-term maxNames must be a positive integer');
  const cut: ShortTermLimits = { ttlSeconds: limits.ttlSeconds, windowSize: limits.windowSize, windowSeconds: limits.windowSeconds };

  const tenants = new Map<string, TenantEntry>();
  /** Every entry, least recently written first (a Set keeps insertion order; a write re-inserts). */
  const order = new Set<NameEntry>();
  let closed = false;

  const isDead = (e: NameEntry, now: number) => now >= e.latestExpires && now >= e.windowExpires;

  function remove(e: NameEntry): void {
    const t = e.tenant;
    t.names.delete(e.name);
    order.delete(e);
    if (t.sorted) t.sorted.splice(lowerBound(t.sorted, e.name), 1);
    if (t.names.size === 0) tenants.delete(t.id);
  }

  function entryOf(tenant: string, name: string, now: number): NameEntry | undefined {
    const e = tenants.get(tenant)?.names.get(name);
    if (e && isDead(e, now)) {
      remove(e);
      return undefined;
    }
    return e;
  }

  function sweep(): void {
    const now = Date.now();
    for (const e of order) {
      if (isDead(e, now)) remove(e);
      else {
        // Free what has expired while the rest of the entry lives on.
        if (e.latest !== undefined && now >= e.latestExpires) e.latest = undefined;
        if (e.window.length > 0 && now >= e.windowExpires) e.window = [];
      }
    }
  }

  // A sweep costs one pass over the entries: as often as entries can expire, between 1 s and 1 min.
  const sweepMs = Math.min(60_000, Math.max(1_000, Math.min(ttlMs, windowTtlMs)));
  const timer = setInterval(sweep, sweepMs);
  timer.unref();

  const assertOpen = () => {
    if (closed) throw new Error('the short-term store is closed');
  };

  return {
    kind: 'memory',

    get size() {
      return order.size;
    },

    async write(readings) {
      assertOpen();
      const plan = planWrite(readings, cut);
      const now = Date.now();
      for (const [tenantId, names] of plan) {
        let tenant = tenants.get(tenantId);
        if (!tenant) tenants.set(tenantId, (tenant = { id: tenantId, names: new Map() }));
        for (const [name, p] of names) {
          let e = tenant.names.get(name);
          if (e && isDead(e, now)) {
            remove(e);
            e = undefined;
            if (!tenants.has(tenantId)) tenants.set(tenantId, tenant);
          }
          if (!e) {
            e = { tenant, name, latest: undefined, latestT: -Infinity, latestExpires: 0, window: [], windowExpires: 0 };
            tenant.names.set(name, e);
            if (tenant.sorted) tenant.sorted.splice(lowerBound(tenant.sorted, name), 0, name);
          } else {
            order.delete(e); // re-inserted below: now the most recently written
          }
          order.add(e);
          if (e.latest === undefined || now >= e.latestExpires || p.latestT >= e.latestT) {
            e.latest = p.latestJson;
            e.latestT = p.latestT;
            e.latestExpires = now + ttlMs;
          }
          if (p.window.length > 0) {
            e.window = mergeWindows(now >= e.windowExpires ? [] : e.window, p.window, cut);
            e.windowExpires = now + windowTtlMs;
          }
        }
      }
      // Least recently written first; never the entries this write touched unless they alone overflow.
      for (const e of order) {
        if (order.size <= maxNames) break;
        remove(e);
      }
    },

    async latest(tenant, name) {
      assertOpen();
      const now = Date.now();
      const e = entryOf(tenant, name, now);
      return e?.latest !== undefined && now < e.latestExpires ? (JSON.parse(e.latest) as ResolvedRecord) : undefined;
    },

    async latestByPrefix(tenant, prefix, limit) {
      assertOpen();
      const max = checkPrefixLimit(limit);
      const t = tenants.get(tenant);
      if (!t || max === 0) return [];
      if (!t.sorted) t.sorted = [...t.names.keys()].sort(compareUtf8);
      const now = Date.now();
      const out: ResolvedRecord[] = [];
      const dead: NameEntry[] = [];
      for (let i = lowerBound(t.sorted, prefix); i < t.sorted.length && out.length < max; i++) {
        const name = t.sorted[i];
        if (!name.startsWith(prefix)) break;
        const e = t.names.get(name)!;
        if (e.latest !== undefined && now < e.latestExpires) out.push(JSON.parse(e.latest) as ResolvedRecord);
        else if (isDead(e, now)) dead.push(e);
      }
      for (const e of dead) remove(e);
      return out;
    },

    async window(tenant, name) {
      assertOpen();
      const now = Date.now();
      const e = entryOf(tenant, name, now);
      if (!e || now >= e.windowExpires) return [];
      return e.window.map((item) => JSON.parse(item.json) as ResolvedRecord);
    },

    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      tenants.clear();
      order.clear();
    },
  };
}
