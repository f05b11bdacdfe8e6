/**
 * Per-endpoint protection, so a slow or dead receiver never holds up the others:
 *
 *   CircuitBreaker   closed → after `failureThreshold` failures in a row, open for `openMs`
 *                    (nothing is sent) → half-open: one probe; its success closes the circuit,
 *                    its failure opens it again
 *   EndpointGate     at most `concurrency` requests in flight per endpoint, plus the breaker
 *
 * The caller asks `admit(now)` before each request: 'go' (then `settle` it), or 'busy' / 'open'
 * with how long to wait; those messages go back to the outbox without counting an attempt.
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

  constructor(private readonly options: GateOptions) {
    this.breaker = new CircuitBreaker(options);
  }

  admit(now: number): Admission {
    if (this.inFlight >= this.options.concurrency) return { verdict: 'busy', waitMs: 0 };
    if (!this.breaker.allow(now)) return { verdict: 'open', waitMs: this.breaker.waitMs(now) };
    this.inFlight++;
    return { verdict: 'go' };
  }

  /** The end of an admitted request: ok (the endpoint answered sanely), failed (down, 5xx, 429, timeout) or neutral. */
  settle(outcome: 'ok' | 'failed' | 'neutral', now: number): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    if (outcome === 'ok') this.breaker.success();
    else if (outcome === 'failed') this.breaker.failure(now);
    else this.breaker.neutral();
  }
}

/** The endpoint a URL belongs to: its origin (scheme, host, port), which is what gets overloaded. */
export function endpointKey(url: URL): string {
  return url.origin;
}
