/**
 * FTP connections shared by every delivery, bounded in total and per target: logged-in
 * connections are reused for the next files of the same target (login and TLS handshakes are
 * most of an FTP upload's cost), kept idle for idleMs, and closed early when another target needs
 * the room. Waiters are served in order of arrival, each as soon as its own target has room, so a
 * busy target never holds up another that has some. A closing connection counts until it is
 * closed, so the servers never see more than the bounds either. Framework-free: connect() makes
 * the client, dispose() ends it.
 */

/** What the pool needs of a connection (basic-ftp's Client has it). */
export interface PooledClient {
  readonly closed: boolean;
  close(): void;
}

export interface PoolTarget {
  key: string;
  maxConnections: number;
}

export interface PoolOptions<C extends PooledClient, T extends PoolTarget> {
  /** Connections open at once, all targets together (connecting ones included). */
  maxTotal: number;
  /** Connections to one target at most (a target's own maxConnections may be lower). */
  maxPerTarget: number;
  /** An unused connection is closed after this long. */
  idleMs: number;
  /** Most deliveries waiting for a connection; past it use() rejects at once. */
  maxWaiting: number;
  connect(target: T): Promise<C>;
  /**
   * Closes a connection; it counts against the bounds until this resolves (a server counts a
   * connection until it has seen it close). Default: close() at once.
   */
  dispose?(client: C): Promise<void>;
}

/**
 * Fairness under load: once the oldest waiter has waited STARVING_MS, a connection older than
 * SLICE_MS goes to it (closed, and one opened for its target) rather than to the next delivery of
 * its own target; younger ones are still reused, so each login carries a slice's worth of files.
 */
const STARVING_MS = 1_000;
const SLICE_MS = 5_000;

export class PoolFullError extends Error {
  override name = 'PoolFullError';
}

interface Idle<C> {
  client: C;
  timer: NodeJS.Timeout;
  since: number;
}

interface Slot<C> {
  open: number; // busy + idle + connecting
  idle: Idle<C>[];
}

interface Waiter<C, T> {
  target: T;
  since: number;
  resolve(lease: Lease<C>): void;
  reject(err: Error): void;
}

/** A connection lent out; `fresh` when it was opened for this lease (not reused). */
export interface Lease<C> {
  client: C;
  fresh: boolean;
}

export class FtpPool<C extends PooledClient, T extends PoolTarget> {
  private readonly slots = new Map<string, Slot<C>>();
  private readonly born = new WeakMap<C, number>();
  private waiters: Waiter<C, T>[] = [];
  private total = 0;
  /** Idle connections, all targets together. */
  private idleTotal = 0;
  private closing = false;
  /** The most connections ever open at once (for tests and the bench). */
  peak = 0;

  constructor(private readonly options: PoolOptions<C, T>) {
    if (!(options.maxTotal >= 1 && options.maxPerTarget >= 1)) throw new RangeError('maxTotal and maxPerTarget must be >= 1');
  }

  get open(): number {
    return this.total;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Runs fn on a connection of the target; a connection fn failed on is closed, not reused. */
  async use<R>(target: T, fn: (client: C, fresh: boolean) => Promise<R>): Promise<R> {
    const lease = await this.acquire(target);
    let ok = false;
    try {
      const result = await fn(lease.client, lease.fresh);
      ok = true;
      return result;
    } finally {
      this.release(target, lease.client, ok);
    }
  }

  acquire(target: T): Promise<Lease<C>> {
    if (this.closing) return Promise.reject(new Error('the FTP pool is closed'));
    const now = this.tryTake(target);
    if (now) return now;
    if (this.waiters.length >= this.options.maxWaiting) return Promise.reject(new PoolFullError('too many deliveries waiting for an FTP connection'));
    return new Promise((resolve, reject) => this.waiters.push({ target, since: Date.now(), resolve, reject }));
  }

  /** Gives the connection back: kept for reuse when ok and still open, else closed. */
  release(target: T, client: C, ok: boolean): void {
    const slot = this.slot(target.key);
    if (!ok || client.closed || this.closing) void this.dispose(client, slot, target.key);
    else {
      const idle: Idle<C> = {
        client,
        since: Date.now(),
        timer: setTimeout(() => {
          const at = slot.idle.indexOf(idle);
          if (at < 0) return;
          slot.idle.splice(at, 1);
          this.idleTotal--;
          void this.dispose(client, slot, target.key);
        }, this.options.idleMs),
      };
      slot.idle.push(idle);
      this.idleTotal++;
    }
    this.pump();
  }

  /** Closes every idle connection and refuses new leases; leased ones close when given back. */
  async close(): Promise<void> {
    this.closing = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error('the FTP pool is closed'));
    const closing: Promise<void>[] = [];
    for (const [key, slot] of this.slots)
      for (const idle of slot.idle.splice(0)) {
        this.idleTotal--;
        clearTimeout(idle.timer);
        closing.push(this.dispose(idle.client, slot, key));
      }
    await Promise.all(closing);
  }

