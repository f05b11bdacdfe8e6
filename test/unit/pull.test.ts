/**
 * conflux-http-pull's core against a real HTTP source on loopback (test/support/pull-source.ts):
 * Link headers, each pagination style, the watermark and its boundary at equal timestamps,
 * OAuth2 tokens renewed on expiry and on a 401, 429 with Retry-After, and the bounds.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient, PullError, retryAfterMs, type ClientConfig } from '../../nodes/core/pull/client';
import { TokenSource } from '../../nodes/core/pull/oauth2';
import { linkTarget, parseLinks } from '../../nodes/core/pull/link';
import { paginate, type PagingConfig } from '../../nodes/core/pull/pager';
import { expandVariables } from '../../nodes/core/pull/path';
import { admit, compareMarks, EMPTY_WATERMARK, type WatermarkConfig, type WatermarkState } from '../../nodes/core/pull/watermark';
import { makeItems, PullSource } from '../support/pull-source';

const plain: ClientConfig = { auth: { mode: 'none' }, timeoutMs: 5_000, maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5, maxBodyBytes: 1 << 20 };

async function allPages(source: PullSource, path: string, paging: Partial<PagingConfig>, config: ClientConfig = plain) {
  const client = createClient(config);
  const { pages, more } = paginate(
    client,
    `${source.origin}${path}`,
    { style: 'none', itemsPath: 'data', maxPages: 100, ...paging },
    new AbortController().signal,
  );
  const ids: string[] = [];
  let n = 0;
  for await (const page of pages) {
    n++;
    ids.push(...page.items.map((i) => (i as { id: string }).id));
  }
  return { ids, pages: n, more: more() };
}

describe('pull: Link headers (RFC 8288)', () => {
  it('finds rel="next" among several links, relative targets resolved against the request', () => {
    const header = '<https://api.example.com/items?page=1>; rel="first", </items?page=3&x=a,b>; rel="next last"; title="a, b"';
    assert.equal(linkTarget(header, 'next', 'https://api.example.com/items?page=2'), 'https://api.example.com/items?page=3&x=a,b');
    assert.equal(linkTarget(header, 'LAST', 'https://api.example.com/'), 'https://api.example.com/items?page=3&x=a,b');
    assert.deepEqual(parseLinks(header)[1].params, { rel: 'next last', title: 'a, b' });
  });
  it('takes several header values, unquoted rel, and no next as the end', () => {
    assert.equal(linkTarget(['<a?p=1>; rel=prev', '<a?p=3>;rel=next'], 'next', 'http://h/x/'), 'http://h/x/a?p=3');
    assert.equal(linkTarget('<http://h/?p=1>; rel="prev"', 'next', 'http://h/'), undefined);
    assert.equal(linkTarget(null, 'next', 'http://h/'), undefined);
    assert.equal(linkTarget('garbage, <unterminated', 'next', 'http://h/'), undefined);
  });
});

describe('pull: the URL with ${ENV}', () => {
  it('replaces every variable and names one that is not set', () => {
    const env: Record<string, string> = { HOST: 'api.example.com', VERSION: 'v2' };
    assert.equal(
      expandVariables('https://${HOST}/${VERSION}/items', (n) => env[n]),
      'https://api.example.com/v2/items',
    );
    assert.throws(() => expandVariables('https://${NOPE}/', (n) => env[n]), /\$\{NOPE\} is not set/);
  });
});

describe('pull: the watermark', () => {
  const ts: WatermarkConfig = { kind: 'timestamp', idPath: 'id', valuePath: 'ts' };
  const item = (id: string, t: string) => ({ id, ts: t });

  it('compares ISO timestamps as times, and numeric ids as numbers', () => {
    assert.ok(compareMarks('timestamp', '2026-01-01T00:00:01+01:00', '2026-01-01T00:00:00Z') < 0);
    assert.ok(compareMarks('id', '10', '9') > 0);
    assert.ok(compareMarks('id', 10, 9) > 0);
    assert.ok(compareMarks('id', 'b', 'a') > 0);
  });

  it('advances to the newest item and keeps the ids taken at that timestamp', () => {
    const a = admit(
      ts,
      [item('a', '2026-01-01T00:00:00Z'), item('b', '2026-01-01T00:00:01Z'), item('c', '2026-01-01T00:00:01Z')],
      EMPTY_WATERMARK,
      EMPTY_WATERMARK,
      new Set(),
    );
    assert.equal(a.fresh.length, 3);
    assert.deepEqual(a.next, { value: '2026-01-01T00:00:01Z', boundary: ['b', 'c'] });
  });

  it('at equal timestamps, drops the items taken before and takes the ones that arrived since', () => {
    const committed: WatermarkState = { value: '2026-01-01T00:00:01Z', boundary: ['b', 'c'] };
    // The source is asked from the watermark on (inclusive): b and c again, and d with the same time.
    const page = [item('b', '2026-01-01T00:00:01Z'), item('c', '2026-01-01T00:00:01Z'), item('d', '2026-01-01T00:00:01Z')];
    const a = admit(ts, page, committed, committed, new Set());
    assert.deepEqual(a.fresh, [item('d', '2026-01-01T00:00:01Z')]);
    assert.equal(a.duplicates, 2);
    assert.deepEqual(a.next, { value: '2026-01-01T00:00:01Z', boundary: ['b', 'c', 'd'] });
    // A later item moves the watermark on, and the boundary starts over.
    const b = admit(ts, [...page, item('e', '2026-01-01T00:00:02Z')], a.next, committed, new Set());
    assert.deepEqual(b.fresh, [item('e', '2026-01-01T00:00:02Z')]);
    assert.deepEqual(b.next, { value: '2026-01-01T00:00:02Z', boundary: ['e'] });
  });

  it("drops items below the run's starting watermark and repeats within the run", () => {
    const start: WatermarkState = { value: '2026-01-01T00:00:05Z', boundary: [] };
    const seen = new Set<string>();
    const a = admit(ts, [item('old', '2026-01-01T00:00:04Z'), item('x', '2026-01-01T00:00:06Z')], start, start, seen);
    const b = admit(ts, [item('x', '2026-01-01T00:00:06Z')], a.next, start, seen);
    assert.deepEqual(a.fresh, [item('x', '2026-01-01T00:00:06Z')]);
    assert.equal(a.duplicates + b.duplicates, 2);
  });

  it("an opaque cursor comes from the page body, with the batch's ids as the boundary", () => {
    const cfg: WatermarkConfig = { kind: 'cursor', idPath: 'id', valuePath: 'sync_token' };
    const a = admit(cfg, [{ id: 1 }, { id: 2 }], EMPTY_WATERMARK, EMPTY_WATERMARK, new Set(), { sync_token: 'abc' });
    assert.deepEqual(a.next, { value: 'abc', boundary: ['1', '2'] });
    const b = admit(cfg, [{ id: 2 }, { id: 3 }], a.next, a.next, new Set(), { sync_token: 'def' });
    assert.deepEqual(b.fresh, [{ id: 3 }]);
    assert.deepEqual(b.next, { value: 'def', boundary: ['3'] });
  });
});

describe('pull: pagination against a real source', function () {
  const source = new PullSource();
  before(async () => {
    await source.start();
    source.add(...makeItems(0, 23));
  });
  after(() => source.stop());
  const all = makeItems(0, 23).map((i) => i.id);

  it('page numbers, ending at the short page', async () => {
    const r = await allPages(source, '/page', { style: 'page', pageSize: 5, sizeParam: 'per_page' });
    assert.deepEqual(r.ids, all);
    assert.equal(r.pages, 5);
  });
  it('offset and limit', async () => {
    const r = await allPages(source, '/offset', { style: 'offset', pageSize: 5 });
    assert.deepEqual(r.ids, all);
  });
  it('a cursor from the body', async () => {
    const r = await allPages(source, '/cursor', { style: 'cursor', pageSize: 4, sizeParam: 'limit', cursorPath: 'next_cursor' });
    assert.deepEqual(r.ids, all);
    assert.equal(r.pages, 6);
  });
  it('Link rel="next" headers, the body an array', async () => {
    const r = await allPages(source, '/link', { style: 'link', itemsPath: '', pageSize: 10, sizeParam: 'per_page' });
    assert.deepEqual(r.ids, all);
    assert.equal(r.pages, 3);
  });
  it('stops at the page bound and says pages are left', async () => {
    const r = await allPages(source, '/page', { style: 'page', pageSize: 5, sizeParam: 'per_page', maxPages: 2 });
    assert.deepEqual(r.ids, all.slice(0, 10));
    assert.ok(r.more);
  });
  it('an answer without the items array fails with the reason', async () => {
    await assert.rejects(allPages(source, '/link', { style: 'link', itemsPath: 'data.items' }), /no array of items at "data.items"/);
  });
});

describe('pull: retries, 429 and OAuth2', function () {
  it('waits out 429 with Retry-After, then gives up after the tries allowed', async () => {
    const source = await new PullSource().start();
    try {
      source.add(...makeItems(0, 3));
      source.fail429 = 2;
      source.retryAfter = '1';
      const retries: number[] = [];
      const started = Date.now();
      const r = await allPages(source, '/page', { style: 'page' }, { ...plain, onRetry: (_r, ms) => retries.push(ms) });
      assert.equal(r.ids.length, 3);
      assert.deepEqual(retries, [1000, 1000], 'each wait is the Retry-After');
      assert.ok(Date.now() - started >= 2000, 'it did wait');
      source.fail429 = 10;
      source.retryAfter = '0';
      await assert.rejects(allPages(source, '/page', { style: 'page' }), (err: PullError) => err.status === 429 && /gave up after 3 tries/.test(err.message));
      source.fail429 = 1;
      source.retryAfter = '3600';
      await assert.rejects(allPages(source, '/page', { style: 'page' }), /asks to wait 3600 s, more than the 300 s allowed/);
    } finally {
      await source.stop();
    }
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    assert.equal(retryAfterMs('7'), 7000);
    assert.equal(retryAfterMs(new Date(1_000_000 + 5000).toUTCString(), 1_000_000), 5000);
    assert.equal(retryAfterMs('soon'), undefined);
  });

  it('a 4xx other than 401/429 fails at once with the status', async () => {
    const source = await new PullSource().start();
    try {
      const client = createClient(plain);
      await assert.rejects(
        client.get(`${source.origin}/nothing`, new AbortController().signal),
        (err: PullError) => err.status === 404 && source.requests.length === 1,
      );
    } finally {
      await source.stop();
    }
  });

  it('times out a source that does not answer, and retries', async () => {
    const sockets = new Set<import('node:net').Socket>();
    const silent = http.createServer(() => undefined);
    silent.on('connection', (s) => sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    let tries = 0;
    try {
      const client = createClient({ ...plain, timeoutMs: 200, maxAttempts: 2, onRetry: () => tries++ });
      await assert.rejects(
        client.get(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/`, new AbortController().signal),
        /gave up after 2 tries: no answer within 200 ms/,
      );
      assert.equal(tries, 1);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('OAuth2: fetches a token once, renews it on expiry and when the API refuses it', async () => {
    const source = await new PullSource({ oauthLifetimeS: 3600 }).start();
    try {
      source.add(...makeItems(0, 12));
      const config: ClientConfig = {
        ...plain,
        auth: { mode: 'oauth2', oauth2: { tokenUrl: `${source.origin}/token`, clientId: 'pull', clientSecret: 's3cret' } },
      };
      const client = createClient(config);
      const get = (url: string) => client.get(url, new AbortController().signal);
      await Promise.all([get(`${source.origin}/page`), get(`${source.origin}/page?page=2`)]);
      assert.equal(source.tokensIssued, 1, 'two requests at once share one token request');
      await get(`${source.origin}/page`);
      assert.equal(source.tokensIssued, 1, 'the token is cached');
      source.revoke(); // the provider forgets it: the API answers 401
      const r = await get(`${source.origin}/page`);
      assert.equal(r.status, 200);
      assert.equal(source.tokensIssued, 2, 'a 401 fetched a fresh token');
      assert.equal(source.requests.at(-1)!.authorization, 'Bearer tok-2');
    } finally {
      await source.stop();
    }
  });

  it('OAuth2: a token about to expire is renewed before use; wrong credentials fail with the reason', async () => {
    const source = await new PullSource({ oauthLifetimeS: 120 }).start();
    try {
      const oauth2 = { tokenUrl: `${source.origin}/token`, clientId: 'pull', clientSecret: 's3cret' };
      let now = 1_000_000;
      const tokens = new TokenSource({ ...oauth2, timeoutMs: 5_000, skewMs: 30_000 }, () => now);
      assert.equal(await tokens.authorization(), 'Bearer tok-1');
      now += 89_000; // 31 s before the expiry: still good
      assert.equal(await tokens.authorization(), 'Bearer tok-1');
      now += 2_000; // within the 30 s before it expires: renewed
      assert.equal(await tokens.authorization(), 'Bearer tok-2');
      assert.equal(source.tokensIssued, 2);
      const wrong = createClient({ ...plain, auth: { mode: 'oauth2', oauth2: { ...oauth2, clientSecret: 'nope' } } });
      await assert.rejects(wrong.get(`${source.origin}/page`, new AbortController().signal), /token endpoint answered 401: invalid_client/);
    } finally {
      await source.stop();
    }
  });

  it('API key in a query parameter, basic and bearer in the Authorization header', async () => {
    const source = await new PullSource().start();
    try {
      const signal = new AbortController().signal;
      await createClient({ ...plain, auth: { mode: 'apikey', apiKeyIn: 'query', apiKeyName: 'key', apiKey: 'k 1' } }).get(`${source.origin}/page`, signal);
      assert.match(source.requests.at(-1)!.url, /[?&]key=k(\+|%20)1/);
      await createClient({ ...plain, auth: { mode: 'basic', user: 'u', password: 'p' } }).get(`${source.origin}/page`, signal);
      assert.equal(source.requests.at(-1)!.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
      await createClient({ ...plain, auth: { mode: 'bearer', token: 't0k' } }).get(`${source.origin}/page`, signal);
      assert.equal(source.requests.at(-1)!.authorization, 'Bearer t0k');
    } finally {
      await source.stop();
    }
  });
});
