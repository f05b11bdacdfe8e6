/**
 * FTP delivery, at least once, through the outbox:
 *
 *   enqueue   one outbox message per delivery (its target, and its files with their final names
 *             and bytes, fixed now), id given by the caller (the same delivery is stored once);
 *             as many as the drainer has room for are stored already claimed and sent at once
 *   deliver   a Drainer claims the rest; each delivery takes a pooled connection of its target
 *             (nodes/core/ftp/pool.ts: bounded in total and per target, reused across files and
 *             deliveries) and puts every file through a temporary name (upload.ts)
 *   settle    uploaded: ack (deleted). Failed: nack, retried after the message's backoff and
 *             dead-lettered after maxAttempts. A failure of the server, the network or the login
 *             also puts the target in backoff (doubling per failure in a row): until it ends, the
 *             target's deliveries go back to the outbox without an attempt counted, then one tries
 *             again. A target with more deliveries waiting than its connections can take gives
 *             the surplus back for a moment too, so one slow or dead target never fills the
 *             drainer and holds up the others.
 *
 * A connection that was idle in the pool may have been closed by the server meanwhile: a
 * delivery that fails on a reused connection is tried once more on a new one. Framework-free.
 */
import * as metrics from '../metrics/metrics';
import type { SqlClient } from '../db/sql';
import { groupBy } from '../group-by';
import { Deferrals } from '../mailbox/deferrals';
import { Drainer } from '../mailbox/drainer';
import { backoffDelay, errorText, Mailbox, type ClaimedMessage, type NackResult, type RetryPolicy } from '../mailbox/mailbox';
import { Batcher } from '../stores/batcher';
import { remotePath } from './naming';
import type { RemoteFile } from './package';
import { PoolFullError, type FtpPool } from './pool';
import { TargetError, type FtpTarget } from './targets';
import { isRequestRefusal, putAtomic, type FtpClient } from './upload';

/** Where a stored delivery goes: the node's configured target, or a store target by id. */
export type TargetRef = { kind: 'node' } | { kind: 'store'; id: string };

export interface StoredDelivery {
  target: TargetRef;
  files: { name: string; data: string }[];
}

export interface NewDelivery {
  tenant: string;
  messageId: string;
  target: TargetRef;
  files: readonly RemoteFile[];
}

export interface SenderOptions {
  /** The outbox queue (one per conflux-ftp-out node). */
  queue: string;
  /** Unique per process and node. */
  worker: string;
  /** Deliveries claimed and not settled, all targets together. */
  capacity: number;
  leaseMs: number;
  pollMs: number;
  retry: RetryPolicy;
  /** A failing target's backoff: base doubling per failure in a row, up to max. */
  targetBackoff: { baseDelayMs: number; maxDelayMs: number };
  /** Deliveries waiting in memory per target beyond what its connections carry at once. */
  waitingPerTarget: number;
}

export interface SenderHooks {
  pool: FtpPool<FtpClient, FtpTarget>;
  /** The target of a stored delivery; undefined: it no longer exists (or is switched off). */
  resolve(tenant: string, ref: TargetRef): Promise<FtpTarget | undefined>;
  /** A claim, ack or lookup failed; the sender goes on. */
  onError(err: Error): void;
  /** A delivery failed its last attempt and went to the dead letters. */
  onDead?(messageId: string, reason: string): void;
  onChange?(): void;
}

interface TargetState {
  failures: number;
  until: number;
  /** Deliveries of this target under way or waiting for a connection. */
  active: number;
}

export interface SenderStats {
  delivered: number;
  files: number;
  failed: number;
  dead: number;
  inFlight: number;
  lastError: string;
}

export class FtpSender {
  private readonly box: Mailbox;
  private readonly drainer: Drainer;
  private readonly writer: Batcher<NewDelivery>;
  private readonly targets = new Map<string, TargetState>();
  private readonly deferrals: Deferrals;
  private idle: (() => void) | undefined;
  private stopped = false;
  readonly stats: SenderStats = { delivered: 0, files: 0, failed: 0, dead: 0, inFlight: 0, lastError: '' };

  constructor(
    db: SqlClient,
    private readonly options: SenderOptions,
    private readonly hooks: SenderHooks,
  ) {
    this.box = new Mailbox(db, 'outbox');
    this.drainer = new Drainer(this.box, {
      queue: options.queue,
      worker: options.worker,
      capacity: options.capacity,
      leaseMs: options.leaseMs,
      pollMs: options.pollMs,
      retry: options.retry,
      deliver: (m) => void this.deliver(m),
      onError: (err) => this.error(err),
    });
    this.deferrals = new Deferrals(this.drainer, (err) => this.error(err));
    this.writer = new Batcher({
      maxBatch: 500,
      maxDelayMs: 0,
      maxPending: 20_000,
      write: async (items) => {
        for (const [tenant, group] of groupBy(items, (d) => d.tenant)) {
          const rows = group.map((d) => ({ messageId: d.messageId, payload: stored(d) }));
          // What the drainer has room for is stored claimed by this worker and sent at once.
          const now = this.stopped ? 0 : Math.max(0, Math.min(rows.length, this.drainer.room));
          if (now > 0)
            this.drainer.adopt(await this.box.enqueueClaimed(tenant, options.queue, rows.slice(0, now), { worker: options.worker, leaseMs: options.leaseMs }));
          if (now < rows.length) await this.box.enqueue(tenant, options.queue, rows.slice(now));
        }
        this.drainer.wake();
      },
    });
  }

  start(): void {
    this.stopped = false;
    this.drainer.start();
  }

