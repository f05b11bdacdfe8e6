/**
 * One webhook POST over undici's dispatcher API (a handler's callbacks, no response stream): one
 * keep-alive Agent shared by every endpoint (the per-endpoint limit is EndpointGate's);
 * connections are checked by guardedLookup when they are made, redirects are never followed, the
 * connection must be up within connectTimeoutMs and the whole answer in within responseTimeoutMs.
 * Only the first `keepBytes` of the answer are kept (the rest is read and dropped, so the
 * connection can be reused; past MAX_DRAIN it is closed instead). Framework-free.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, errors, type Dispatcher } from 'undici';
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

  /** Per URL: the origin and path, or why it is refused (an IP-literal host, a scheme). */
  private readonly targets = new WeakMap<URL, { origin: string; path: string } | Error>();

  private target(url: URL): { origin: string; path: string } | Error {
    let target = this.targets.get(url);
    if (!target) {
      try {
        checkTarget(url, this.options.allowPrivate);
        target = { origin: url.origin, path: `${url.pathname}${url.search}` };
      } catch (err) {
        target = err as Error;
      }
      this.targets.set(url, target);
    }
    return target;
  }

  post(request: PostRequest): Promise<PostResult> {
    const started = performance.now();
    const done = (partial: Omit<PostResult, 'durationMs'>): PostResult => ({ ...partial, durationMs: Math.round(performance.now() - started) });
    const target = this.target(request.url);
    if (target instanceof Error) return Promise.resolve(done({ headers: {}, response: '', error: target }));
    const { keepBytes, responseTimeoutMs, connectTimeoutMs } = this.options;
    return new Promise<PostResult>((resolve) => {
      let settled = false;
      let status: number | undefined;
      let headers: IncomingHttpHeaders = {};
      const kept: Buffer[] = [];
      let keptBytes = 0;
      let total = 0;
      let controller: Dispatcher.DispatchController | undefined;
      const answer = () => ({ status, headers, response: Buffer.concat(kept).toString('utf8') });
      const finish = (result: Omit<PostResult, 'durationMs'>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(done(result));
      };
      const timer = setTimeout(() => {
        const err = new Error(`no complete answer within ${responseTimeoutMs} ms`);
        controller?.abort(err);
        finish({ headers: {}, response: '', error: err });
      }, responseTimeoutMs);
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: (c) => {
          controller = c;
          if (settled) c.abort(new Error('timed out'));
        },
        onResponseStart: (_c, statusCode, responseHeaders) => {
          status = statusCode;
          headers = responseHeaders;
        },
        onResponseData: (c, chunk) => {
          total += chunk.length;
          if (keptBytes < keepBytes) {
            const part = chunk.subarray(0, keepBytes - keptBytes);
            kept.push(part);
            keptBytes += part.length;
          }
          if (total > MAX_DRAIN) c.abort(new Error('answer too long')); // not worth reading on to keep the connection
        },
        onResponseEnd: () => finish(answer()),
        onResponseError: (_c, err) => {
          if (status !== undefined && total > MAX_DRAIN) return finish(answer()); // our own abort of a long answer
          finish({ headers: {}, response: '', error: explain(err, connectTimeoutMs) });
        },
      };
      try {
        this.agent.dispatch(
          { origin: target.origin, path: target.path, method: 'POST', headers: { ...request.headers, 'content-type': 'application/json' }, body: request.body },
          handler,
        );
      } catch (err) {
        finish({ headers: {}, response: '', error: err as Error }); // e.g. a header undici refuses
      }
    });
  }

  close(): void {
    void this.agent.destroy();
  }
}

function explain(err: Error, connectTimeoutMs: number): Error {
  if (err instanceof errors.ConnectTimeoutError) return new Error(`could not connect within ${connectTimeoutMs} ms`);
  // undici wraps the socket's error (ECONNREFUSED, a refused lookup) as its cause.
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? cause : err;
}
