/**
 * Drains one queue of a mailbox into a delivery callback, keeping at most `capacity` messages
 * out at a time. The deliverer settles each message later (ack or nack) — in Node-RED, when the
 * message comes back to the node from the delivery's success or Catch path. Acks are batched
 * into one DELETE. A message never settled (lost downstream) frees its slot when its lease
 * ends; the mailbox then hands it out again. Framework-free.
 */
import { Mailbox, type ClaimedMessage, type NackOptions, type NackResult, type RetryPolicy, type RowId } from './mailbox';

export interface DrainerOptions {
  queue: string;
  /** Unique per process and node: ack and nack only touch what this worker holds. */
  worker: string;
  /** Most messages out at once (also the largest claim). */
  capacity: number;
  leaseMs: number;
  /** Wait before looking again when the queue was empty. */
  pollMs: number;
  retry: RetryPolicy;
  /** Acks wait at most this long to share one DELETE. Default 20 ms. */
  ackDelayMs?: number;
  deliver(message: ClaimedMessage): void;
  /** A claim or ack failed (the database is down): the drainer keeps trying every pollMs. */
  onError?(err: Error): void;
}

export class Drainer {
  private readonly box: Mailbox;
  private readonly out = new Map<string, number>(); // row id → lease end (ms)
  private acks: { id: RowId; resolve(): void; reject(err: Error): void }[] = [];
  private ackTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  /** When the earliest row this drainer gave back is due again, and the timer that looks then. */
  private dueAt = Infinity;
  private dueTimer: NodeJS.Timeout | undefined;
  private claiming = false;
  private woken = false;
  private stopped = true;

  constructor(
    box: Mailbox,
    private readonly options: DrainerOptions,
  ) {
    this.box = box;
  }

  /** Slots free for more messages. */
  get room(): number {
    return this.stopped ? 0 : this.options.capacity - this.out.size;
  }

  /**
   * Messages the caller claimed itself (Mailbox#enqueueClaimed with this worker and leaseMs):
   * they take slots and are delivered like claimed ones.
   */
  adopt(messages: readonly ClaimedMessage[]): void {
    const until = Date.now() + this.options.leaseMs;
    for (const m of messages) this.out.set(String(m.id), until);
    for (const m of messages) this.options.deliver(m);
  }

  /** Messages delivered and not yet settled. */
  get inFlight(): number {
    return this.out.size;
  }

  start(): void {
    this.stopped = false;
    this.pump();
  }

  /** New messages were enqueued: look now instead of after pollMs (or right after the claim under way). */
  wake(): void {
    if (this.stopped) return;
    if (this.claiming) this.woken = true;
    else if (this.pollTimer) {
      clearTimeout(this.pollTimer);
      this.pollTimer = undefined;
      this.pump();
    }
  }

  /** Stops claiming, writes the pending acks. Unsettled messages go back when their lease ends. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    this.clearDue();
    await this.flushAcks();
  }

  /** The message was delivered: delete it (batched with other acks). */
  ack(id: RowId): Promise<void> {
    this.release(id);
    return new Promise((resolve, reject) => {
      this.acks.push({ id, resolve, reject });
      if (this.acks.length >= this.options.capacity) void this.flushAcks();
      else if (!this.ackTimer) this.ackTimer = setTimeout(() => void this.flushAcks(), this.options.ackDelayMs ?? 20);
    });
  }

  /**
   * The caller deleted the message itself (in a statement of its own, e.g. together with a log
   * row): only frees its slot.
   */
  settled(id: RowId): void {
    this.release(id);
  }

  /** Delivery failed: retry after the backoff (or options.delayMs), or dead-letter it. */
  async nack(id: RowId, error: unknown, options?: NackOptions): Promise<NackResult> {
    this.release(id);
    return this.box.nack(id, this.options.worker, error, this.options.retry, options);
  }

  /**
   * Not tried (the deliverer had no room for it): back to the box after delayMs, no attempt
   * counted. The drainer looks again when they are due, not at the next poll: a row given back for
   * 100 ms would otherwise wait up to pollMs more.
   */
  async defer(ids: readonly RowId[], delayMs: number): Promise<number> {
    for (const id of ids) this.out.delete(String(id));
    try {
      const n = await this.box.defer(ids, this.options.worker, delayMs);
      if (n > 0) this.lookAt(Date.now() + delayMs);
      return n;
    } finally {
      if (!this.stopped) this.pump();
    }
  }

  private lookAt(due: number): void {
    if (this.stopped || due >= this.dueAt) return;
    this.clearDue();
    this.dueAt = due;
    this.dueTimer = setTimeout(
      () => {
        this.clearDue();
        this.wake();
      },
      Math.max(0, due - Date.now()),
    );
  }

  private clearDue(): void {
    clearTimeout(this.dueTimer);
    this.dueTimer = undefined;
    this.dueAt = Infinity;
  }

  private release(id: RowId): void {
    if (this.out.delete(String(id)) && !this.stopped) this.pump();
  }

  private async flushAcks(): Promise<void> {
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const batch = this.acks;
    this.acks = [];
    if (batch.length === 0) return;
    try {
      await this.box.ack(
        batch.map((a) => a.id),
        this.options.worker,
      );
      for (const a of batch) a.resolve();
    } catch (err) {
      for (const a of batch) a.reject(err as Error);
    }
  }

  /** Claims as many messages as there are free slots; schedules the next look. */
  private pump(): void {
    if (this.claiming || this.stopped) return;
    const now = Date.now();
    for (const [id, until] of this.out) if (until <= now) this.out.delete(id);
    const free = this.options.capacity - this.out.size;
    if (free <= 0) return this.wait(); // a settlement, or the poll finding a lease ended, frees a slot
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    this.claiming = true;
    this.woken = false;
    this.box.claim(this.options.queue, { limit: free, leaseMs: this.options.leaseMs, worker: this.options.worker }).then(
      (messages) => {
        this.claiming = false;
        if (this.stopped) return; // the leases run out; another worker takes them
        const until = Date.now() + this.options.leaseMs;
        for (const m of messages) this.out.set(String(m.id), until);
        for (const m of messages) this.options.deliver(m);
        if (messages.length === free || this.woken) this.pump();
        else this.wait();
      },
      (err: Error) => {
        this.claiming = false;
        this.options.onError?.(err);
        this.wait();
      },
    );
  }

  private wait(): void {
    if (this.stopped || this.pollTimer) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      this.pump();
    }, this.options.pollMs);
  }
}
