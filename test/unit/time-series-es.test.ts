import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { errors, type Client, type ClientOptions } from '@elastic/elasticsearch';
import Mock from '@elastic/elasticsearch-mock';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { openElasticsearch, parseNodes, indexPrefixOf, type ElasticConfig } from '../../nodes/core/stores/elasticsearch';
import { createElasticTimeSeries, ElasticAppendError, type ElasticTimeSeriesOptions } from '../../nodes/core/stores/time-series-es';
import type { Reading } from '../../nodes/core/stores/types';

/** What the mock saw of one request. */
interface Seen {
  method: string;
  path: string;
  querystring: Record<string, string>;
  body: any;
}

/** A request as the mock resolver receives it (its declared type is the pattern type). */
type Params = Seen;

type Handler = (params: Params, call: number) => Record<string, any> | string;

const DAY = 86_400;
const JAN1_2024 = Date.UTC(2024, 0, 1) / 1000;

function sha(tenant: string, n: string, t: number, u?: string): string {
  return createHash('sha256')
    .update(JSON.stringify(u === undefined ? [tenant, n, t] : [tenant, n, t, u]))
    .digest('base64url');
}

function reading(tenant: string, record: ResolvedRecord): Reading {
  return { tenant, record };
}

class Harness {
  readonly mock = new Mock();
  readonly seen: Seen[] = [];
  readonly client: Client;

  constructor(config: Partial<ElasticConfig> = {}, extra: Partial<ClientOptions> = {}) {
    this.client = openElasticsearch({ nodes: ['http://es1:9200'], ...config }, { Connection: this.mock.getConnection(), maxRetries: 0, ...extra });
    this.on('PUT', '/_index_template/:name', () => ({ acknowledged: true }));
  }

  /** Routes method+path to handler, recording every request and counting calls per route. */
  on(method: string, path: string, handler: Handler): this {
    let calls = 0;
    this.mock.clear({ method, path });
    this.mock.add({ method, path }, (p) => {
      const params = p as unknown as Params;
      this.seen.push({ method: params.method, path: params.path, querystring: params.querystring, body: params.body });
      return handler(params, calls++);
    });
    return this;
  }

  requests(method: string, pathStart: string): Seen[] {
    return this.seen.filter((s) => s.method === method && s.path.startsWith(pathStart));
  }

  bulks(): Seen[] {
    return this.requests('POST', '/_bulk');
  }

  store(options: Partial<ElasticTimeSeriesOptions> = {}) {
    return createElasticTimeSeries(this.client, { indexPrefix: 'conflux', retryDelayMs: 0, ...options });
  }

  /** A bulk endpoint answering every item with 201. */
  bulkOk(): this {
    return this.on('POST', '/_bulk', (p) => ({
      errors: false,
      took: 1,
      items: actions(p.body).map((a) => ({ index: { ...a, status: 201, result: 'created' } })),
    }));
  }
}

/** The action lines of a bulk body. */
function actions(body: any[]): { _index: string; _id: string }[] {
  return body.filter((_line, i) => i % 2 === 0).map((line) => line.index);
}

function docs(body: any[]): any[] {
  return body.filter((_line, i) => i % 2 === 1);
}

function item(action: { _index: string; _id: string }, status: number, error?: { type: string; reason: string }) {
  return { index: { ...action, status, ...(error ? { error } : {}) } };
}

