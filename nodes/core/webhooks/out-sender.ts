/**
 * Webhooks out: events in, signed POSTs out, at least once, through the outbox.
 *
 *   enqueue   finds the tenant's enabled subscriptions whose patterns take the event's type and
 *             writes one outbox message per subscription, id `<subscriptionId>:<eventId>` (the box
 *             ignores one it already has); resolves once they are stored
 *   deliver   a Drainer claims them; each goes through its endpoint's gate (concurrency limit and
 *             circuit breaker): admitted, it is POSTed with the Standard Webhooks headers; the
 *             gate full, it waits in a short local line, and past that it goes back to the box
 *             without counting an attempt, as it does while the circuit is open
 *   settle    2xx acks; 410 disables the subscription (event `subscription.disabled`) and acks;
 *             429/503 retry after Retry-After; anything else retries on the schedule, and the last
 *             failure moves the message to dead letters (event `delivery.failed`). Every attempt
 *             is written to webhook_deliveries.
 *
 * The body is the event as JSON, serialised once at enqueue and stored as text, so every retry
 * sends the same bytes under the same webhook-id. Framework-free.
 */
import type { SqlClient } from '../db/sql';
import { typesMatch, type PlatformEvent } from '../events/event';
import { deliveryFailed, subscriptionDisabled } from '../events/platform';
import { Deferrals } from '../mailbox/deferrals';
import { Drainer } from '../mailbox/drainer';
import { errorText, Mailbox, type ClaimedMessage, type NackResult, type RetryPolicy } from '../mailbox/mailbox';
import { groupBy } from '../group-by';
import { delivery } from '../metrics/metrics';
import { Batcher } from '../stores/batcher';
import { ForbiddenTargetError } from './out-address';
import { EndpointGate, endpointKey, type GateOptions } from './out-breaker';
import { WebhookClient, type PostOptions, type PostResult } from './out-http';
import { WebhookSigner } from './out-sign';
import { parseRetryAfter } from './out-retry';
import { SubscriptionStore, type Attempt, type AttemptOutcome, type Subscription } from './out-store';

export const WEBHOOK_QUEUE = 'webhooks';

/**
 * The outbox message that delivers event to one subscription (queue WEBHOOK_QUEUE). A resend
 * gives its own messageId (the first may still be in the box) and the stored body: the receiver
 * sees the same webhook-id and bytes.
 */
export function deliveryMessage(subscription: number, event: PlatformEvent, body = JSON.stringify(event)): { messageId: string; payload: Stored } {
  return { messageId: `${subscription}:${event.id}`, payload: { subscription, eventId: event.id, eventType: event.type, body } };
}

/** The outbox message that sends a logged event (its stored body) to one subscription again. */
export function resendMessage(
  subscription: number,
  eventId: string,
  eventType: string,
  body: string,
  resendId: string,
): { messageId: string; payload: Stored } {
  return { messageId: `${subscription}:${eventId}:resend:${resendId}`, payload: { subscription, eventId, eventType, body } };
}

export interface SenderOptions extends PostOptions, GateOptions {
  retry: RetryPolicy;
  /** Unique per process and node. */
  worker: string;
  /** Most messages claimed and not settled, all endpoints together. */
  capacity: number;
  leaseMs: number;
  pollMs: number;
  /** How long the subscriptions of a tenant are cached. */
  cacheMs: number;
  /**
   * Most messages waiting in memory for one endpoint whose gate is full while other endpoints have
   * messages in flight or waiting (else up to capacity).
   */
  maxWaiting: number;
  /**
   * A message waits in memory for a busy endpoint only if the endpoint should get through its
   * line within this long; else it goes back to the box until then (at least busyDelayMs).
   */
  holdMs: number;
  busyDelayMs: number;
}

export interface SenderHooks {
  /** A platform event of the sender's own: subscription.disabled, delivery.failed. */
  publish(event: PlatformEvent): void;
  /** A claim, ack or log write failed; the sender goes on. */
  onError(err: Error): void;
  /** Something changed that a status shows. */
  onChange?(): void;
}

interface Stored {
  subscription: number;
  eventId: string;
  eventType: string;
  /** The JSON body, exactly as sent. */
  body: string;
}

interface Endpoint {
  gate: EndpointGate;
  waiting: { m: ClaimedMessage; since: number }[];
}

export interface SenderStats {
  inFlight: number;
  waiting: number;
  delivered: number;
  failed: number;
  dead: number;
  lastError: string;
}

