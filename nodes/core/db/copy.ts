/**
 * COPY … FROM STDIN on a PostgreSQL server, for bulk writes (the time-series store's batches).
 *
 * SqlClient does not expose its pg.Pool, and should not: it guards transactions and moves
 * between hosts. So COPY gets a small pool of its own, opened from the same SqlConfig with the
 * same per-host settings (poolConfigs: hosts in failover order, TLS, user, application name),
 * and it hands out one function, `copyFrom`. Stores take that function as an optional
 * dependency: a store stays engine-agnostic, uses COPY only when given it, and a test can wrap
 * it to see that the COPY path was taken. Whoever opens the SqlClient from a config opens the
 * copier from the same config and closes both.
 *
 * `copyFrom` runs a COPY in its own transaction on its own connection: it is not part of a
 * transaction open on the SqlClient. `transaction` opens one on a connection of the copier, in
 * which COPY and ordinary statements share that connection and commit together: the
 * time-series store copies a batch into a temporary staging table and moves what is new into
 * readings (and the rollups) in one transaction.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type * as pg from 'pg';
import type * as PgCopyStreams from 'pg-copy-streams';
import type * as Postgres from './postgres';
import { isServerConfig, type SqlClient, type SqlConfig } from './sql';

/**
 * Runs `statement` (a `COPY table (columns) FROM STDIN …`) and streams `data` to it, chunk
 * after chunk with backpressure; resolves to the number of rows the server copied. The data is
 * in the format the statement names (BinaryCopyWriter makes FORMAT binary). Either every row
 * is copied or none.
 */
export type CopyFrom = (statement: string, data: Iterable<string | Buffer>) => Promise<number>;

/** A transaction on a copier's connection: SQL statements and COPY, committed together. */
export interface CopyTransaction extends SqlClient {
  readonly copyFrom: CopyFrom;
}

export interface Copier {
  readonly copyFrom: CopyFrom;
  /**
   * Runs fn inside BEGIN … COMMIT on one connection of the copier, ROLLBACK if it throws; use
   * only `tx` inside fn. A connection whose transaction failed is closed, never reused: a
   * failed COPY may leave it mid-protocol.
   */
  transaction<T>(fn: (tx: CopyTransaction) => Promise<T>): Promise<T>;
  /** Ends the copier's pool. */
  close(): Promise<void>;
}

export interface CopierOptions {
  /** Connections for COPY; default 2 (one batch in flight per writer is the usual case). */
  poolSize?: number;
}

/** Opens a copier on the PostgreSQL server the configuration names; throws for a PGlite configuration. */
export function openCopier(config: SqlConfig, options: CopierOptions = {}): Copier {
  if (!isServerConfig(config)) throw new Error('COPY needs a PostgreSQL server: the configuration names PGlite');
  // Loaded here, not at the top: the time-series store imports BinaryCopyWriter from this module,
  // and with the embedded PGlite nothing needs pg (about 14 MiB resident).
  const { HostPool, poolConfigs, transactionOn } = require('./postgres') as typeof Postgres;
  const { from: copyFromStream } = require('pg-copy-streams') as typeof PgCopyStreams;
  const { configs, requireWritable } = poolConfigs({ ...config, poolSize: options.poolSize ?? 2 });
  const hosts = new HostPool(configs, requireWritable);

  const owner = {};

  /** Runs fn on a checked-out connection; one that saw an error is closed, not returned to the pool. */
  async function withConnection<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await hosts.checkout();
    let failed: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      // The connection may be mid-protocol: never hand it to the next COPY.
      failed = err as Error;
      throw err;
    } finally {
      client.release(failed ?? false);
    }
  }

  const copyOn = async (client: pg.PoolClient, statement: string, data: Iterable<string | Buffer>): Promise<number> => {
    const stream = client.query(copyFromStream(statement));
    await pipeline(Readable.from(data), stream);
    return stream.rowCount;
  };

  return {
    copyFrom: (statement, data) => withConnection((client) => copyOn(client, statement, data)),
    transaction: (fn) =>
      withConnection((client) =>
        transactionOn(
          client,
          owner,
          (tx, guard): CopyTransaction => ({
            ...tx,
            copyFrom: async (statement, data) => {
              guard();
              return copyOn(client, statement, data);
            },
          }),
          fn,
          () => undefined, // withConnection closes the connection anyway: fn's error reached it
        ),
      ),
    close: () => hosts.end(),
  };
}

