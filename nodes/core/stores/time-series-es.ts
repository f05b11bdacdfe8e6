/**
 * The bounded time-series tier on Elasticsearch (DESIGN.md, "Embedded defaults and real servers"):
 * the `TimeSeriesStore` of types.ts over time-based indices. Framework-free.
 *
 * Layout
 * - One index per UTC day (or month) of the record's t: `<prefix>-readings-YYYY.MM.DD` or
 *   `<prefix>-readings-YYYY.MM`. Retention (dropBefore) deletes whole indices, the cheap way.
 * - One index template `<prefix>-readings` over `<prefix>-readings-*` maps every field
 *   explicitly (dynamic: strict): a document with a stray field is refused, not guessed at.
 * - Each reading is one document. Its `_id` is sha256(JSON [tenant, n, t, u]) in base64url (u
 *   only when the record has one), so a reading sent twice (an at-least-once retry) overwrites
 *   itself instead of doubling; the same id sits in the `id` field as the last sort key.
 * - `t` is a `date` (epoch milliseconds, for Kibana and date histograms); `ts` is a `double`
 *   holding the record's exact t in seconds. Ranges, sorting and read-back use `ts`, so a
 *   sub-millisecond t comes back exactly as written.
 *
 * Writes use `refresh: false`: a reading becomes searchable at the index's next refresh (1 s by
 * default), which suits a bulk ingest path.
 */
import { createHash } from 'node:crypto';
import type { Client, estypes } from '@elastic/elasticsearch';
import { elasticsearchLibrary } from './elasticsearch';
import type { ResolvedRecord } from '../model/senml';
import type { AppendResult, Page, RangeQuery, Reading, TimeSeriesStore } from './types';

export type ElasticInterval = 'day' | 'month';

export interface ElasticTimeSeriesOptions {
  /** Lower-case index name prefix, e.g. 'conflux'. */
  indexPrefix: string;
  /** How much time one index holds; default 'day'. */
  interval?: ElasticInterval;
  /** How many times items refused with a retryable status are sent again; default 3. */
  maxRetries?: number;
  /** First retry delay; doubles on each further retry (capped at 30 s); default 200 ms. */
  retryDelayMs?: number;
}

export type ElasticTimeSeriesStore = TimeSeriesStore & {
  readonly kind: 'elasticsearch';
  /** Puts the index template (once per store; a failed attempt is tried again next time). */
  ensureTemplate(): Promise<void>;
};

/**
 * append() could not store every reading: the cluster failed some items for a reason that is
 * not the document's fault (still overloaded after the retries, a read-only block, a missing
 * index...). `written` and `rejected` tell what did happen; sending the whole batch again is
 * safe, because ids are deterministic.
 */
export class ElasticAppendError extends Error {
  override readonly name = 'ElasticAppendError';

  constructor(
    message: string,
    readonly written: number,
    readonly rejected: AppendResult['rejected'],
    readonly pending: Reading[],
  ) {
    super(message);
  }
}

export const DEFAULT_LIMIT = 1000;
export const MAX_LIMIT = 10000;

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);
const RETRYABLE_TYPE = 'es_rejected_execution_exception';
/** 400s that are about the index, not the document: the caller should retry, not drop. */
const NOT_DOCUMENT_400 = new Set(['index_closed_exception', 'cluster_block_exception']);
const PREFIX_RE = /^[a-z0-9][a-z0-9._-]*$/;
const MAX_DELAY_MS = 30_000;
/** Names per DELETE request, to keep the request line short. */
const DELETE_CHUNK = 50;
/** The latest t an index name can hold (year 9999). */
const MAX_MS = Date.UTC(10000, 0, 1);

/** The fields of one stored document. */
interface ReadingDoc {
  tenant: string;
  n: string;
  /** epoch milliseconds (floor of t * 1000) */
  t: number;
  /** the record's exact t, seconds */
  ts: number;
  id: string;
  u?: string;
  v?: number;
  vs?: string;
  vb?: boolean;
  vd?: string;
  s?: number;
  ut?: number;
}

type StoredFields = Pick<ReadingDoc, 'n' | 'ts' | 'u' | 'v' | 'vs' | 'vb' | 'vd' | 's' | 'ut'>;
type SortValues = [number, string, string];

const SOURCE_FIELDS = ['n', 'ts', 'u', 'v', 'vs', 'vb', 'vd', 's', 'ut'];

