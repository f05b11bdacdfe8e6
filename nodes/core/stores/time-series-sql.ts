/**
 * The time-series tier on PostgreSQL or PGlite (DESIGN.md: "time series (bounded)"), over the
 * readings table (migrations 001, 002 and 004).
 *
 *   append      stores each reading once: (tenant, n, t, u) is its key (migration 004), and
 *               a reading whose key is already stored is skipped, so a batch sent again (a
 *               device repeating what was not acknowledged, a crash between commit and
 *               acknowledgement) stores nothing twice; `written` counts only the new readings.
 *               Within a batch the first of several with one key is kept. On PostgreSQL with a
 *               copier (nodes/core/db/copy.ts) and a big enough batch: one transaction on the
 *               copier's connection that COPYs the batch (FORMAT binary: no number or timestamp
 *               parsing on the server) straight into readings, the usual case; when that meets
 *               a stored key, it rolls back to a savepoint and COPYs into a temporary staging
 *               table, then moves it with INSERT … SELECT … ON CONFLICT DO NOTHING. Otherwise
 *               (PGlite, small batches) one INSERT … SELECT FROM unnest(…) of column arrays, ON
 *               CONFLICT DO NOTHING. Those two insert in key order, so concurrent writers of
 *               overlapping batches wait on each other's keys in one order; a COPY straight in
 *               may deadlock with one of them, and the loser's transaction is tried again.
 *               With `rollups`, the readings that were new are folded into the rollups table in
 *               the same transaction (long-term-sql.ts, addRollups): the rollups then count
 *               every stored reading exactly once, whatever is sent twice. The statement
 *               answers with the few readings it skipped rather than the many it stored.
 *               Readings the table cannot hold are refused up front with a reason, so one bad
 *               record never fails the batch (a COPY is all or nothing).
 *   query       a tenant's readings of one name or of a name prefix, in [from, to), in (t, n)
 *               order (then by unit): keyset pagination over (t, n, u), which is unique per
 *               tenant, never skips or repeats a row. The cursor is opaque.
 *   dropBefore  retention, across tenants, one short DELETE of at most dropChunk rows at a time.
 *
 * Times are stored as timestamptz, which holds microseconds: t is rounded to the microsecond on
 * the way in and read back as the same number (two times within one microsecond are one key).
 */
import type { Copier, CopyTransaction } from '../db/copy';
import { BinaryCopyWriter } from '../db/copy';
import type { SqlClient } from '../db/sql';
import type { ResolvedRecord } from '../model/senml';
import { addRollups } from './long-term-sql';
import {
  checkQuery,
  decodeCursor,
  encodeCursor,
  inRangeMicros,
  isoMicros,
  likePrefix,
  MAX_NAME_BYTES,
  MAX_T,
  MAX_TENANT_BYTES,
  micros,
  MIN_T,
  secondsOf,
  storableText,
  toMicros,
} from './sql-common';
import type { AppendResult, Page, RangeQuery, Reading, TimeSeriesStore } from './types';

export interface SqlTimeSeriesOptions {
  /** COPY on PostgreSQL: `openCopier(config)` for the same database as db. Ignored on PGlite. */
  copier?: Pick<Copier, 'transaction'>;
  /** Batches with at least this many readings go through COPY (which costs two round trips more). Default 100. */
  copyMinRows?: number;
  /** Rows dropBefore deletes per statement. Default 10,000. */
  dropChunk?: number;
  /**
   * Also fold the new numeric readings into their hour and day rollups (the long-term tier's
   * table), in the same transaction as the readings. Default false.
   */
  rollups?: boolean;
}

// ---------------------------------------------------------------------------------------------

const COLUMNS = 'tenant_id, name, t, v, vs, vb, vd, s, u, ut, bver';
/**
 * The order every writer inserts in: by key (byte order, as the index), then by position in
 * the batch, so the first of a batch's repeats is the one kept.
 */