describe('Elasticsearch connection', () => {
  it('parses a node list with commas and white space', () => {
    assert.deepEqual(parseNodes('https://es1:9200, https://es2:9200'), ['https://es1:9200', 'https://es2:9200']);
    assert.deepEqual(parseNodes(' http://a:9200 ,,\n http://b:9200 '), ['http://a:9200', 'http://b:9200']);
    assert.deepEqual(parseNodes(''), []);
    assert.throws(() => parseNodes('https://es1:9200, es2 9200'), /"es2" is not a URL/);
    assert.throws(() => parseNodes('ftp://es1:9200'), /http: or https:/);
  });

  it('refuses an empty node list and defaults the index prefix', () => {
    assert.throws(() => openElasticsearch({ nodes: [] }), TypeError);
    assert.equal(indexPrefixOf({}), 'conflux');
    assert.equal(indexPrefixOf({ indexPrefix: ' site1 ' }), 'site1');
  });

  /** A mock connection that also records the headers a real connection would send. */
  function spying(mock: Mock, headers: Record<string, unknown>[]): ClientOptions['Connection'] {
    const Base = mock.getConnection();
    class Spy extends Base {
      override request(params: any, options: any): Promise<any> {
        // UndiciConnection sends Object.assign({}, this.headers, params.headers)
        headers.push({ ...this.headers, ...params.headers });
        return super.request(params, options);
      }
    }
    return Spy;
  }

  async function authorizationSent(config: Partial<ElasticConfig>): Promise<unknown> {
    const mock = new Mock();
    mock.add({ method: 'GET', path: '/' }, () => ({ version: { number: '8.19.0' } }));
    const headers: Record<string, unknown>[] = [];
    const client = openElasticsearch({ nodes: ['https://es1:9200'], ...config }, { Connection: spying(mock, headers), maxRetries: 0 });
    await client.info();
    assert.equal(headers.length, 1);
    return headers[0].authorization;
  }

  it('sends basic auth', async () => {
    const expected = 'Basic ' + Buffer.from('elastic:s3cret:x').toString('base64');
    assert.equal(await authorizationSent({ username: 'elastic', password: 's3cret:x' }), expected);
  });

  it('sends an API key, preferred over username and password', async () => {
    assert.equal(await authorizationSent({ apiKey: 'aWQ6a2V5', username: 'elastic', password: 'x' }), 'ApiKey aWQ6a2V5');
  });

  it('sends no authorization when none is configured', async () => {
    assert.equal(await authorizationSent({}), undefined);
  });

  it('hands the CA and rejectUnauthorized to every connection', () => {
    const mock = new Mock();
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const client = openElasticsearch(
      { nodes: ['https://es1:9200', 'https://es2:9200'], ca: pem, rejectUnauthorized: false },
      { Connection: mock.getConnection() },
    );
    const conns = client.connectionPool.connections;
    assert.deepEqual(
      conns.map((c) => c.url.href),
      ['https://es1:9200/', 'https://es2:9200/'],
    );
    for (const c of conns) {
      assert.equal(c.tls?.ca, pem);
      assert.equal(c.tls?.rejectUnauthorized, false);
    }
  });
});