/** The explicit mapping every readings index gets from the template. */
export const READINGS_MAPPINGS: estypes.MappingTypeMapping = {
  dynamic: 'strict',
  properties: {
    tenant: { type: 'keyword' },
    n: { type: 'keyword' },
    t: { type: 'date', format: 'epoch_millis' },
    ts: { type: 'double' },
    v: { type: 'double' },
    // 8191 characters stay under Lucene's 32766-byte term limit in UTF-8; longer strings are kept
    // in _source (and read back) but not indexed.
    vs: { type: 'keyword', ignore_above: 8191 },
    vb: { type: 'boolean' },
    // base64url data: read back, never searched or sorted on
    vd: { type: 'keyword', index: false, doc_values: false },
    s: { type: 'double' },
    u: { type: 'keyword' },
    ut: { type: 'double' },
    id: { type: 'keyword' },
  },
};

/**
 * The deterministic document id of a reading: sha256 of JSON [tenant, n, t] (with u appended when
 * the record has a unit), base64url. The unit is part of a reading's identity, as in the SQL
 * store's key (migration 004): SenML may name one sensor's quantities by unit alone.
 */
export function readingId(tenant: string, n: string, t: number, u?: string): string {
  return createHash('sha256')
    .update(JSON.stringify(u === undefined ? [tenant, n, t] : [tenant, n, t, u]))
    .digest('base64url');
}

