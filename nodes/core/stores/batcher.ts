/**
 * A bounded write queue: items from many messages are written together, in batches bounded by
 * size (maxBatch), one batch in flight at a time, in arrival order.
 *
 * Group commit: when a write finishes, the next one starts at once with whatever arrived
 * meanwhile. Under load batches grow by themselves (devices waiting for their acknowledgement
 * never wait for a timer), and under light load an item is written as soon as it arrives.
 * maxDelayMs only lets an idle writer wait that long for company before its first write.
 *
 * Backpressure: at most maxPending items wait (queued or in flight). `add` beyond that rejects
 * at once with QueueFullError instead of growing memory: the node hands the message to its
 * Catch node, and `add` resolving late is what slows a flow down, since a tier node calls
 * done() — and passes the message on — only once its items are written.
 */
export class QueueFullError extends Error {
  override readonly name = 'QueueFullError';
}

export interface BatchOptions<T> {
  /** Most items per write. */
  maxBatch: number;
  /** Longest an item that finds the writer idle waits for company; 0 writes what arrived in the same tick. */
  maxDelayMs: number;
  /** Most items waiting or being written; add() beyond that throws QueueFullError. */
  maxPending: number;
  /**
   * Writes one batch. Resolve with the items the store refused for good (index into the batch,
   * reason): their callers' promises reject with that reason, the others resolve. Throwing fails
   * every caller in the batch.
   */
  write(items: T[]): Promise<readonly { index: number; reason: string }[] | void>;
}

interface Ticket {
  remaining: number;
  failed: boolean;
  resolve(): void;
  reject(err: Error): void;
}

export class Batcher<T> {
  private readonly items: T[] = [];
  private readonly tickets: Ticket[] = [];
  private inFlight = 0;
  private writing = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private idle: (() => void)[] = [];

  constructor(private readonly options: BatchOptions<T>) {
    for (const key of ['maxBatch', 'maxPending'] as const) {
      if (!(Number.isInteger(options[key]) && options[key] >= 1)) throw new RangeError(`${key} must be a positive integer`);
    }
    if (!(options.maxDelayMs >= 0)) throw new RangeError('maxDelayMs must be 0 or more');
  }

  /** Items queued or being written. */
  get pending(): number {
    return this.items.length + this.inFlight;
  }

  /** Resolves when every item is written; rejects with the first failure among them. */
  add(items: readonly T[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the writer is closed'));
    if (items.length === 0) return Promise.resolve();
    if (this.pending + items.length > this.options.maxPending) {
      return Promise.reject(new QueueFullError(`write queue full: ${this.pending} items pending (limit ${this.options.maxPending})`));
    }
    return new Promise<void>((resolve, reject) => {
      const ticket: Ticket = { remaining: items.length, failed: false, resolve, reject };
      for (const item of items) {
        this.items.push(item);
        this.tickets.push(ticket);
      }
      this.schedule();
    });
  }

  /** Writes everything queued; resolves when nothing is pending. */
  flush(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.idle.push(resolve);
      this.startWrite();
    });
  }

  /** Refuses further items and writes the ones already queued. */
  close(): Promise<void> {
    this.closed = true;
    return this.flush();
  }

  private schedule(): void {
    if (this.writing) return;
    if (this.items.length >= this.options.maxBatch) this.startWrite();
    else if (!this.timer) {
      this.timer =
        this.options.maxDelayMs === 0
          ? (setImmediate(() => this.startWrite()) as unknown as NodeJS.Timeout)
          : setTimeout(() => this.startWrite(), this.options.maxDelayMs);
    }
  }

  private clearTimer(): void {
    if (!this.timer) return;
    clearTimeout(this.timer);
    clearImmediate(this.timer as unknown as NodeJS.Immediate);
    this.timer = undefined;
  }

  private startWrite(): void {
    this.clearTimer();
    if (this.writing) return;
    if (this.items.length === 0) {
      for (const resolve of this.idle.splice(0)) resolve();
      return;
    }
    const batch = this.items.splice(0, this.options.maxBatch);
    const tickets = this.tickets.splice(0, batch.length);
    this.writing = true;
    this.inFlight = batch.length;
    this.options
      .write(batch)
      .then(
        (refused) => {
          const reasons = new Map<number, string>();
          for (const r of refused ?? []) reasons.set(r.index, r.reason);
          tickets.forEach((ticket, i) => {
            const reason = reasons.get(i);
            if (reason === undefined) settle(ticket);
            else settle(ticket, new Error(reason));
          });
        },
        (err: unknown) => {
          const error = err instanceof Error ? err : new Error(String(err));
          for (const ticket of tickets) settle(ticket, error);
        },
      )
      .finally(() => {
        this.writing = false;
        this.inFlight = 0;
        // Group commit: what arrived while writing goes now, however little.
        if (this.idle.length > 0 || this.items.length > 0) this.startWrite();
      });
  }
}

function settle(ticket: Ticket, err?: Error): void {
  if (ticket.failed) return;
  if (err) {
    ticket.failed = true;
    ticket.reject(err);
  } else if (--ticket.remaining === 0) ticket.resolve();
}