describe('Elasticsearch time series: writing', () => {
  const t0 = JAN1_2024 + 3600.25;

  it('puts an index template with an explicit, strict mapping', async () => {
    const h = new Harness();
    await h.store({ indexPrefix: 'site1' }).ensureTemplate();
    const puts = h.requests('PUT', '/_index_template/');
    assert.equal(puts.length, 1);
    assert.equal(puts[0].path, '/_index_template/site1-readings');
    const body = puts[0].body;
    assert.deepEqual(body.index_patterns, ['site1-readings-*']);
    assert.equal(body.template.mappings.dynamic, 'strict');
    assert.deepEqual(body.template.mappings.properties, {
      tenant: { type: 'keyword' },
      n: { type: 'keyword' },
      t: { type: 'date', format: 'epoch_millis' },
      ts: { type: 'double' },
      v: { type: 'double' },
      vs: { type: 'keyword', ignore_above: 8191 },
      vb: { type: 'boolean' },
      vd: { type: 'keyword', index: false, doc_values: false },
      s: { type: 'double' },
      u: { type: 'keyword' },
      ut: { type: 'double' },
      id: { type: 'keyword' },
    });
  });

  it('refuses an index prefix Elasticsearch would refuse', () => {
    const h = new Harness();
    for (const indexPrefix of ['Conflux', '', '-x', 'a*b', 'a b', 'a,b']) {
      assert.throws(() => h.store({ indexPrefix }), TypeError, indexPrefix);
    }
  });

  it('sends one bulk request with index, deterministic _id, tenant and fields', async () => {
    const h = new Harness().bulkOk();
    const batch = [
      reading('acme', { n: 'dev1/temp/celsius', t: t0, u: 'Cel', v: 21.5 }),
      reading('globex', { n: 'dev2/door/state', t: t0 + 0.0001, vs: 'open', ut: 60 }),
      reading('acme', { n: 'dev1/alarm', t: t0 + 1, vb: true }),
      reading('acme', { n: 'dev1/blob', t: t0 + 2, vd: 'AAEC', s: 10.5 }),
    ];
    const result = await h.store().append(batch);
    assert.deepEqual(result, { written: 4, rejected: [] });

    const bulks = h.bulks();
    assert.equal(bulks.length, 1);
    assert.deepEqual(bulks[0].querystring, { refresh: 'false' });
    const idx = 'conflux-readings-2024.01.01';
    const ms = Date.UTC(2024, 0, 1, 1, 0, 0, 250);
    assert.deepEqual(bulks[0].body, [
      { index: { _index: idx, _id: sha('acme', 'dev1/temp/celsius', t0, 'Cel') } },
      { tenant: 'acme', n: 'dev1/temp/celsius', t: ms, ts: t0, id: sha('acme', 'dev1/temp/celsius', t0, 'Cel'), u: 'Cel', v: 21.5 },
      { index: { _index: idx, _id: sha('globex', 'dev2/door/state', t0 + 0.0001) } },
      { tenant: 'globex', n: 'dev2/door/state', t: ms, ts: t0 + 0.0001, id: sha('globex', 'dev2/door/state', t0 + 0.0001), vs: 'open', ut: 60 },
      { index: { _index: idx, _id: sha('acme', 'dev1/alarm', t0 + 1) } },
      { tenant: 'acme', n: 'dev1/alarm', t: ms + 1000, ts: t0 + 1, id: sha('acme', 'dev1/alarm', t0 + 1), vb: true },
      { index: { _index: idx, _id: sha('acme', 'dev1/blob', t0 + 2) } },
      { tenant: 'acme', n: 'dev1/blob', t: ms + 2000, ts: t0 + 2, id: sha('acme', 'dev1/blob', t0 + 2), vd: 'AAEC', s: 10.5 },
    ]);
    // the template went first
    assert.equal(h.seen[0].method, 'PUT');
  });

  it('gives a resent reading the same _id, and different readings different ids', async () => {
    const h = new Harness().bulkOk();
    const store = h.store();
    await store.append([reading('acme', { n: 'a', t: t0, v: 1 })]);
    await store.append([
      reading('acme', { n: 'a', t: t0, v: 2 }),
      reading('other', { n: 'a', t: t0, v: 1 }),
      reading('acme', { n: 'b', t: t0, v: 1 }),
      reading('acme', { n: 'a', t: t0 + 0.001, v: 1 }),
    ]);
    const [first, second] = h.bulks().map((b) => actions(b.body).map((a) => a._id));
    assert.equal(second[0], first[0]);
    assert.equal(new Set([...first, ...second]).size, 4);
  });

  it('puts the template only once across appends', async () => {
    const h = new Harness().bulkOk();
    const store = h.store();
    await Promise.all([store.append([reading('acme', { n: 'a', t: t0, v: 1 })]), store.append([reading('acme', { n: 'b', t: t0, v: 1 })])]);
    await store.append([reading('acme', { n: 'c', t: t0, v: 1 })]);
    assert.equal(h.requests('PUT', '/_index_template/').length, 1);
    assert.equal(h.bulks().length, 3);
  });

  it('sends no bulk when the template cannot be put, and tries the template again next time', async () => {
    const h = new Harness().bulkOk();
    h.on('PUT', '/_index_template/:name', (_p, call) =>
      call === 0 ? new errors.ResponseError({ body: { error: { type: 'security_exception' }, status: 403 }, statusCode: 403 } as any) : { acknowledged: true },
    );
    const store = h.store();
    await assert.rejects(store.append([reading('acme', { n: 'a', t: t0, v: 1 })]), (e: unknown) => e instanceof errors.ResponseError && e.statusCode === 403);
    assert.equal(h.bulks().length, 0);
    assert.deepEqual(await store.append([reading('acme', { n: 'a', t: t0, v: 1 })]), { written: 1, rejected: [] });
    assert.equal(h.requests('PUT', '/_index_template/').length, 2);
  });

  it('names indices by the UTC day of t, splitting a batch that spans midnight', async () => {
    const h = new Harness().bulkOk();
    await h
      .store()
      .append([
        reading('acme', { n: 'a', t: JAN1_2024 - 0.0005, v: 1 }),
        reading('acme', { n: 'a', t: JAN1_2024, v: 2 }),
        reading('acme', { n: 'a', t: JAN1_2024 + DAY - 0.001, v: 3 }),
        reading('acme', { n: 'a', t: Date.UTC(2024, 1, 29, 12) / 1000, v: 4 }),
      ]);
    const body = h.bulks()[0].body;
    assert.deepEqual(
      actions(body).map((a) => a._index),
      ['conflux-readings-2023.12.31', 'conflux-readings-2024.01.01', 'conflux-readings-2024.01.01', 'conflux-readings-2024.02.29'],
    );
    // the date field agrees with the index: floor of t in milliseconds
    assert.deepEqual(
      docs(body).map((d) => d.t),
      [JAN1_2024 * 1000 - 1, JAN1_2024 * 1000, (JAN1_2024 + DAY) * 1000 - 1, Date.UTC(2024, 1, 29, 12)],
    );
    assert.equal(docs(body)[0].ts, JAN1_2024 - 0.0005);
  });

  it('names indices by the UTC month of t with the month interval', async () => {
    const h = new Harness().bulkOk();
    await h
      .store({ interval: 'month', indexPrefix: 'p2' })
      .append([
        reading('acme', { n: 'a', t: JAN1_2024 - 1, v: 1 }),
        reading('acme', { n: 'a', t: JAN1_2024, v: 2 }),
        reading('acme', { n: 'a', t: JAN1_2024 + 31 * DAY, v: 3 }),
      ]);
    assert.deepEqual(
      actions(h.bulks()[0].body).map((a) => a._index),
      ['p2-readings-2023.12', 'p2-readings-2024.01', 'p2-readings-2024.02'],
    );
    assert.equal(h.requests('PUT', '/_index_template/')[0].path, '/_index_template/p2-readings');
  });

  it('retries only the items refused for load, and returns the mapping failure as rejected', async () => {
    const h = new Harness();
    h.on('POST', '/_bulk', (p, call) => {
      const acts = actions(p.body);
      if (call === 0) {
        return {
          errors: true,
          took: 3,
          items: [
            item(acts[0], 201),
            item(acts[1], 429, { type: 'es_rejected_execution_exception', reason: 'rejected execution of coordinating operation' }),
            item(acts[2], 400, { type: 'mapper_parsing_exception', reason: "failed to parse field [v] of type [double] in document with id 'x'" }),
            item(acts[3], 429, { type: 'circuit_breaking_exception', reason: 'data too large' }),
            item(acts[4], 200),
          ],
        };
      }
      return { errors: false, took: 1, items: acts.map((a) => item(a, 201)) };
    });
    const batch = [1, 2, 3, 4, 5].map((i) => reading('acme', { n: `s${i}`, t: t0 + i, v: i }));
    const result = await h.store().append(batch);

    const bulks = h.bulks();
    assert.equal(bulks.length, 2);
    assert.deepEqual(
      actions(bulks[1].body).map((a) => a._id),
      [sha('acme', 's2', t0 + 2), sha('acme', 's4', t0 + 4)],
    );
    assert.deepEqual(
      docs(bulks[1].body).map((d) => d.n),
      ['s2', 's4'],
    );
    assert.equal(result.written, 4);
    assert.equal(result.rejected.length, 1);
    assert.equal(result.rejected[0].reading, batch[2]);
    assert.match(result.rejected[0].reason, /^mapper_parsing_exception: failed to parse field \[v\]/);
  });

  it('retries an item refused with 503 or es_rejected_execution_exception under another status', async () => {
    const h = new Harness();
    h.on('POST', '/_bulk', (p, call) => {
      const acts = actions(p.body);
      if (call === 0) {
        return {
          errors: true,
          took: 1,
          items: [
            item(acts[0], 503, { type: 'unavailable_shards_exception', reason: 'primary shard is not active' }),
            item(acts[1], 500, { type: 'es_rejected_execution_exception', reason: 'queue full' }),
          ],
        };
      }
      return { errors: false, took: 1, items: acts.map((a) => item(a, 201)) };
    });
    const result = await h.store().append([reading('acme', { n: 'a', t: t0, v: 1 }), reading('acme', { n: 'b', t: t0, v: 1 })]);
    assert.deepEqual(result, { written: 2, rejected: [] });
    assert.equal(h.bulks().length, 2);
    assert.equal(actions(h.bulks()[1].body).length, 2);
  });

  it('stops retrying after maxRetries and says which readings are still pending', async () => {
    const h = new Harness();
    h.on('POST', '/_bulk', (p) => {
      const acts = actions(p.body);
      return {
        errors: true,
        took: 1,
        items: acts.map((a) => (a._id === sha('acme', 'busy', t0) ? item(a, 429, { type: 'es_rejected_execution_exception', reason: 'busy' }) : item(a, 201))),
      };
    });
    const busy = reading('acme', { n: 'busy', t: t0, v: 1 });
    const err = await h
      .store({ maxRetries: 2 })
      .append([reading('acme', { n: 'ok', t: t0, v: 1 }), busy])
      .then(
        () => assert.fail('append should reject'),
        (e: unknown) => e,
      );
    assert.ok(err instanceof ElasticAppendError);
    assert.match(err.message, /after 2 retries/);
    assert.equal(err.written, 1);
    assert.deepEqual(err.pending, [busy]);
    assert.equal(h.bulks().length, 3);

    const h0 = new Harness();
    h0.on('POST', '/_bulk', (p) => ({ errors: true, took: 1, items: actions(p.body).map((a) => item(a, 429)) }));
    await assert.rejects(h0.store({ maxRetries: 0 }).append([busy]), ElasticAppendError);
    assert.equal(h0.bulks().length, 1);
  });

  it('waits longer before each retry', async () => {
    const h = new Harness();
    const at: number[] = [];
    h.on('POST', '/_bulk', (p) => {
      at.push(Date.now());
      return { errors: true, took: 1, items: actions(p.body).map((a) => item(a, 429)) };
    });
    await assert.rejects(h.store({ maxRetries: 2, retryDelayMs: 40 }).append([reading('acme', { n: 'a', t: t0, v: 1 })]), ElasticAppendError);
    assert.equal(at.length, 3);
    assert.ok(at[1] - at[0] >= 35, `first delay ${at[1] - at[0]}`);
    assert.ok(at[2] - at[1] >= 75, `second delay ${at[2] - at[1]}`);
  });

  it("throws at once on an item failure that is not the document's fault", async () => {
    const h = new Harness();
    h.on('POST', '/_bulk', (p) => {
      const acts = actions(p.body);
      return {
        errors: true,
        took: 1,
        items: [
          item(acts[0], 201),
          item(acts[1], 403, {
            type: 'cluster_block_exception',
            reason: 'index [x] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block]',
          }),
        ],
      };
    });
    const blocked = reading('acme', { n: 'b', t: t0, v: 1 });
    await assert.rejects(h.store().append([reading('acme', { n: 'a', t: t0, v: 1 }), blocked]), (e: unknown) => {
      assert.ok(e instanceof ElasticAppendError);
      assert.match(e.message, /cluster_block_exception/);
      assert.equal(e.written, 1);
      assert.deepEqual(e.pending, [blocked]);
      return true;
    });
    assert.equal(h.bulks().length, 1);
  });

  it('retries a whole bulk request refused with 429', async () => {
    const h = new Harness();
    h.on('POST', '/_bulk', (p, call) =>
      call === 0
        ? new errors.ResponseError({ body: { error: { type: 'circuit_breaking_exception' }, status: 429 }, statusCode: 429 } as any)
        : { errors: false, took: 1, items: actions(p.body).map((a) => item(a, 201)) },
    );
    assert.deepEqual(await h.store().append([reading('acme', { n: 'a', t: t0, v: 1 })]), { written: 1, rejected: [] });
    assert.equal(h.bulks().length, 2);
  });

  it('rejects append when the connection fails, so the caller can resend the batch', async () => {
    const h = new Harness();
    h.on('POST', '/_bulk', () => new errors.ConnectionError('connect ECONNREFUSED 10.0.0.1:9200') as any);
    await assert.rejects(
      h.store().append([reading('acme', { n: 'a', t: t0, v: 1 })]),
      (e: unknown) => e instanceof errors.ConnectionError && /ECONNREFUSED/.test(e.message),
    );
    assert.equal(h.bulks().length, 1);
  });

  it('rejects readings that cannot become documents without sending them', async () => {
    const h = new Harness().bulkOk();
    const bad = [
      reading('', { n: 'a', t: t0, v: 1 }),
      reading('acme', { n: 'a', t: Number.NaN, v: 1 }),
      reading('acme', { n: 'a', t: t0, v: Number.POSITIVE_INFINITY }),
      reading('acme', { n: 'a', t: t0, vs: 5 as unknown as string }),
    ];
    const good = reading('acme', { n: 'ok', t: t0, v: 1 });
    const result = await h.store().append([...bad, good]);
    assert.equal(result.written, 1);
    assert.deepEqual(
      result.rejected.map((r) => r.reading),
      bad,
    );
    assert.match(result.rejected[1].reason, /field "t"/);
    assert.deepEqual(
      docs(h.bulks()[0].body).map((d) => d.n),
      ['ok'],
    );

    const h2 = new Harness().bulkOk();
    assert.deepEqual((await h2.store().append([])).written, 0);
    assert.equal(h2.seen.length, 0);
  });

  it('does not close the client it was given', async () => {
    const h = new Harness().bulkOk();
    let closed = 0;
    h.client.close = async () => {
      closed++;
    };
    const store = h.store();
    await store.close();
    assert.equal(closed, 0);
    assert.equal(store.kind, 'elasticsearch');
  });
});