const KEY_ORDER = `tenant_id COLLATE "C", name COLLATE "C", t, coalesce(u, ''), ord`;
const SKIP_STORED = `ON CONFLICT (tenant_id, name, t, (coalesce(u, ''))) DO NOTHING`;
const UNNEST = `SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[], $6::bool[], $7::text[],
                     $8::float8[], $9::text[], $10::float8[], $11::int4[]) WITH ORDINALITY AS x(${COLUMNS}, ord)`;
/** Inserts the rows of source (a table or a WITH query, with ord) whose key is not stored yet. */
const move = (source: string) => `INSERT INTO readings (${COLUMNS}) SELECT ${COLUMNS} FROM ${source} ORDER BY ${KEY_ORDER} ${SKIP_STORED}`;
/**
 * The same, answering with the ord of each row that was not new. Its keys must be distinct (the
 * store keeps the first of a batch's repeats before). Usually no row comes back: cheaper than
 * RETURNING every new row.
 */
const moveAnsweringSkipped = (source: string) => `new AS (${move(source)} RETURNING tenant_id, name, t, u)
  SELECT s.ord FROM ${source} s WHERE NOT EXISTS (
    SELECT 1 FROM new WHERE new.tenant_id = s.tenant_id AND new.name = s.name AND new.t = s.t AND coalesce(new.u, '') = coalesce(s.u, ''))`;
const INSERT_SQL = `WITH src AS (${UNNEST}) ${move('src')}`;
const INSERT_SKIPPED_SQL = `WITH src AS (${UNNEST}), ${moveAnsweringSkipped('src')}`;
/**
 * The staging table: one per copier connection, created on its first batch; ON COMMIT DELETE
 * ROWS empties it at the end of each transaction (and a failed one takes its rows with it).
 */
const STAGE_SQL = `CREATE TEMP TABLE IF NOT EXISTS readings_stage (
  ord int4, tenant_id text COLLATE "C", name text COLLATE "C", t timestamptz, v float8, vs text, vb bool, vd text,
  s float8, u text, ut float8, bver int4) ON COMMIT DELETE ROWS`;
const COPY_SQL = `COPY readings_stage (ord, ${COLUMNS}) FROM STDIN (FORMAT binary)`;
const DIRECT_COPY_SQL = `COPY readings (${COLUMNS}) FROM STDIN (FORMAT binary)`;
/** A stored key met (unique violation), or a deadlock with a writer of the same keys in another order. */
const CONFLICTS = new Set(['23505', '40P01']);
const isConflict = (err: unknown) => CONFLICTS.has((err as { code?: string })?.code ?? '');
/** Transactions that lost a deadlock are tried again (a write is idempotent), this many times in all. */
const ATTEMPTS = 4;
const MOVE_SQL = move('readings_stage');
const MOVE_SKIPPED_SQL = `WITH ${moveAnsweringSkipped('readings_stage')}`;
const SELECT = `SELECT name, ${micros('t')} AS us, v, vs, vb, vd, s, u, ut, bver FROM readings`;
/** Cursors are [t in µs, n, u or '']; 'r1' cursors, issued before migration 004, are [t, n, row id]. */
const CURSOR_TAG = 'r2';
const OLD_CURSOR_TAG = 'r1';

/** The key of a reading as the table compares it: t to the microsecond, no unit as ''. */
const keyOf = ({ tenant, record: r }: Reading) => `${tenant}\u0000${r.n}\u0000${toMicros(r.t)}\u0000${r.u ?? ''}`;

