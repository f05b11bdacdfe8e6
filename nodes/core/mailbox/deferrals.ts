/**
 * Claimed rows given back without counting an attempt (the deliverer did not try: its target was
 * busy, backing off or its circuit open), gathered so that each flush makes one Drainer#defer per
 * 100 ms bucket of delay rather than one UPDATE per row. Framework-free.
 */
import type { RowId } from './mailbox';

export class Deferrals {
  private readonly buckets = new Map<number, RowId[]>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly drainer: { defer(ids: readonly RowId[], delayMs: number): Promise<unknown> },
    private readonly onError: (err: Error) => void,
  ) {}

  /** Gives the row back after about delayMs (rounded up to the 100 ms bucket), within 10 ms. */
  add(id: RowId, delayMs: number): void {
    const bucket = Math.ceil(delayMs / 100) * 100;
    const ids = this.buckets.get(bucket);
    if (ids) ids.push(id);
    else this.buckets.set(bucket, [id]);
    this.timer ??= setTimeout(() => void this.flush(), 10);
  }

  /** Gives back everything gathered now (a stop). */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const all = [...this.buckets];
    this.buckets.clear();
    for (const [delay, ids] of all) await this.drainer.defer(ids, delay).catch((err: Error) => this.onError(err));
  }
}
