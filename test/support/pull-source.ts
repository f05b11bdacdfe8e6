/**
 * A third party's paginated REST API on loopback, for the pull tests: items {id, ts, value}
 * ordered by (ts, id), filtered by ?since=<ts> (inclusive, as the pull expects), served as
 *
 *   GET /page?page=N&per_page=S      {"data": [...]}
 *   GET /offset?offset=O&limit=S     {"data": [...]}
 *   GET /cursor?cursor=C&limit=S     {"data": [...], "next_cursor": C'}   (C is the offset)
 *   GET /link?page=N&per_page=S      [...] with Link: <...>; rel="next"
 *   POST /token                      OAuth2 client credentials (client "pull", secret "s3cret")
 *
 * with, when configured, a bearer token required from /token, and the next `fail429` answers
 * refused with 429 and Retry-After. Every request is logged.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SourceItem {
  id: string;
  ts: string;
  value: number;
}

export interface SourceOptions {
  /** Require a bearer token from /token, valid this many seconds (expires_in). */
  oauthLifetimeS?: number;
  /** Default page size when the request names none. */
  pageSize?: number;
}

export class PullSource {
  readonly items: SourceItem[] = [];
  readonly requests: Array<{ method: string; url: string; authorization?: string }> = [];
  fail429 = 0;
  retryAfter = '0';
  tokensIssued = 0;
  /** Tokens the API accepts; revoke() empties it (the API then answers 401). */
  readonly valid = new Set<string>();
  private server?: http.Server;
  origin = '';

  constructor(private readonly options: SourceOptions = {}) {}

  add(...items: SourceItem[]): void {
    this.items.push(...items);
    this.items.sort((a, b) => (a.ts === b.ts ? (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.ts < b.ts ? -1 : 1));
  }

  revoke(): void {
    this.valid.clear();
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
    const url = new URL(req.url ?? '/', this.origin);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const basic = Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString();
        if (form.get('grant_type') !== 'client_credentials' || basic !== 'pull:s3cret') return json(401, { error: 'invalid_client' });
        const token = `tok-${++this.tokensIssued}`;
        this.valid.add(token);
        json(200, { access_token: token, token_type: 'bearer', expires_in: this.options.oauthLifetimeS ?? 3600 });
      });
      return;
    }
    if (this.options.oauthLifetimeS !== undefined && !this.valid.has((req.headers.authorization ?? '').replace(/^Bearer /, ''))) {
      return json(401, { error: 'invalid_token' });
    }
    if (this.fail429 > 0) {
      this.fail429--;
      return json(429, { error: 'slow down' }, { 'retry-after': this.retryAfter });
    }
    const since = url.searchParams.get('since');
    const list = since ? this.items.filter((i) => i.ts >= since) : this.items;
    const q = (name: string, fallback: number) => (url.searchParams.has(name) ? Number(url.searchParams.get(name)) : fallback);
    const size = this.options.pageSize ?? 5;
    switch (url.pathname) {
      case '/page': {
        const per = q('per_page', size);
        const page = q('page', 1);
        return json(200, { data: list.slice((page - 1) * per, page * per) });
      }
      case '/offset': {
        const limit = q('limit', size);
        const offset = q('offset', 0);
        return json(200, { data: list.slice(offset, offset + limit) });
      }
      case '/cursor': {
        const limit = q('limit', size);
        const at = q('cursor', 0);
        const data = list.slice(at, at + limit);
        return json(200, { data, next_cursor: at + limit < list.length ? String(at + limit) : null });
      }
      case '/link': {
        const per = q('per_page', size);
        const page = q('page', 1);
        const headers: Record<string, string> = {};
        if (page * per < list.length) {
          const next = new URL(url);
          next.searchParams.set('page', String(page + 1));
          headers.link = `<${next.pathname}${next.search}>; rel="next", <${url.pathname}?page=1>; rel="first"`;
        }
        return json(200, list.slice((page - 1) * per, page * per), headers);
      }
      default:
        return json(404, { error: 'not found' });
    }
  }
}

/** n items from `start` on, `perTs` of them sharing each timestamp. */
export function makeItems(start: number, n: number, perTs = 1): SourceItem[] {
  return Array.from({ length: n }, (_, i) => {
    const k = start + i;
    return { id: `item-${String(k).padStart(5, '0')}`, ts: new Date(Date.UTC(2026, 0, 1) + Math.floor(k / perTs) * 1000).toISOString(), value: k };
  });
}