  /** Ends a connection; its slot is free once it is closed. */
  private dispose(client: C, slot: Slot<C>, key: string): Promise<void> {
    // The waiters are served after the caller's own bookkeeping (a microtask), never in the middle of a pump.
    const done = () => {
      this.forget(slot, key);
      queueMicrotask(() => this.pump());
    };
    if (!this.options.dispose) {
      client.close();
      done();
      return Promise.resolve();
    }
    return this.options.dispose(client).then(done, done);
  }

  private slot(key: string): Slot<C> {
    let slot = this.slots.get(key);
    if (!slot) this.slots.set(key, (slot = { open: 0, idle: [] }));
    return slot;
  }

  private forget(slot: Slot<C>, key: string): void {
    slot.open--;
    this.total--;
    if (slot.open === 0 && slot.idle.length === 0) this.slots.delete(key);
  }

  /** A lease at once if the target has an idle connection or room for a new one; else undefined. */
  private tryTake(target: T): Promise<Lease<C>> | undefined {
    const slot = this.slot(target.key);
    while (slot.idle.length > 0) {
      const idle = slot.idle.pop()!; // the most recently used: least likely to have timed out
      this.idleTotal--;
      clearTimeout(idle.timer);
      if (!idle.client.closed) return Promise.resolve({ client: idle.client, fresh: false });
      void this.dispose(idle.client, slot, target.key);
    }
    if (slot.open >= Math.min(this.options.maxPerTarget, target.maxConnections)) return undefined;
    if (this.total >= this.options.maxTotal) {
      this.evictIdle(target.key); // its slot is free once it has closed; then the waiters are served
      return undefined;
    }
    slot.open++;
    this.total++;
    this.peak = Math.max(this.peak, this.total);
    return this.options.connect(target).then(
      (client) => {
        this.born.set(client, Date.now());
        return { client, fresh: true };
      },
      (err: Error) => {
        this.forget(slot, target.key);
        this.pump();
        throw err;
      },
    );
  }

  /** Starts closing the longest-idle connection of another target to make room; false if there is none. */
  private evictIdle(except: string): boolean {
    if (this.idleTotal === 0) return false;
    let oldest: { key: string; slot: Slot<C>; idle: Idle<C> } | undefined;
    for (const [key, slot] of this.slots) {
      if (key === except) continue;
      const first = slot.idle[0];
      if (first && (!oldest || first.since < oldest.idle.since)) oldest = { key, slot, idle: first };
    }
    if (!oldest) return false;
    oldest.slot.idle.shift();
    this.idleTotal--;
    clearTimeout(oldest.idle.timer);
    void this.dispose(oldest.idle.client, oldest.slot, oldest.key);
    return true;
  }

  /**
   * Serves waiters: first those whose own target has an idle connection (reuse beats a new
   * login; under load only a connection younger than SLICE_MS), then the rest in order of
   * arrival, opening connections or closing idle ones of other targets to make room.
   */
  private pump(): void {
    if (this.waiters.length === 0) return;
    const serve = (w: Waiter<C, T>, lease: Promise<Lease<C>>) => lease.then(w.resolve, w.reject);
    let still: Waiter<C, T>[] = this.waiters;
    if (!this.closing) {
      const now = Date.now();
      const starving = now - still[0].since >= STARVING_MS;
      const rest: Waiter<C, T>[] = [];
      for (const w of still) {
        const slot = this.slots.get(w.target.key);
        const young = slot?.idle.some((i) => !starving || now - (this.born.get(i.client) ?? 0) < SLICE_MS);
        const lease = young ? this.tryTake(w.target) : undefined;
        if (lease) serve(w, lease);
        else rest.push(w);
      }
      still = rest;
    }
    const left: Waiter<C, T>[] = [];
    for (const [i, w] of still.entries()) {
      // Full, and nothing idle to close: no one further back can be served either.
      if (this.total >= this.options.maxTotal && this.idleTotal === 0) {
        left.push(...still.slice(i));
        break;
      }
      const lease = this.closing ? undefined : this.tryTake(w.target);
      if (lease) serve(w, lease);
      else left.push(w);
    }
    this.waiters = left;
    if (this.closing) for (const w of this.waiters.splice(0)) w.reject(new Error('the FTP pool is closed'));
  }
}
