/**
 * Per-endpoint protection, so a slow or dead receiver never holds up the others:
 *
 *   CircuitBreaker   closed → after `failureThreshold` failures in a row, open for `openMs`
 *                    (nothing is sent) → half-open: one probe; its success closes the circuit,
 *                    its failure opens it again
 *   EndpointGate     at most `concurrency` requests in flight per endpoint, plus the breaker
 *
 * The caller asks `admit(now)` before each request: 'go' (then `settle` it), or 'busy' / 'open'
 * with how long to wait. A busy endpoint's messages wait in a local line while `drainMs` says it
 * will get through them soon; past that, and while the circuit is open, they go back to the
 * outbox without counting an attempt.
 * Framework-free and clock-injected for the unit tests.
 */

export interface BreakerOptions {
  /** Failures in a row that open the circuit. */
  failureThreshold: number;
  /** How long the circuit stays open before one probe is let through. */
  openMs: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
  private failures = 0;
  private openUntil = 0;
  private probing = false;
  private opened = false;

  constructor(private readonly options: BreakerOptions) {}

  state(now: number): BreakerState {
    if (!this.opened) return 'closed';
    return now < this.openUntil ? 'open' : 'half-open';
  }

  /** Whether a request may go now; in half-open only one (the probe) at a time. */
  allow(now: number): boolean {
    const state = this.state(now);
    if (state === 'closed') return true;
    if (state === 'open' || this.probing) return false;
    this.probing = true;
    return true;
  }

  /** Milliseconds until a request may be tried again (0 when closed). */
  waitMs(now: number): number {
    return this.opened ? Math.max(0, this.openUntil - now) : 0;
  }

  success(): void {
    this.failures = 0;
    this.opened = false;
    this.probing = false;
  }

  failure(now: number): void {
    this.failures++;
    if (this.probing || (!this.opened && this.failures >= this.options.failureThreshold)) {
      this.opened = true;
      this.openUntil = now + this.options.openMs;
    }
    this.probing = false;
  }

  /** The request let through ended with no verdict on the endpoint (e.g. our own error). */
  neutral(): void {
    this.probing = false;
  }
}

export interface GateOptions extends BreakerOptions {
  /** Most requests in flight to one endpoint. */
  concurrency: number;
}

export type Admission = { verdict: 'go' } | { verdict: 'busy' | 'open'; waitMs: number };

export class EndpointGate {
  readonly breaker: CircuitBreaker;
  inFlight = 0;
  /** Start times of the requests in flight, earliest first. */
  private readonly starts: number[] = [];
  /** Moving average of the request durations, ms. */
  private averageMs: number | undefined;

  constructor(private readonly options: GateOptions) {
    this.breaker = new CircuitBreaker(options);
  }

  admit(now: number): Admission {
    if (this.inFlight >= this.options.concurrency) return { verdict: 'busy', waitMs: 0 };
    if (!this.breaker.allow(now)) return { verdict: 'open', waitMs: this.breaker.waitMs(now) };
    this.inFlight++;
    this.starts.push(now);
    return { verdict: 'go' };
  }

  /**
   * The end of an admitted request: ok (the endpoint answered sanely), failed (down, 5xx, 429,
   * timeout) or neutral (our own refusal). durationMs feeds the drain estimate.
   */
  settle(outcome: 'ok' | 'failed' | 'neutral', now: number, durationMs?: number): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.starts.shift();
    if (durationMs !== undefined) this.averageMs = this.averageMs === undefined ? durationMs : 0.8 * this.averageMs + 0.2 * durationMs;
    if (outcome === 'ok') this.breaker.success();
    else if (outcome === 'failed') this.breaker.failure(now);
    else this.breaker.neutral();
  }

  /**
   * About how long until `queued` more requests would have gone through at the endpoint's pace:
   * each takes the average duration, or as long as the oldest in flight has taken so far if that
   * is longer (a receiver that stopped answering shows before any duration is known).
   */
  drainMs(queued: number, now: number): number {
    const oldest = this.starts.length ? now - this.starts[0] : 0;
    const each = Math.max(1, this.averageMs ?? 0, oldest);
    return ((queued + 1) * each) / this.options.concurrency;
  }
}

/** The endpoint a URL belongs to: its origin (scheme, host, port), which is what gets overloaded. */
export function endpointKey(url: URL): string {
  return url.origin;
}
