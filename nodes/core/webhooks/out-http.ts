/**
 * One webhook POST over undici (Node's own HTTP client project: about a third less CPU a request
 * than node:http, which matters when one process delivers thousands a second) with one keep-alive
 * Agent shared by every endpoint (the per-endpoint limit is EndpointGate's): connections are
 * checked by guardedLookup when they are made, redirects are never followed (undici's request does
 * not), the connection must be up within connectTimeoutMs and the whole answer in within
 * responseTimeoutMs. Only the first `keepBytes` of the answer are kept (the rest is read and
 * dropped, so the connection can be reused; past MAX_DRAIN it is closed instead). Framework-free.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, errors, request } from 'undici';
import { checkTarget, guardedLookup } from './out-address';

export interface PostOptions {
  allowPrivate: boolean;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  keepBytes: number;
}

export interface PostRequest {
  url: URL;
  body: string;
  headers: Record<string, string>;
}

export interface PostResult {
  /** Undefined when no answer came (refused, timeout, reset). */
  status?: number;
  headers: IncomingHttpHeaders;
  /** The first keepBytes of the answer, as text. */
  response: string;
  durationMs: number;
  error?: Error;
}

const MAX_DRAIN = 1 << 20;

export class WebhookClient {
  private readonly agent: Agent;

  constructor(private readonly options: PostOptions) {
    this.agent = new Agent({
      keepAliveTimeout: 10_000,
      // The whole answer is bounded below (one timer); undici's own per-phase timers stay off.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { timeout: options.connectTimeoutMs, lookup: guardedLookup(options.allowPrivate) },
    });
  }

  /** Per URL: why it is refused (an IP-literal host, a scheme), or null. */
  private readonly refusals = new WeakMap<URL, Error | null>();

  private refusal(url: URL): Error | null {
    let refusal = this.refusals.get(url);
    if (refusal === undefined) {
      try {
        checkTarget(url, this.options.allowPrivate);
        refusal = null;
      } catch (err) {
        refusal = err as Error;
      }
      this.refusals.set(url, refusal);
    }
    return refusal;
  }

  async post(req: PostRequest): Promise<PostResult> {
    const started = performance.now();
    const done = (partial: Omit<PostResult, 'durationMs'>): PostResult => ({ ...partial, durationMs: Math.round(performance.now() - started) });
    const refusal = this.refusal(req.url);
    if (refusal) return done({ headers: {}, response: '', error: refusal });
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.options.responseTimeoutMs);
    try {
      const res = await request(req.url, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { ...req.headers, 'content-type': 'application/json' },
        body: req.body,
        signal: abort.signal,
      });
      const kept: Buffer[] = [];
      let keptBytes = 0;
      let total = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (keptBytes < this.options.keepBytes) {
          const part = chunk.subarray(0, this.options.keepBytes - keptBytes);
          kept.push(part);
          keptBytes += part.length;
        }
        if (total > MAX_DRAIN) {
          res.body.destroy(); // not worth reading on to keep the connection
          break;
        }
      }
      return done({ status: res.statusCode, headers: res.headers as IncomingHttpHeaders, response: Buffer.concat(kept).toString('utf8') });
    } catch (err) {
      return done({ headers: {}, response: '', error: this.explain(err as Error, abort.signal.aborted) });
    } finally {
      clearTimeout(timer);
    }
  }

  private explain(err: Error, timedOut: boolean): Error {
    if (timedOut) return new Error(`no complete answer within ${this.options.responseTimeoutMs} ms`);
    if (err instanceof errors.ConnectTimeoutError) return new Error(`could not connect within ${this.options.connectTimeoutMs} ms`);
    // undici wraps the socket's error (ECONNREFUSED, a refused lookup) as its cause.
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? cause : err;
  }

  close(): void {
    void this.agent.destroy();
  }
}