export class WebhookSender {
  readonly subscriptions: SubscriptionStore;
  private readonly box: Mailbox;
  private readonly drainer: Drainer;
  private readonly client: WebhookClient;
  private readonly writer: Batcher<{ tenant: string; messageId: string; payload: Stored }>;
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly signers = new Map<string, WebhookSigner>();
  private readonly deferrals: Deferrals;
  private sweepTimer: NodeJS.Timeout | undefined;
  private idle: (() => void) | undefined;
  private readonly span: number;
  readonly stats: SenderStats = { inFlight: 0, waiting: 0, delivered: 0, failed: 0, dead: 0, lastError: '' };

  constructor(
    db: SqlClient,
    private readonly options: SenderOptions,
    private readonly hooks: SenderHooks,
  ) {
    this.box = new Mailbox(db, 'outbox');
    this.subscriptions = new SubscriptionStore(db, options.cacheMs, options.worker);
    this.client = new WebhookClient(options);
    this.span = (options.retry.schedule ?? []).reduce((a, b) => a + b, 0);
    this.writer = new Batcher({
      maxBatch: 1_000,
      maxDelayMs: 0,
      maxPending: 100_000,
      write: async (items) => {
        for (const [tenant, group] of groupBy(items, (item) => item.tenant)) {
          // As many as the drainer has room for are stored already claimed by this worker and
          // sent at once; the rest wait in the box for a claim.
          const now = group.slice(0, Math.max(0, this.drainer.room));
          if (now.length > 0)
            this.drainer.adopt(await this.box.enqueueClaimed(tenant, WEBHOOK_QUEUE, now, { worker: options.worker, leaseMs: options.leaseMs }));
          if (now.length < group.length) await this.box.enqueue(tenant, WEBHOOK_QUEUE, group.slice(now.length));
        }
        this.drainer.wake();
      },
    });
    this.drainer = new Drainer(this.box, {
      queue: WEBHOOK_QUEUE,
      worker: options.worker,
      capacity: options.capacity,
      leaseMs: options.leaseMs,
      pollMs: options.pollMs,
      retry: options.retry,
      deliver: (m) => this.admit(m),
      onError: (err) => this.error(err),
    });
    this.deferrals = new Deferrals(this.drainer, (err) => this.error(err));
  }