describe('Elasticsearch time series: reading', () => {
  const t0 = JAN1_2024 + 100;

  function hit(src: Record<string, unknown>, sort: unknown[]) {
    return { _index: 'conflux-readings-2024.01.01', _id: String(sort[2]), _score: null, _source: src, sort };
  }

  function searchWith(h: Harness, hits: ReturnType<typeof hit>[]): Harness {
    return h.on('POST', '/:index/_search', () => ({
      took: 1,
      timed_out: false,
      _shards: { total: 1, successful: 1, skipped: 0, failed: 0 },
      hits: { max_score: null, hits },
    }));
  }

  it('filters by tenant, name and [from, to), sorts by t, n, id and asks for limit hits', async () => {
    const h = searchWith(new Harness(), []);
    const page = await h.store().query({ tenant: 'acme', name: 'dev1/temp', from: t0, to: t0 + 60, limit: 50 });
    assert.deepEqual(page, { items: [] });
    const [req] = h.requests('POST', '/');
    assert.equal(req.path, '/conflux-readings-*/_search');
    assert.equal(req.querystring.ignore_unavailable, 'true');
    assert.equal(req.querystring.allow_no_indices, 'true');
    assert.deepEqual(req.body, {
      size: 50,
      track_total_hits: false,
      _source: ['n', 'ts', 'u', 'v', 'vs', 'vb', 'vd', 's', 'ut'],
      query: { bool: { filter: [{ term: { tenant: 'acme' } }, { term: { n: 'dev1/temp' } }, { range: { ts: { gte: t0, lt: t0 + 60 } } }] } },
      sort: [
        { ts: { order: 'asc', unmapped_type: 'double' } },
        { n: { order: 'asc', unmapped_type: 'keyword' } },
        { id: { order: 'asc', unmapped_type: 'keyword' } },
      ],
    });
  });

  it('uses a prefix query, none for the empty prefix, and 1000 hits by default', async () => {
    const h = searchWith(new Harness(), []);
    const store = h.store();
    await store.query({ tenant: 'acme', prefix: 'dev1/', from: t0 });
    await store.query({ tenant: 'acme', prefix: '', to: t0 });
    const [a, b] = h.requests('POST', '/');
    assert.deepEqual(a.body.query.bool.filter, [{ term: { tenant: 'acme' } }, { prefix: { n: 'dev1/' } }, { range: { ts: { gte: t0 } } }]);
    assert.deepEqual(b.body.query.bool.filter, [{ term: { tenant: 'acme' } }, { range: { ts: { lt: t0 } } }]);
    assert.equal(a.body.size, 1000);
    assert.equal(a.body.search_after, undefined);
  });

  it('maps hits back to SenML records only, and gives a cursor for a full page', async () => {
    const h = searchWith(new Harness(), [
      // tenant and id would never be asked for; a record must not carry them even so
      hit({ tenant: 'acme', id: 'x1', n: 'dev1/temp', ts: t0 + 0.000123, u: 'Cel', v: 21.5 }, [t0 + 0.000123, 'dev1/temp', 'x1']),
      hit({ n: 'dev1/state', ts: t0 + 1, vs: 'open', ut: 60 }, [t0 + 1, 'dev1/state', 'x2']),
      hit({ n: 'dev1/alarm', ts: t0 + 2, vb: false, s: 3 }, [t0 + 2, 'dev1/alarm', 'x3']),
      hit({ n: 'dev1/blob', ts: t0 + 2, vd: 'AAEC' }, [t0 + 2, 'dev1/blob', 'x4']),
    ]);
    const page = await h.store().query({ tenant: 'acme', prefix: 'dev1/', limit: 4 });
    assert.deepEqual(page.items, [
      { n: 'dev1/temp', t: t0 + 0.000123, u: 'Cel', v: 21.5 },
      { n: 'dev1/state', t: t0 + 1, vs: 'open', ut: 60 },
      { n: 'dev1/alarm', t: t0 + 2, vb: false, s: 3 },
      { n: 'dev1/blob', t: t0 + 2, vd: 'AAEC' },
    ]);
    assert.ok(page.cursor);
    assert.match(page.cursor, /^[A-Za-z0-9_-]+$/);
  });

  it('passes the cursor back as search_after, and gives none for a short page', async () => {
    const h = new Harness();
    h.on('POST', '/:index/_search', (_p, call) => ({
      hits: {
        hits:
          call === 0
            ? [hit({ n: 'a', ts: t0 }, [t0, 'a', 'id1']), hit({ n: 'b', ts: t0 + 0.5 }, [t0 + 0.5, 'b', 'id/2+='])]
            : [hit({ n: 'c', ts: t0 + 1 }, [t0 + 1, 'c', 'id3'])],
      },
    }));
    const store = h.store();
    const first = await store.query({ tenant: 'acme', prefix: '', limit: 2 });
    assert.deepEqual(
      first.items.map((r) => r.n),
      ['a', 'b'],
    );
    assert.ok(first.cursor);
    const second = await store.query({ tenant: 'acme', prefix: '', limit: 2, cursor: first.cursor });
    assert.deepEqual(second, { items: [{ n: 'c', t: t0 + 1 }] });
    const reqs = h.requests('POST', '/');
    assert.equal(reqs[0].body.search_after, undefined);
    assert.deepEqual(reqs[1].body.search_after, [t0 + 0.5, 'b', 'id/2+=']);
  });

  it('refuses a limit outside 1..10000, a bad cursor, and a query without exactly one of name and prefix', async () => {
    const h = searchWith(new Harness(), []);
    const store = h.store();
    for (const limit of [0, -1, 10001, 1.5, Number.NaN]) {
      await assert.rejects(store.query({ tenant: 'acme', prefix: '', limit }), RangeError, String(limit));
    }
    await assert.rejects(store.query({ tenant: 'acme', prefix: '', cursor: 'not json' }), RangeError);
    await assert.rejects(store.query({ tenant: 'acme', prefix: '', cursor: Buffer.from('[1,"a"]').toString('base64url') }), RangeError);
    await assert.rejects(store.query({ tenant: 'acme', name: 'a', prefix: 'a' }), TypeError);
    await assert.rejects(store.query({ tenant: 'acme' }), TypeError);
    await assert.rejects(store.query({ tenant: '', prefix: '' }), TypeError);
    assert.equal(h.seen.length, 0);
    await store.query({ tenant: 'acme', prefix: '', limit: 10000 });
    await store.query({ tenant: 'acme', prefix: '', limit: 1 });
    assert.deepEqual(
      h.requests('POST', '/').map((r) => r.body.size),
      [10000, 1],
    );
  });
});