/** 2000-01-01T00:00:00Z in microseconds since the Unix epoch: PostgreSQL's binary timestamps count from it. */
const PG_EPOCH_US = 946_684_800_000_000;
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/**
 * Builds the data of `COPY … FROM STDIN (FORMAT binary)`: the header, rows of typed fields, the
 * trailer (PostgreSQL documentation, COPY, "Binary Format"). The server reads numbers and
 * timestamps as they are, with no text to parse. Each row is `row(fieldCount)` and then exactly
 * that many fields, in the statement's column order. Finished chunks of about chunkBytes wait
 * in `take()`, so a generator can stream a big batch while it encodes it.
 */
export class BinaryCopyWriter {
  private buf: Buffer;
  private pos = 0;
  private finished: Buffer[] = [];

  constructor(private readonly chunkBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(chunkBytes);
    SIGNATURE.copy(this.buf, 0);
    this.buf.writeInt32BE(0, 11); // flags: no OIDs
    this.buf.writeInt32BE(0, 15); // no header extension
    this.pos = 19;
  }

  /** Whether finished chunks are waiting in take(). */
  get ready(): boolean {
    return this.finished.length > 0;
  }

  /** The finished chunks, removed from the writer. */
  take(): Buffer[] {
    const out = this.finished;
    this.finished = [];
    return out;
  }

  row(fields: number): void {
    this.room(2);
    this.pos = this.buf.writeInt16BE(fields, this.pos);
  }

  null(): void {
    this.room(4);
    this.pos = this.buf.writeInt32BE(-1, this.pos);
  }

  text(value: string): void {
    this.room(4 + value.length * 3); // a UTF-16 unit is at most 3 UTF-8 bytes
    const length = this.buf.write(value, this.pos + 4, 'utf8');
    this.buf.writeInt32BE(length, this.pos);
    this.pos += 4 + length;
  }

  float8(value: number): void {
    this.room(12);
    this.buf.writeInt32BE(8, this.pos);
    this.pos = this.buf.writeDoubleBE(value, this.pos + 4);
  }

  int4(value: number): void {
    this.room(8);
    this.buf.writeInt32BE(4, this.pos);
    this.pos = this.buf.writeInt32BE(value, this.pos + 4);
  }

  bool(value: boolean): void {
    this.room(5);
    this.buf.writeInt32BE(1, this.pos);
    this.pos = this.buf.writeUInt8(value ? 1 : 0, this.pos + 4);
  }

  /** A timestamptz from whole microseconds since the Unix epoch. */
  timestamptz(us: number): void {
    this.room(12);
    const x = us - PG_EPOCH_US;
    const hi = Math.floor(x / 4_294_967_296); // exact: a power of two
    this.buf.writeInt32BE(8, this.pos);
    this.buf.writeInt32BE(hi, this.pos + 4);
    this.pos = this.buf.writeUInt32BE(x - hi * 4_294_967_296, this.pos + 8);
  }

  /** Writes the trailer; everything is then in take(). */
  end(): void {
    this.room(2);
    this.pos = this.buf.writeInt16BE(-1, this.pos);
    this.finish();
  }

  private room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    this.finish();
    this.buf = Buffer.allocUnsafe(Math.max(this.chunkBytes, bytes));
  }

  private finish(): void {
    if (this.pos > 0) this.finished.push(this.buf.subarray(0, this.pos));
    this.pos = 0;
  }
}