  start(): void {
    this.drainer.start();
    // A message must not wait in memory until its lease ends (another claim would take it again).
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(1_000, this.options.leaseMs / 4));
  }

  async stop(): Promise<void> {
    clearInterval(this.sweepTimer);
    await this.writer.close();
    await this.drainer.stop();
    // Requests under way settle first (bounded: they time out), so their outcome is kept.
    if (this.stats.inFlight > 0)
      await new Promise<void>((resolve) => {
        const give = setTimeout(resolve, this.options.connectTimeoutMs + this.options.responseTimeoutMs);
        this.idle = () => {
          clearTimeout(give);
          resolve();
        };
      });
    const waiting = [...this.endpoints.values()].flatMap((e) => e.waiting.splice(0));
    this.stats.waiting = 0;
    if (waiting.length)
      await this.drainer
        .defer(
          waiting.map((w) => w.m.id),
          0,
        )
        .catch(() => undefined);
    await this.deferrals.flush();
    await this.subscriptions.close();
    this.client.close();
  }

  /** Stores one outbox message per matching subscription; resolves with their ids once stored. */
  async enqueue(event: PlatformEvent): Promise<number[]> {
    const subs = (await this.subscriptions.all(event.tenant)).filter((s) => s.enabled && typesMatch(s.events, event.type));
    if (subs.length === 0) return [];
    const body = JSON.stringify(event);
    await this.writer.add(subs.map((s) => ({ tenant: event.tenant, ...deliveryMessage(s.id, event, body) })));
    return subs.map((s) => s.id);
  }

  /** Messages of the queue in the box (all tenants). */
  depth(): Promise<number> {
    return this.box.depth(WEBHOOK_QUEUE);
  }

  private error(err: Error): void {
    this.stats.lastError = err.message;
    this.hooks.onError(err);
    this.hooks.onChange?.();
  }

  private endpoint(url: URL): Endpoint {
    const key = endpointKey(url);
    let e = this.endpoints.get(key);
    if (!e) this.endpoints.set(key, (e = { gate: new EndpointGate(this.options), waiting: [] }));
    return e;
  }

  /** A claimed message: through its endpoint's gate, or back to the box. */
  private admit(m: ClaimedMessage): void {
    const stored = m.payload as Stored;
    void this.subscriptions.byId(m.tenantId, Number(stored.subscription)).then(
      (sub) => {
        if (!sub || !sub.enabled) return this.settle(this.drainer.ack(m.id)); // switched off or deleted: nothing to send
        const url = sub.target;
        if (!url) return void this.fail(m, sub, stored, { headers: {}, response: '', durationMs: 0, error: new Error(`not a URL: ${sub.url}`) });
        const endpoint = this.endpoint(url);
        this.tryOrWait(m, sub, stored, url, endpoint);
      },
      (err: Error) => this.deferLater(m, this.options.busyDelayMs, err),
    );
  }

  private tryOrWait(m: ClaimedMessage, sub: Subscription, stored: Stored, url: URL, endpoint: Endpoint): void {
    const now = Date.now();
    const admission = endpoint.gate.admit(now);
    if (admission.verdict === 'go') return void this.send(m, sub, stored, url, endpoint);
    const drain = endpoint.gate.drainMs(endpoint.waiting.length, now);
    if (admission.verdict === 'busy' && this.roomInLine(endpoint) && drain <= this.options.holdMs) {
      endpoint.waiting.push({ m, since: now });
      this.stats.waiting++;
      return;
    }
    // An open circuit holds messages back without counting attempts, but not past the whole
    // schedule: then each further claim counts, and the message reaches dead letters in time.
    if (admission.verdict === 'open' && now - m.createdAt.getTime() > this.span) {
      return void this.fail(m, sub, stored, { headers: {}, response: '', durationMs: 0, error: new Error('circuit open: the endpoint keeps failing') });
    }
    const wait = admission.verdict === 'open' ? Math.max(100, admission.waitMs) : Math.min(60_000, Math.max(this.options.busyDelayMs, drain));
    this.deferLater(m, wait);
  }

  /**
   * maxWaiting keeps room in the capacity for other endpoints' messages; while no other endpoint
   * has any in flight or waiting there is nobody to keep it for, and the line may take it all.
   */
  private roomInLine(endpoint: Endpoint): boolean {
    const n = endpoint.waiting.length;
    if (n < this.options.maxWaiting) return true;
    if (n >= this.options.capacity) return false;
    for (const other of this.endpoints.values()) if (other !== endpoint && (other.gate.inFlight > 0 || other.waiting.length > 0)) return false;
    return true;
  }

  /** Gives back what waited too long in memory, and everything waiting for an open circuit. */
  private sweep(now = Date.now()): void {
    for (const endpoint of this.endpoints.values()) {
      const open = endpoint.gate.breaker.state(now) === 'open';
      const gone = new Set(endpoint.waiting.filter((w) => open || now - w.since >= this.options.leaseMs / 2));
      if (gone.size === 0) continue;
      const delay = open ? Math.max(100, endpoint.gate.breaker.waitMs(now)) : this.options.busyDelayMs;
      for (const w of gone) this.deferLater(w.m, delay);
      this.stats.waiting -= gone.size;
      endpoint.waiting = endpoint.waiting.filter((w) => !gone.has(w));
    }
  }

  private deferLater(m: ClaimedMessage, delayMs: number, err?: Error): void {
    if (err) this.error(err);
    this.deferrals.add(m.id, delayMs);
  }

  private headers(sub: Subscription, stored: Stored): Record<string, string> {
    const now = new Date();
    const headers: Record<string, string> = { 'user-agent': 'Conflux-Webhooks/1', ...sub.headers };
    headers['webhook-id'] = stored.eventId;
    headers['webhook-timestamp'] = String(Math.floor(now.getTime() / 1000));
    if (sub.secret) {
      let signer = this.signers.get(sub.secret);
      if (!signer) this.signers.set(sub.secret, (signer = new WebhookSigner(sub.secret)));
      headers['webhook-signature'] = signer.sign(stored.eventId, now, stored.body);
    }
    if (sub.username !== null) headers.authorization = `Basic ${Buffer.from(`${sub.username}:${sub.password ?? ''}`).toString('base64')}`;
    return headers;
  }

  private async send(m: ClaimedMessage, sub: Subscription, stored: Stored, url: URL, endpoint: Endpoint): Promise<void> {
    let headers: Record<string, string>;
    try {
      headers = this.headers(sub, stored);
    } catch (err) {
      // Our side (a secret the library cannot use): not the endpoint's failure.
      const error = new Error(`cannot sign: ${(err as Error).message}`);
      return this.finish(m, sub, stored, endpoint, { headers: {}, response: '', durationMs: 0, error }, 'neutral');
    }
    this.stats.inFlight++;
    const result = await this.client.post({ url, body: stored.body, headers });
    this.stats.inFlight--;
    if (this.stats.inFlight === 0) this.idle?.();
    const status = result.status;
    const verdict =
      result.error instanceof ForbiddenTargetError ? 'neutral' : status === undefined || status >= 500 || status === 429 || status === 408 ? 'failed' : 'ok';
    await this.finish(m, sub, stored, endpoint, result, verdict);
  }

  /** Settles one admitted message, frees its gate slot and lets the next waiting one in. */
  private async finish(
    m: ClaimedMessage,
    sub: Subscription,
    stored: Stored,
    endpoint: Endpoint,
    result: PostResult,
    verdict: 'ok' | 'failed' | 'neutral',
  ): Promise<void> {
    endpoint.gate.settle(verdict, Date.now(), result.durationMs);
    this.next(endpoint);
    const status = result.status;
    if (status !== undefined && status >= 200 && status < 300) {
      this.stats.delivered++;
      this.drainer.settled(m.id);
      await this.settle(this.subscriptions.delivered(m.id, this.attempt(m, stored, result, 'delivered')));
    } else if (status === 410) {
      const disabled = await this.subscriptions
        .disable(m.tenantId, sub.id, `410 Gone on event ${stored.eventId}`)
        .catch((err: Error) => (this.error(err), false));
      await this.settle(Promise.all([this.log(m, stored, result, 'disabled'), this.drainer.ack(m.id)]));
      if (disabled) {
        this.hooks.publish(
          subscriptionDisabled({
            tenant: m.tenantId,
            subscription: String(sub.id),
            url: sub.url,
            reason: `410 Gone on event ${stored.eventId}`,
            status,
            at: Date.now(),
          }),
        );
      }
    } else {
      await this.fail(m, sub, stored, result);
    }
    this.hooks.onChange?.();
  }

  private async fail(m: ClaimedMessage, sub: Subscription, stored: Stored, result: PostResult): Promise<void> {
    this.stats.failed++;
    const reason = result.error ? errorText(result.error) : `HTTP ${result.status}`;
    const retryAfter = result.status === 429 || result.status === 503 ? parseRetryAfter(result.headers['retry-after']) : undefined;
    let outcome: NackResult;
    try {
      outcome = await this.drainer.nack(m.id, reason, retryAfter === undefined ? undefined : { delayMs: retryAfter });
    } catch (err) {
      return this.error(err as Error);
    }
    await this.settle(this.log(m, stored, result, outcome.outcome === 'dead' ? 'dead' : 'retry'));
    if (outcome.outcome === 'dead') {
      this.stats.dead++;
      this.hooks.publish(
        deliveryFailed({
          tenant: m.tenantId,
          channel: 'webhook',
          subscription: String(sub.id),
          eventId: stored.eventId,
          eventType: stored.eventType,
          attempts: outcome.attempts,
          lastError: reason,
          lastStatus: result.status,
          at: Date.now(),
        }),
      );
    }
  }

  private next(endpoint: Endpoint): void {
    if (endpoint.waiting.length === 0) return;
    if (endpoint.gate.breaker.state(Date.now()) === 'open') return this.sweep();
    const w = endpoint.waiting.shift()!;
    this.stats.waiting--;
    this.admit(w.m); // reads the (cached) subscription again: it may have been switched off meanwhile
  }

  private log(m: ClaimedMessage, stored: Stored, result: PostResult, outcome: AttemptOutcome): Promise<void> {
    return this.subscriptions.record(this.attempt(m, stored, result, outcome));
  }

  private attempt(m: ClaimedMessage, stored: Stored, result: PostResult, outcome: AttemptOutcome): Attempt {
    delivery('webhooks', outcome, result.durationMs / 1000);
    return {
      tenant: m.tenantId,
      subscriptionId: Number(stored.subscription),
      eventId: stored.eventId,
      eventType: stored.eventType,
      attempt: m.attempts,
      status: result.status ?? null,
      outcome,
      durationMs: result.durationMs,
      response: result.response === '' ? null : result.response,
      error: result.error ? errorText(result.error) : null,
      body: stored.body,
    };
  }

  private async settle(work: Promise<unknown>): Promise<void> {
    await work.then(
      () => undefined,
      (err: Error) => this.error(err),
    );
  }
}
