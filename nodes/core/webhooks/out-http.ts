/**
 * One webhook POST over node:http / node:https with keep-alive agents shared by every endpoint
 * (the per-endpoint limit is EndpointGate's): connections are checked by guardedLookup when they
 * are made, redirects are never followed (http.request does not), the connection must be up
 * within connectTimeoutMs and the whole answer in within responseTimeoutMs. Only the first
 * `keepBytes` of the answer are kept (the rest is read and dropped, so the connection can be
 * reused; past MAX_DRAIN it is closed instead). Framework-free.
 */
import * as http from 'node:http';
import * as https from 'node:https';
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
  headers: http.IncomingHttpHeaders;
  /** The first keepBytes of the answer, as text. */
  response: string;
  durationMs: number;
  error?: Error;
}

const MAX_DRAIN = 1 << 20;

export class WebhookClient {
  private readonly agents: { http: http.Agent; https: https.Agent };
  private readonly lookup: ReturnType<typeof guardedLookup>;

  constructor(private readonly options: PostOptions) {
    const agent = { keepAlive: true, keepAliveMsecs: 10_000, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' as const };
    this.agents = { http: new http.Agent(agent), https: new https.Agent(agent) };
    this.lookup = guardedLookup(options.allowPrivate);
  }

  /** Per URL: the request options, or why it is refused (an IP-literal host, a scheme). */
  private readonly targets = new WeakMap<URL, http.RequestOptions | Error>();

  private target(url: URL): http.RequestOptions | Error {
    let target = this.targets.get(url);
    if (!target) {
      try {
        checkTarget(url, this.options.allowPrivate);
        target = { protocol: url.protocol, hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port || undefined, path: `${url.pathname}${url.search}` };
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
    const secure = request.url.protocol === 'https:';
    // A string body goes out in one write with the headers (a Buffer would make it a writev of two).
    const length = Buffer.byteLength(request.body);
    return new Promise<PostResult>((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (result: Omit<PostResult, 'durationMs'>) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        resolve(done(result));
      };
      const req = (secure ? https : http).request({
        ...target,
        method: 'POST',
        agent: secure ? this.agents.https : this.agents.http,
        lookup: this.lookup,
        headers: { ...request.headers, 'content-type': 'application/json', 'content-length': String(length) },
      });
      const fail = (message: string) => {
        const err = new Error(message);
        req.destroy(err);
        finish({ headers: {}, response: '', error: err });
      };
      const responseTimer = () => {
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => fail(`no complete answer within ${this.options.responseTimeoutMs} ms`), this.options.responseTimeoutMs);
      };
      req.on('socket', (socket) => {
        if (!socket.connecting) return responseTimer(); // a kept-alive connection
        timer = setTimeout(() => fail(`could not connect within ${this.options.connectTimeoutMs} ms`), this.options.connectTimeoutMs);
        socket.once(secure ? 'secureConnect' : 'connect', responseTimer);
      });
      req.on('error', (err) => finish({ headers: {}, response: '', error: err }));
      req.on('response', (res) => {
        const kept: Buffer[] = [];
        let keptBytes = 0;
        let total = 0;
        res.on('data', (chunk: Buffer) => {
          total += chunk.length;
          if (keptBytes < this.options.keepBytes) {
            const part = chunk.subarray(0, this.options.keepBytes - keptBytes);
            kept.push(part);
            keptBytes += part.length;
          }
          if (total > MAX_DRAIN) res.destroy(); // not worth reading on to keep the connection
        });
        const answer = () => ({ status: res.statusCode, headers: res.headers, response: Buffer.concat(kept).toString('utf8') });
        res.on('end', () => finish(answer()));
        res.on('close', () => finish(answer()));
        res.on('error', () => finish(answer()));
      });
      req.end(request.body);
    }).catch((err: Error) => done({ headers: {}, response: '', error: err })); // e.g. a header http.request refuses
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}