/** The first reading of each key, in batch order. */
function firstOfEachKey(readings: readonly Reading[]): Reading[] {
  const seen = new Set<string>();
  return readings.filter((reading) => {
    const key = keyOf(reading);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

interface Row {
  name: string;
  us: number | bigint;
  v: number | null;
  vs: string | null;
  vb: boolean | null;
  vd: string | null;
  s: number | null;
  u: string | null;
  ut: number | null;
  bver: number | null;
}

const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Why the readings table cannot hold this reading, or undefined when it can. */
export function unstorable(reading: Reading): string | undefined {
  if (reading === null || typeof reading !== 'object') return 'a reading must be an object';
  if (!storableText(reading.tenant) || reading.tenant === '') return 'tenant must be a non-empty string without U+0000';
  if (Buffer.byteLength(reading.tenant) > MAX_TENANT_BYTES) return `tenant is longer than ${MAX_TENANT_BYTES} bytes`;
  const r = reading.record;
  if (r === null || typeof r !== 'object') return 'record must be an object';
  if (!storableText(r.n) || r.n === '') return 'n must be a non-empty string without U+0000';
  if (r.n.length > MAX_NAME_BYTES / 3 && Buffer.byteLength(r.n) > MAX_NAME_BYTES) return `n is longer than ${MAX_NAME_BYTES} bytes`;
  if (!finite(r.t)) return 't must be a finite number of seconds';
  if (!(r.t >= MIN_T && r.t < MAX_T)) return 't must fall within the years 1 to 9999';
  let values = 0;
  if (r.v !== undefined) {
    if (!finite(r.v)) return 'v must be a finite number';
    values++;
  }
  if (r.vs !== undefined) {
    if (!storableText(r.vs)) return 'vs must be a string without U+0000';
    values++;
  }
  if (r.vb !== undefined) {
    if (typeof r.vb !== 'boolean') return 'vb must be a boolean';
    values++;
  }
  if (r.vd !== undefined) {
    if (!storableText(r.vd)) return 'vd must be a string without U+0000';
    values++;
  }
  if (values > 1) return 'a record holds at most one of v, vs, vb, vd';
  if (r.s !== undefined && !finite(r.s)) return 's must be a finite number';
  if (values === 0 && r.s === undefined) return 'a record needs one of v, vs, vb, vd or s';
  if (r.u !== undefined && !storableText(r.u)) return 'u must be a string without U+0000';
  if (r.ut !== undefined && !finite(r.ut)) return 'ut must be a finite number';
  if (r.bver !== undefined && !(Number.isInteger(r.bver) && r.bver >= 0 && r.bver <= 2 ** 31 - 1)) return 'bver must be a non-negative integer';
  return undefined;
}

/** COPY binary data for checked readings, streamed in chunks of about 64 kB as they are encoded. */
function* copyChunks(readings: readonly Reading[], ord: boolean): Generator<Buffer> {
  const w = new BinaryCopyWriter();
  const text = (x: string | undefined) => (x === undefined ? w.null() : w.text(x));
  const float8 = (x: number | undefined) => (x === undefined ? w.null() : w.float8(x));
  for (let i = 0; i < readings.length; i++) {
    const { tenant, record: r } = readings[i];
    w.row(ord ? 12 : 11);
    if (ord) w.int4(i + 1); // as WITH ORDINALITY counts
    w.text(tenant);
    w.text(r.n);
    w.timestamptz(toMicros(r.t));
    float8(r.v);
    text(r.vs);
    if (r.vb === undefined) w.null();
    else w.bool(r.vb);
    text(r.vd);
    float8(r.s);
    text(r.u);
    float8(r.ut);
    if (r.bver === undefined) w.null();
    else w.int4(r.bver);
    if (w.ready) yield* w.take();
  }
  w.end();
  yield* w.take();
}

/** The parameters of INSERT_SQL: one array per column. */
function insertParams(readings: readonly Reading[]): unknown[][] {
  const cols: unknown[][] = Array.from({ length: 11 }, () => new Array<unknown>(readings.length));
  readings.forEach(({ tenant, record: r }, i) => {
    cols[0][i] = tenant;
    cols[1][i] = r.n;
    cols[2][i] = isoMicros(toMicros(r.t));
    cols[3][i] = r.v ?? null;
    cols[4][i] = r.vs ?? null;
    cols[5][i] = r.vb ?? null;
    cols[6][i] = r.vd ?? null;
    cols[7][i] = r.s ?? null;
    cols[8][i] = r.u ?? null;
    cols[9][i] = r.ut ?? null;
    cols[10][i] = r.bver ?? null;
  });
  return cols;
}

function record(row: Row): ResolvedRecord {
  const r: ResolvedRecord = { n: row.name, t: secondsOf(row.us) };
  if (row.u !== null) r.u = row.u;
  if (row.v !== null) r.v = row.v;
  if (row.vs !== null) r.vs = row.vs;
  if (row.vb !== null) r.vb = row.vb;
  if (row.vd !== null) r.vd = row.vd;
  if (row.s !== null) r.s = row.s;
  if (row.ut !== null) r.ut = row.ut;
  if (row.bver !== null) r.bver = row.bver;
  return r;
}

function positiveInt(name: string, value: number): number {
  if (!(Number.isInteger(value) && value >= 1)) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

/**
 * The (t, n, u) a cursor points at. An 'r1' cursor's row id is checked and dropped: the query goes
 * on after its (t, n), which skips nothing unless one name had readings of several units at that
 * very time, split across the page boundary when the upgrade came.
 */
function cursorKey(cursor: string): { us: number; name: string; unit?: string } {
  let key: { us: number; name: string; unit?: string };
  try {
    const [us, name, unit] = decodeCursor(CURSOR_TAG, cursor, ['integer', 'string', 'string']) as [number, string, string];
    key = { us, name, unit };
  } catch {
    const [us, name, id] = decodeCursor(OLD_CURSOR_TAG, cursor, ['integer', 'string', 'string']) as [number, string, string];
    if (!/^-?\d{1,19}$/.test(id)) throw new RangeError('cursor is not one this store returned');
    key = { us, name };
  }
  if (!inRangeMicros(key.us)) throw new RangeError('cursor is not one this store returned');
  return key;
}

export function createSqlTimeSeries(db: SqlClient, options: SqlTimeSeriesOptions = {}): TimeSeriesStore {
  const copier = db.kind === 'postgres' ? options.copier : undefined;
  const copyMinRows = positiveInt('copyMinRows', options.copyMinRows ?? 100);
  const dropChunk = positiveInt('dropChunk', options.dropChunk ?? 10_000);
  const rollups = options.rollups === true;
  let closed = false;
  const open = () => {
    if (closed) throw new Error('time-series store is closed');
  };

  /** Folds the readings the statement did not skip into the rollups; returns how many were new. */
  async function rollUp(tx: SqlClient, batch: readonly Reading[], skipped: { rows: { ord: number }[] }): Promise<number> {
    const old = new Set(skipped.rows.map((row) => Number(row.ord) - 1));
    const added = old.size === 0 ? batch : batch.filter((_, i) => !old.has(i));
    await addRollups(tx, added);
    return added.length;
  }

  /**
   * One batch through COPY, on the copier's connection in one transaction. Most batches hold no
   * reading stored before: first COPY them straight into readings, as fast as a plain COPY,
   * inside a savepoint. A stored key fails that COPY (or a writer of the same keys deadlocks
   * with it): back to the savepoint, and the batch goes through the staging table and INSERT …
   * ON CONFLICT DO NOTHING in key order, which skips what is stored.
   */
  async function copyBatch(tx: CopyTransaction, good: readonly Reading[], direct: boolean): Promise<number> {
    if (direct) {
      await tx.query('SAVEPOINT conflux_direct');
      try {
        await tx.copyFrom(DIRECT_COPY_SQL, copyChunks(good, false));
        await tx.query('RELEASE SAVEPOINT conflux_direct');
        // It went in whole, so every reading was new and none repeated another.
        if (rollups) await addRollups(tx, good);
        return good.length;
      } catch (err) {
        if (!isConflict(err)) throw err;
        await tx.query('ROLLBACK TO SAVEPOINT conflux_direct');
      }
    }
    const batch = rollups ? firstOfEachKey(good) : good;
    await tx.query(STAGE_SQL);
    await tx.copyFrom(COPY_SQL, copyChunks(batch, true));
    if (!rollups) return (await tx.query(MOVE_SQL)).rowCount;
    return rollUp(tx, batch, await tx.query<{ ord: number }>(MOVE_SKIPPED_SQL));
  }

  async function append(readings: readonly Reading[]): Promise<AppendResult> {
    open();
    const good: Reading[] = [];
    const rejected: AppendResult['rejected'] = [];
    for (const reading of readings) {
      const reason = unstorable(reading);
      if (reason === undefined) good.push(reading);
      else rejected.push({ reading, reason });
    }
    if (good.length === 0) return { written: 0, rejected };
    let written: number;
    for (let attempt = 1; ; attempt++) {
      try {
        if (copier && good.length >= copyMinRows) written = await copier.transaction((tx) => copyBatch(tx, good, attempt === 1));
        else if (rollups) {
          // Which readings were new is told by key: a batch's own repeats go first.
          const batch = firstOfEachKey(good);
          written = await db.transaction(async (tx) => rollUp(tx, batch, await tx.query<{ ord: number }>(INSERT_SKIPPED_SQL, insertParams(batch))));
        } else written = (await db.query(INSERT_SQL, insertParams(good))).rowCount;
        break;
      } catch (err) {
        // Only a deadlock with another writer (one COPYing straight in): nothing was kept.
        if ((err as { code?: string })?.code !== '40P01' || attempt === ATTEMPTS) throw err;
      }
    }
    return { written, rejected };
  }

  async function query(query: RangeQuery): Promise<Page<ResolvedRecord>> {
    open();
    const q = checkQuery(query);
    if (q.empty) return { items: [] };
    const params: unknown[] = [q.tenant];
    const p = (value: unknown) => `$${params.push(value)}`;
    const where = ['tenant_id = $1'];
    const byName = q.name !== undefined;
    if (byName) where.push(`name = ${p(q.name)}`);
    else if (q.prefix) where.push(`name >= ${p(q.prefix)}`, `name LIKE ${p(likePrefix(q.prefix))}`);
    if (q.fromUs !== undefined) where.push(`t >= ${p(isoMicros(q.fromUs))}::timestamptz`);
    if (q.toUs !== undefined) where.push(`t < ${p(isoMicros(q.toUs))}::timestamptz`);
    if (query.cursor !== undefined) {
      const { us, name, unit } = cursorKey(query.cursor);
      const t = `${p(isoMicros(us))}::timestamptz`;
      // Row comparisons that match the index columns in order, so the index starts at the cursor.
      if (unit === undefined) where.push(byName ? `t > ${t}` : `(t, name) > (${t}, ${p(name)})`);
      else if (byName) where.push(`(t, coalesce(u, '')) > (${t}, ${p(unit)})`);
      else where.push(`(t, name, coalesce(u, '')) > (${t}, ${p(name)}, ${p(unit)})`);
    }
    const order = byName ? `t, coalesce(u, '')` : `t, name, coalesce(u, '')`;
    const { rows } = await db.query<Row>(`${SELECT} WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ${p(q.limit + 1)}`, params);
    const more = rows.length > q.limit;
    if (more) rows.length = q.limit;
    const page: Page<ResolvedRecord> = { items: rows.map(record) };
    if (more) {
      const last = rows[rows.length - 1];
      page.cursor = encodeCursor(CURSOR_TAG, [Number(last.us), last.name, last.u ?? '']);
    }
    return page;
  }

  async function dropBefore(cutoff: number): Promise<number> {
    open();
    if (!(typeof cutoff === 'number' && Number.isFinite(cutoff))) throw new RangeError('cutoff must be a finite number of seconds');
    if (cutoff <= MIN_T) return 0;
    const before = cutoff >= MAX_T ? 'infinity' : isoMicros(toMicros(cutoff));
    let total = 0;
    for (;;) {
      // One short statement (and transaction) per chunk: never one huge DELETE holding its locks and WAL.
      const { rowCount } = await db.query(`DELETE FROM readings WHERE ctid = ANY (ARRAY(SELECT ctid FROM readings WHERE t < $1::timestamptz LIMIT $2))`, [
        before,
        dropChunk,
      ]);
      total += rowCount;
      if (rowCount < dropChunk || closed) return total;
    }
  }

  return {
    kind: db.kind,
    append,
    query,
    dropBefore,
    // The store opened nothing: whoever opened db (and the copier) closes them.
    close: async () => void (closed = true),
  };
}