describe('Elasticsearch time series: retention', () => {
  function catting(h: Harness, names: string[]): Harness {
    return (
      h
        .on('GET', '/_cat/indices/:index', () => names.map((index) => ({ index })))
        // a wildcard route: the mock's router caps a :param at 100 characters, a list of names is longer
        .on('DELETE', '/*', () => ({ acknowledged: true }))
    );
  }

  it('deletes only our indices whose day or month ends at or before the cutoff', async () => {
    const h = catting(new Harness(), [
      'conflux-readings-2024.01.03',
      'conflux-readings-2024.01.01',
      'conflux-readings-2024.01.02',
      'conflux-readings-2023.12',
      'conflux-readings-2024.01',
      'conflux-readings-2023.12.31-restored',
      'conflux-readings-archive',
      'conflux-readings-2023.13.01',
      'conflux-readings-2023.02.30',
      'conflux2-readings-2020.01.01',
      'conflux-readings-x-readings-2020.01.01',
    ]);
    const cutoff = Date.UTC(2024, 0, 3) / 1000;
    assert.equal(await h.store().dropBefore(cutoff), undefined);

    const [cat] = h.requests('GET', '/_cat/indices');
    assert.equal(cat.path, '/_cat/indices/conflux-readings-*');
    assert.equal(cat.querystring.format, 'json');
    const deletes = h.requests('DELETE', '/');
    assert.equal(deletes.length, 1);
    assert.deepEqual(deletes[0].path.slice(1).split(','), ['conflux-readings-2023.12', 'conflux-readings-2024.01.01', 'conflux-readings-2024.01.02']);
    assert.equal(deletes[0].querystring.ignore_unavailable, 'true');
  });

  it('deletes nothing when no index is old enough', async () => {
    const h = catting(new Harness(), ['conflux-readings-2024.01.02', 'conflux-readings-2024.01']);
    await h.store().dropBefore(Date.UTC(2024, 0, 2, 23, 59, 59) / 1000);
    assert.equal(h.requests('DELETE', '/').length, 0);
    await assert.rejects(h.store().dropBefore(Number.NaN), RangeError);
  });

  it('deletes many indices in several requests', async () => {
    const names = Array.from({ length: 120 }, (_, i) => `conflux-readings-${new Date(Date.UTC(2020, 0, 1 + i)).toISOString().slice(0, 10).replace(/-/g, '.')}`);
    const h = catting(new Harness(), names);
    await h.store().dropBefore(Date.UTC(2025, 0, 1) / 1000);
    const deleted = h.requests('DELETE', '/').map((d) => d.path.slice(1).split(','));
    assert.deepEqual(
      deleted.map((d) => d.length),
      [50, 50, 20],
    );
    assert.deepEqual(deleted.flat(), [...names].sort());
  });
});