/** Epoch milliseconds of a t in seconds, rounded down, immune to t * 1000 landing a hair below. */
function millisOf(t: number): number {
  let ms = Math.round(t * 1000);
  if (ms / 1000 > t) ms -= 1;
  return ms;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/** The index a reading with this t (seconds) goes to. */
export function readingsIndex(prefix: string, interval: ElasticInterval, t: number): string {
  const d = new Date(millisOf(t));
  const month = `${pad(d.getUTCFullYear(), 4)}.${pad(d.getUTCMonth() + 1, 2)}`;
  return `${prefix}-readings-${interval === 'day' ? `${month}.${pad(d.getUTCDate(), 2)}` : month}`;
}

function encodeCursor(sort: SortValues): string {
  return Buffer.from(JSON.stringify(sort), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): SortValues {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new RangeError('invalid cursor');
  }
  if (
    !Array.isArray(value) ||
    value.length !== 3 ||
    typeof value[0] !== 'number' ||
    !Number.isFinite(value[0]) ||
    typeof value[1] !== 'string' ||
    typeof value[2] !== 'string'
  ) {
    throw new RangeError('invalid cursor');
  }
  return value as SortValues;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function isFiniteNumber(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

/** Why a reading cannot become a document, or undefined when it can. */
function invalidReason(reading: Reading): string | undefined {
  if (reading === null || typeof reading !== 'object') return 'not a reading';
  if (typeof reading.tenant !== 'string' || reading.tenant === '') return 'the tenant must be a non-empty string';
  const r = reading.record as Partial<Record<keyof ResolvedRecord, unknown>> | null;
  if (r === null || typeof r !== 'object') return 'the record must be an object';
  if (typeof r.n !== 'string' || r.n === '') return 'field "n": expected a non-empty string';
  if (!isFiniteNumber(r.t) || r.t < 0 || r.t * 1000 >= MAX_MS) return 'field "t": expected seconds between 1970 and 9999';
  for (const f of ['v', 's', 'ut'] as const) {
    if (r[f] != null && !isFiniteNumber(r[f])) return `field "${f}": expected a finite number`;
  }
  for (const f of ['u', 'vs', 'vd'] as const) {
    if (r[f] != null && typeof r[f] !== 'string') return `field "${f}": expected a string`;
  }
  if (r.vb != null && typeof r.vb !== 'boolean') return 'field "vb": expected a boolean';
  return undefined;
}

function toDoc(tenant: string, r: ResolvedRecord, id: string): ReadingDoc {
  const doc: ReadingDoc = { tenant, n: r.n, t: millisOf(r.t), ts: r.t, id };
  if (r.u != null) doc.u = r.u;
  if (r.v != null) doc.v = r.v;
  if (r.vs != null) doc.vs = r.vs;
  if (r.vb != null) doc.vb = r.vb;
  if (r.vd != null) doc.vd = r.vd;
  if (r.s != null) doc.s = r.s;
  if (r.ut != null) doc.ut = r.ut;
  return doc;
}

function fromSource(src: StoredFields): ResolvedRecord {
  const r: ResolvedRecord = { n: src.n, t: src.ts };
  if (src.u != null) r.u = src.u;
  if (src.v != null) r.v = src.v;
  if (src.vs != null) r.vs = src.vs;
  if (src.vb != null) r.vb = src.vb;
  if (src.vd != null) r.vd = src.vd;
  if (src.s != null) r.s = src.s;
  if (src.ut != null) r.ut = src.ut;
  return r;
}

function reasonOf(error: estypes.ErrorCause | undefined, status: number): string {
  if (!error) return `status ${status}`;
  let reason = error.reason ? `${error.type}: ${error.reason}` : error.type;
  if (error.caused_by?.reason) reason += ` (caused by ${error.caused_by.type}: ${error.caused_by.reason})`;
  return reason;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface Pending {
  reading: Reading;
  index: string;
  id: string;
  doc: ReadingDoc;
}

export function createElasticTimeSeries(client: Client, options: ElasticTimeSeriesOptions): ElasticTimeSeriesStore {
  const prefix = options.indexPrefix;
  if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix)) {
    throw new TypeError(`index prefix "${String(prefix)}" must be lower case letters, digits, ".", "_" or "-", starting with a letter or digit`);
  }
  const interval: ElasticInterval = options.interval ?? 'day';
  if (interval !== 'day' && interval !== 'month') throw new TypeError(`interval must be "day" or "month", not "${String(interval)}"`);
  const maxRetries = options.maxRetries ?? 3;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new RangeError('maxRetries must be a non-negative integer');
  const retryDelayMs = options.retryDelayMs ?? 200;
  if (!isFiniteNumber(retryDelayMs) || retryDelayMs < 0) throw new RangeError('retryDelayMs must be a non-negative number');

  const templateName = `${prefix}-readings`;
  const pattern = `${prefix}-readings-*`;
  // Both layouts are ours, so retention still finds day indices after a switch to months and back.
  const ownIndex = new RegExp(`^${escapeRegExp(prefix)}-readings-(\\d{4})\\.(\\d{2})(?:\\.(\\d{2}))?$`);

  let template: Promise<void> | undefined;

  function ensureTemplate(): Promise<void> {
    template ??= (async () => {
      await client.indices.putIndexTemplate({
        name: templateName,
        index_patterns: [pattern],
        // above the built-in templates (100), so a prefix such as "logs" still gets our mapping
        priority: 200,
        template: { mappings: READINGS_MAPPINGS },
        _meta: { description: 'Conflux time-series readings' },
      });
    })().catch((err: unknown) => {
      template = undefined;
      throw err;
    });
    return template;
  }

  async function append(readings: readonly Reading[]): Promise<AppendResult> {
    const rejected: AppendResult['rejected'] = [];
    let pending: Pending[] = [];
    for (const reading of readings) {
      const reason = invalidReason(reading);
      if (reason !== undefined) {
        rejected.push({ reading, reason: `invalid reading: ${reason}` });
        continue;
      }
      const { tenant, record } = reading;
      const id = readingId(tenant, record.n, record.t, record.u);
      pending.push({ reading, index: readingsIndex(prefix, interval, record.t), id, doc: toDoc(tenant, record, id) });
    }
    let written = 0;
    if (pending.length === 0) return { written, rejected };

    await ensureTemplate();

    for (let attempt = 0; ; attempt++) {
      const operations: (estypes.BulkOperationContainer | ReadingDoc)[] = [];
      for (const p of pending) operations.push({ index: { _index: p.index, _id: p.id } }, p.doc);

      let response: estypes.BulkResponse;
      try {
        response = await client.bulk({ operations, refresh: false });
      } catch (err) {
        // The whole request was refused for load: retry it like its items. Anything else
        // (connection lost, auth...) is for the caller, who may resend the batch.
        if (err instanceof elasticsearchLibrary().errors.ResponseError && RETRYABLE_STATUS.has(err.statusCode ?? 0) && attempt < maxRetries) {
          await sleep(Math.min(retryDelayMs * 2 ** attempt, MAX_DELAY_MS));
          continue;
        }
        throw err;
      }

      if (!Array.isArray(response.items) || response.items.length !== pending.length) {
        throw new ElasticAppendError(
          `bulk answered ${response.items?.length ?? 0} items for ${pending.length} documents`,
          written,
          rejected,
          pending.map((p) => p.reading),
        );
      }

      const retry: Pending[] = [];
      const failed: { p: Pending; reason: string }[] = [];
      response.items.forEach((item, i) => {
        const p = pending[i];
        const result = item.index ?? Object.values(item)[0];
        const status = result?.status ?? 0;
        if (status >= 200 && status < 300 && !result?.error) {
          written++;
        } else if (RETRYABLE_STATUS.has(status) || result?.error?.type === RETRYABLE_TYPE) {
          retry.push(p);
        } else if (status === 400 && !NOT_DOCUMENT_400.has(result?.error?.type ?? '')) {
          rejected.push({ reading: p.reading, reason: reasonOf(result?.error, status) });
        } else {
          failed.push({ p, reason: reasonOf(result?.error, status) });
        }
      });

      if (failed.length > 0) {
        throw new ElasticAppendError(`Elasticsearch failed ${failed.length} of ${pending.length} documents: ${failed[0].reason}`, written, rejected, [
          ...failed.map((f) => f.p.reading),
          ...retry.map((p) => p.reading),
        ]);
      }
      if (retry.length === 0) return { written, rejected };
      if (attempt >= maxRetries) {
        throw new ElasticAppendError(
          `Elasticsearch still refused ${retry.length} documents after ${maxRetries} retries`,
          written,
          rejected,
          retry.map((p) => p.reading),
        );
      }
      pending = retry;
      await sleep(Math.min(retryDelayMs * 2 ** attempt, MAX_DELAY_MS));
    }
  }

  async function query(q: RangeQuery): Promise<Page<ResolvedRecord>> {
    if (typeof q.tenant !== 'string' || q.tenant === '') throw new TypeError('a query must name its tenant');
    const hasName = q.name !== undefined;
    const hasPrefix = q.prefix !== undefined;
    if (hasName === hasPrefix) throw new TypeError('a query needs exactly one of name and prefix');
    const limit = q.limit ?? DEFAULT_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new RangeError(`limit must be an integer from 1 to ${MAX_LIMIT}`);
    }
    for (const [key, value] of [
      ['from', q.from],
      ['to', q.to],
    ] as const) {
      if (value !== undefined && !isFiniteNumber(value)) throw new RangeError(`${key} must be a finite number of seconds`);
    }

    const filter: estypes.QueryDslQueryContainer[] = [{ term: { tenant: q.tenant } }];
    if (hasName) filter.push({ term: { n: q.name } });
    else if (q.prefix !== '') filter.push({ prefix: { n: q.prefix } });
    if (q.from !== undefined || q.to !== undefined) {
      const range: estypes.QueryDslNumberRangeQuery = {};
      if (q.from !== undefined) range.gte = q.from;
      if (q.to !== undefined) range.lt = q.to;
      filter.push({ range: { ts: range } });
    }

    const request: estypes.SearchRequest = {
      index: pattern,
      ignore_unavailable: true,
      allow_no_indices: true,
      size: limit,
      track_total_hits: false,
      _source: SOURCE_FIELDS,
      query: { bool: { filter } },
      sort: [
        { ts: { order: 'asc', unmapped_type: 'double' } },
        { n: { order: 'asc', unmapped_type: 'keyword' } },
        { id: { order: 'asc', unmapped_type: 'keyword' } },
      ],
    };
    if (q.cursor !== undefined) request.search_after = decodeCursor(q.cursor);

    const response = await client.search<StoredFields>(request);
    const hits = response.hits.hits;
    const items: ResolvedRecord[] = [];
    for (const hit of hits) {
      if (hit._source) items.push(fromSource(hit._source));
    }
    const page: Page<ResolvedRecord> = { items };
    const last = hits[hits.length - 1];
    if (hits.length === limit && last?.sort) page.cursor = encodeCursor(last.sort as SortValues);
    return page;
  }

  /** The instant (ms) an index of ours stops covering, or undefined for a name that is not ours. */
  function periodEnd(name: string): number | undefined {
    const m = ownIndex.exec(name);
    if (!m) return undefined;
    const year = Number(m[1]);
    const month = Number(m[2]);
    if (month < 1 || month > 12) return undefined;
    if (m[3] === undefined) return Date.UTC(year, month, 1);
    const day = Number(m[3]);
    const start = new Date(Date.UTC(year, month - 1, day));
    if (day < 1 || start.getUTCMonth() !== month - 1) return undefined;
    return Date.UTC(year, month - 1, day + 1);
  }

  async function dropBefore(cutoff: number): Promise<number | undefined> {
    if (!isFiniteNumber(cutoff)) throw new RangeError('cutoff must be a finite number of seconds');
    const cutoffMs = cutoff * 1000;
    const listed = await client.cat.indices({ index: pattern, format: 'json', h: 'index', expand_wildcards: ['open', 'closed'] });
    const old = (Array.isArray(listed) ? listed : [])
      .map((row) => row.index)
      .filter((name): name is string => typeof name === 'string')
      .filter((name) => {
        const end = periodEnd(name);
        return end !== undefined && end <= cutoffMs;
      })
      .sort();
    for (let i = 0; i < old.length; i += DELETE_CHUNK) {
      // ignore_unavailable: another instance sharing the cluster may have dropped them already
      await client.indices.delete({ index: old.slice(i, i + DELETE_CHUNK), ignore_unavailable: true });
    }
    // whole indices go; how many readings they held is not counted
    return undefined;
  }

  return {
    kind: 'elasticsearch',
    ensureTemplate,
    append,
    query,
    dropBefore,
    // the client belongs to the caller (the config node), who closes it
    close: async () => {},
  };
}