  /** Stores the deliveries; resolves once they are in the outbox. */
  enqueue(deliveries: readonly NewDelivery[]): Promise<void> {
    return this.writer.add([...deliveries]).then(() => undefined);
  }

  /** Deliveries of this sender's queue in the outbox. */
  depth(): Promise<number> {
    return this.box.depth(this.options.queue);
  }

  /**
   * Stops claiming; uploads under way finish (bounded by the connections' timeouts, at most
   * waitMs), what waits for a connection goes back to the outbox, the pool closes.
   */
  async stop(waitMs = 30_000): Promise<void> {
    this.stopped = true;
    await this.writer.close();
    await this.drainer.stop();
    const closing = this.hooks.pool.close(); // refuses the waiting deliveries: they go back to the box
    if (this.stats.inFlight > 0)
      await new Promise<void>((resolve) => {
        const give = setTimeout(resolve, waitMs);
        this.idle = () => {
          clearTimeout(give);
          resolve();
        };
      });
    await closing;
    await this.deferrals.flush();
  }

  private error(err: Error): void {
    this.stats.lastError = err.message;
    this.hooks.onError(err);
    this.hooks.onChange?.();
  }

  private state(key: string): TargetState {
    let s = this.targets.get(key);
    if (!s) this.targets.set(key, (s = { failures: 0, until: 0, active: 0 }));
    return s;
  }

  private async deliver(m: ClaimedMessage): Promise<void> {
    const delivery = m.payload as StoredDelivery;
    let target: FtpTarget | undefined;
    try {
      target = await this.hooks.resolve(m.tenantId, delivery.target);
    } catch (err) {
      // A target that cannot be used as it stands (its secret's variable unset): a failed attempt.
      if (err instanceof TargetError) return void this.fail(m, err);
      // The store is down: try later, without an attempt.
      this.error(err as Error);
      return this.deferLater(m, 1_000);
    }
    if (!target) return void this.fail(m, new Error(`the FTP target ${JSON.stringify(delivery.target)} no longer exists or is switched off`));
    const state = this.state(target.key);
    const now = Date.now();
    if (now < state.until) return this.deferLater(m, state.until - now);
    if (state.active >= target.maxConnections + this.options.waitingPerTarget) return this.deferLater(m, 200);
    state.active++;
    this.stats.inFlight++;
    const started = performance.now();
    try {
      const files = delivery.files.map((f) => ({ path: remotePath(target.folder, f.name), data: Buffer.from(f.data, 'base64') }));
      const tag = tagOf(m.messageId);
      const attempt = () =>
        this.hooks.pool.use(target, async (client, fresh) => {
          try {
            await putEach(client, files, tag);
          } catch (err) {
            throw fresh || isRequestRefusal(err) ? err : new StaleConnection(err);
          }
        });
      // A reused connection the server had closed meanwhile: once more, on another connection.
      await attempt().catch((err: unknown) => (err instanceof StaleConnection ? attempt() : Promise.reject(err)));
      state.failures = 0;
      state.until = 0;
      this.stats.delivered++;
      metrics.delivery('ftp', 'delivered', (performance.now() - started) / 1000);
      this.stats.files += files.length;
      this.stats.lastError = '';
      await this.drainer.ack(m.id).catch((err: Error) => this.error(err));
    } catch (caught) {
      const err = caught instanceof StaleConnection ? caught.cause : caught;
      if (this.stopped)
        this.deferLater(m, 0); // cut off by the stop, not the target's fault
      else if (err instanceof PoolFullError) this.deferLater(m, 200);
      else {
        if (!isRequestRefusal(err)) {
          state.failures++;
          state.until = Date.now() + backoffDelay(state.failures, { ...this.options.targetBackoff, maxAttempts: 1 });
        }
        await this.fail(m, new Error(`${target.label}: ${errorText(err)}`));
      }
    } finally {
      state.active--;
      if (state.active === 0 && state.failures === 0) this.targets.delete(target.key);
      this.stats.inFlight--;
      if (this.stats.inFlight === 0) this.idle?.();
      this.hooks.onChange?.();
    }
  }

  private async fail(m: ClaimedMessage, err: Error): Promise<void> {
    this.stats.failed++;
    this.stats.lastError = err.message;
    let outcome: NackResult;
    try {
      outcome = await this.drainer.nack(m.id, err.message);
    } catch (e) {
      return this.error(e as Error);
    }
    metrics.delivery('ftp', outcome.outcome === 'dead' ? 'dead' : 'retry');
    if (outcome.outcome === 'dead') {
      this.stats.dead++;
      this.hooks.onDead?.(m.messageId, err.message);
    }
    this.hooks.onChange?.();
  }

  /** Gives the message back without counting an attempt; one UPDATE per 100 ms bucket of delay. */
  private deferLater(m: ClaimedMessage, delayMs: number): void {
    this.deferrals.add(m.id, delayMs);
  }
}

/** A delivery failed on a connection that came from the pool's idle ones (cause: the error). */
class StaleConnection extends Error {
  constructor(cause: unknown) {
    super(errorText(cause), { cause });
  }
}

function stored(d: NewDelivery): StoredDelivery {
  return { target: d.target, files: d.files.map((f) => ({ name: f.name, data: f.data.toString('base64') })) };
}

/** A short tag for the temporary names, the same on every attempt of one delivery. */
function tagOf(messageId: string): string {
  let h = 2166136261;
  for (let i = 0; i < messageId.length; i++) h = Math.imul(h ^ messageId.charCodeAt(i), 16777619);
  return (h >>> 0).toString(36);
}

async function putEach(client: FtpClient, files: readonly { path: string; data: Buffer }[], tag: string): Promise<void> {
  for (const f of files) await putAtomic(client, f.path, f.data, tag);
}
