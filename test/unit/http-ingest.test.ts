/**
 * The HTTP device endpoint's request handling (nodes/core/protocol/http-ingest.ts) against a real
 * registry in PGlite: formats, credentials, every refusal with its problem document, rate limit,
 * backpressure, UDP tokens, the bounded body reader, and a fuzz over random requests.
 */
import { strict as assert } from 'node:assert';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { deriveScramKeys } from '../../nodes/core/auth/scram';
import { encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { encodeSenmlXml } from '../../nodes/core/codecs/senml-xml';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { createDeviceDirectory, type DeviceDirectory } from '../../nodes/core/devices/directory';
import { TenantRateLimiter } from '../../nodes/core/devices/tenant-rate';
import { UdpTokens } from '../../nodes/core/devices/udp-tokens';
import {
  createHttpIngest,
  readBody,
  type HttpIngestOptions,
  type HttpResponse,
  type IngestedMessage,
  type IngestRequestWithBody,
} from '../../nodes/core/protocol/http-ingest';
import { isProblem, PROBLEM_BASE } from '../../nodes/core/protocol/problem';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';

const KEY = 'dev-1 secret key';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
type Json = Record<string, any>;

const bearer = (serial: string, key: string) => ({ authorization: `Bearer ${serial}:${key}` });
const basic = (serial: string, key: string) => ({ authorization: `Basic ${Buffer.from(`${serial}:${key}`).toString('base64')}` });
const json = (r: HttpResponse): Json => JSON.parse(r.body.toString());

/** Asserts r is a problem document of this status and type; returns it. */
function assertProblem(r: HttpResponse, status: number, slug: string): Json {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.body}`);
  assert.ok(isProblem(r), `content-type ${r.headers['content-type']}`);
  const doc = json(r);
  assert.equal(doc.type, PROBLEM_BASE + slug);
  assert.equal(doc.status, status);
  assert.equal(typeof doc.title, 'string');
  return doc;
}

describe('http ingest', function () {
  this.timeout(30_000);
  let db: SqlClient;
  let directory: DeviceDirectory;
  let acmeKey: string;
  let globexKey: string;
  let readOnlyKey: string;

  before(async () => {
    db = await openSql({});
    await migrate(db);
    await createTenant(db, { id: 'acme', name: 'Acme' });
    await createTenant(db, { id: 'globex', name: 'Globex' });
    const store = createBusinessStore(db);
    const dev = await store.create('acme', 'devices', { serial: 'dev-1' });
    await store.create('acme', 'device_keys', { device_id: dev.id, key: KEY });
    await store.create('acme', 'devices', { serial: 'dev:colon' }).then((d) => store.create('acme', 'device_keys', { device_id: d.id, key: 'k:with:colons' }));
    await store.create('globex', 'devices', { serial: 'gx-1' });
    acmeKey = (await store.create('acme', 'api_keys', { name: 'ingest' })).key as string;
    globexKey = (await store.create('globex', 'api_keys', { name: 'ingest' })).key as string;
    readOnlyKey = (await store.create('acme', 'api_keys', { name: 'reader', scopes: ['read'] })).key as string;
    directory = createDeviceDirectory(db);
  });
  after(() => db?.close());

  /** The flow as the ingest sees it: emit() holds each message until the test finishes or fails it. */
  function flow(max: number) {
    const open = new Map<string, { resolve(): void; reject(err: Error): void }>();
    return {
      inFlight: {
        max,
        get size() {
          return open.size;
        },
      },
      emit: (m: IngestedMessage) => new Promise<void>((resolve, reject) => open.set(m._msgid, { resolve, reject })).finally(() => open.delete(m._msgid)),
      finish: (id: string) => open.get(id)!.resolve(),
      fail: (id: string, reason: string) => open.get(id)!.reject(new Error(reason)),
      waitFor: async (n: number) => {
        while (open.size < n) await new Promise((r) => setImmediate(r));
        return [...open.keys()];
      },
    };
  }

  function harness(options: Partial<HttpIngestOptions> = {}) {
    const emitted: IngestedMessage[] = [];
    const tokens = new UdpTokens(async () => db, { ttlMs: 300_000 });
    const inFlight = options.inFlight ?? { max: 100, size: 0 };
    const emit = options.emit;
    const ingest = createHttpIngest({
      directory: async () => directory,
      sql: async () => db,
      maxBodyBytes: 1024,
      rate: new TenantRateLimiter({ sql: async () => db, scope: 'http-test', ratePerSecond: 0 }),
      tokens,
      ...options,
      emit: (m) => {
        emitted.push(m);
        return emit?.(m);
      },
      inFlight,
    });
    const post = (over: Partial<Omit<IngestRequestWithBody, 'body'>> & { body?: Buffer | string }) =>
      ingest.handle({
        route: 'telemetry',
        method: 'POST',
        serial: 'dev-1',
        query: {},
        ...over,
        headers: { ...bearer('dev-1', KEY), 'content-type': 'text/plain', ...over.headers },
        body: typeof over.body === 'string' ? Buffer.from(over.body) : (over.body ?? Buffer.from('t|21.5')),
      });
    return { ingest, emitted, inFlight, tokens, post };
  }

  describe('accepts every content type as canonical records of the authenticated device', () => {
    const T = 1_750_000_000;
    const cases: Array<[string, string, Buffer | string, string]> = [
      ['application/senml+json', 'senml+json', JSON.stringify([{ bn: 'dev-2/', n: 'temp', u: 'Cel', v: 21.5, t: T }]), 'dev-1/dev-2/temp'],
      ['application/senml+cbor', 'senml+cbor', Buffer.from(encodeSenmlCbor([{ n: 'temp', u: 'Cel', v: 21.5, t: T }])), 'dev-1/temp'],
      ['application/senml+xml', 'senml+xml', encodeSenmlXml([{ n: 'temp', u: 'Cel', v: 21.5, t: T }]), 'dev-1/temp'],
      ['text/plain; charset=utf-8', 'ultralight', 'temp|21.5', 'dev-1/temp'],
      ['application/json', 'senml+json', ` [{"n":"dev-1/temp","u":"Cel","v":21.5,"t":${T}}]`, 'dev-1/temp'],
      ['application/json', 'attributes+json', '{"temp": 21.5, "on": true, "mode": {"value": "eco"}}', 'dev-1/temp'],
    ];
    for (const [type, format, body, name] of cases) {
      it(`${type} → ${format}`, async () => {
        const h = harness();
        const r = await h.post({ headers: { 'content-type': type }, body });
        assert.equal(r.status, 202, String(r.body));
        assert.equal(r.headers['content-type'], 'application/json');
        assert.equal(r.headers.location, undefined);
        const { id } = json(r);
        assert.match(id, UUID);
        assert.equal(h.emitted.length, 1);
        const msg = h.emitted[0];
        assert.equal(msg._msgid, id, 'the 202 id is the message id');
        assert.deepEqual(msg.device, { tenant: 'acme', id: 'dev-1' });
        assert.equal(msg.source?.transport, 'http');
        assert.equal(msg.source?.format, format);
        const rec = msg.payload.find((p) => p.n === name);
        assert.ok(rec, `record ${name} in ${JSON.stringify(msg.payload)}`);
        assert.equal(rec.v, 21.5);
        for (const p of msg.payload) assert.ok(p.n.startsWith('dev-1/'), `${p.n} is under the device's own names`);
      });
    }

    it('with an API key, with Basic, on the FIWARE route, and for a serial holding a colon', async () => {
      const h = harness();
      assert.equal((await h.post({ headers: { authorization: undefined, 'x-api-key': acmeKey } })).status, 202);
      assert.equal((await h.post({ headers: basic('dev-1', KEY) })).status, 202);
      const fiware = await h.post({
        route: 'fiware',
        serial: undefined,
        query: { k: acmeKey, i: 'dev-1' },
        headers: { authorization: undefined, 'content-type': undefined },
        body: 't|20#h|40',
      });
      assert.equal(fiware.status, 202, String(fiware.body));
      const colon = await h.post({ serial: 'dev:colon', headers: bearer('dev:colon', 'k:with:colons') });
      assert.equal(colon.status, 202, String(colon.body));
      assert.deepEqual(
        h.emitted.map((m) => m.device),
        [
          { tenant: 'acme', id: 'dev-1' },
          { tenant: 'acme', id: 'dev-1' },
          { tenant: 'acme', id: 'dev-1' },
          { tenant: 'acme', id: 'dev:colon' },
        ],
      );
      assert.deepEqual(
        h.emitted[2].payload.map((p) => [p.n, p.v]),
        [
          ['dev-1/t', 20],
          ['dev-1/h', 40],
        ],
      );
    });
  });

  describe('refuses with a problem document', () => {
    it('400 for readings a store would refuse later, with the reason: nothing is acknowledged or sent on', async () => {
      const h = harness({ maxBodyBytes: 100_000 });
      const bodies = [
        [`[{"n":"temp","v":1,"t":1e20}]`, 't'],
        [`[{"n":"temp","v":1,"t":-1e15}]`, 't'],
        [`[{"bt":1e300,"n":"temp","v":1}]`, 't'],
        [JSON.stringify([{ n: 'x'.repeat(60_000), v: 1 }]), 'n'],
      ];
      for (const [body, field] of bodies) {
        const doc = assertProblem(await h.post({ headers: { 'content-type': 'application/senml+json' }, body }), 400, 'invalid-body');
        assert.equal(doc.field, field, String(doc.detail));
      }
      // The device's own prefix counts: a name that fits only without it is refused too.
      const doc = assertProblem(
        await h.post({ headers: { 'content-type': 'application/senml+json' }, body: JSON.stringify([{ n: 'x'.repeat(1020), v: 1 }]) }),
        400,
        'invalid-body',
      );
      assert.equal(doc.field, 'n');
      assert.equal(h.emitted.length, 0);
    });

    it('401 for a wrong key, no credentials, an unknown device, an unknown API key — with WWW-Authenticate', async () => {
      const h = harness();
      for (const headers of [
        bearer('dev-1', 'wrong'),
        basic('dev-1', 'wrong'),
        { authorization: undefined },
        { authorization: 'Digest abc' },
        { 'x-api-key': 'cfx_nope' },
      ]) {
        const r = await h.post({ headers });
        const doc = assertProblem(r, 401, 'unauthorized');
        assert.match(r.headers['www-authenticate'], /Bearer realm="conflux-devices"/);
        assert.match(r.headers['www-authenticate'], /Basic realm="conflux-devices"/);
        assert.ok(doc.detail);
      }
      const unknown = await h.post({ serial: 'nobody', headers: bearer('nobody', KEY) });
      assert.equal(assertProblem(unknown, 401, 'unauthorized').detail, 'unknown device or wrong key');
      assert.equal(h.emitted.length, 0);
    });

    it("404 for an API key of another tenant or an unknown device; 403 for a read-only key or another device's token", async () => {
      const h = harness();
      const foreign = assertProblem(await h.post({ headers: { 'x-api-key': globexKey } }), 404, 'unknown-device');
      assert.match(foreign.detail, /tenant has no device "dev-1"/);
      assertProblem(await h.post({ serial: 'nobody', headers: { 'x-api-key': acmeKey } }), 404, 'unknown-device');
      assertProblem(await h.post({ headers: { 'x-api-key': readOnlyKey } }), 403, 'forbidden');
      assertProblem(await h.post({ serial: 'gx-1', headers: bearer('dev-1', KEY) }), 403, 'forbidden');
      assert.equal(h.emitted.length, 0);
    });

    it('413 from the declared length before reading, and from the body', async () => {
      const h = harness();
      const early = h.ingest.precheck({
        route: 'telemetry',
        method: 'POST',
        serial: 'dev-1',
        headers: { 'content-type': 'text/plain', 'content-length': '1000000' },
        query: {},
      });
      assert.ok(early);
      assert.equal(assertProblem(early, 413, 'body-too-large').limit, 1024);
      assert.equal(early.headers.connection, 'close');
      assertProblem(await h.post({ body: Buffer.alloc(1025, 0x41) }), 413, 'body-too-large');
      assert.equal((await h.post({ body: `t|${'1'.repeat(1000)}` })).status, 202, 'just under the limit');
    });

    it('400 naming the reason for bad JSON, SenML, UltraLight and CBOR; the next request succeeds', async () => {
      const h = harness();
      const bad: Array<[string, string | Buffer, RegExp]> = [
        ['application/json', '{"t": 21.5', /not JSON/],
        ['application/senml+json', '[{"n":"x","v":"text"}]', /v/],
        ['application/senml+json', '[]', /at least one record/],
        ['application/senml+json', '[{"bn":"base-only/"}]', /no reading/],
        ['text/plain', 't|', /ultralight/],
        ['text/plain', '', /empty/],
        ['application/senml+cbor', Buffer.from([0xff, 0x00]), /CBOR/],
        ['application/senml+xml', '<senml', /./],
      ];
      for (const [type, body, reason] of bad) {
        const doc = assertProblem(await h.post({ headers: { 'content-type': type }, body }), 400, 'invalid-body');
        assert.match(doc.detail, reason, `${type} ${String(body)}: ${doc.detail}`);
        assert.equal(typeof doc.format, 'string');
      }
      assert.equal((await h.post({ body: 't|22' })).status, 202);
      assert.equal(h.emitted.length, 1);
    });

    it('415 for an unknown type, a missing type, a charset other than UTF-8, a content coding', async () => {
      const h = harness();
      for (const headers of [
        { 'content-type': 'application/xml' },
        { 'content-type': undefined },
        { 'content-type': 'text/plain; charset=latin1' },
        { 'content-encoding': 'gzip' },
        { 'content-type': 'nonsense' },
      ]) {
        const doc = assertProblem(await h.post({ headers }), 415, 'unsupported-media-type');
        assert.ok(doc.accept.includes('application/senml+json'));
      }
      assert.equal(h.emitted.length, 0);
    });

    it('405 for another method, 400 for FIWARE without i', async () => {
      const h = harness();
      const get = await h.post({ method: 'GET' });
      assertProblem(get, 405, 'method-not-allowed');
      assert.equal(get.headers.allow, 'POST');
      assertProblem(await h.post({ route: 'fiware', serial: undefined, query: { k: acmeKey } }), 400, 'invalid-request');
    });

    it("429 with Retry-After past the tenant's rate; other tenants go on", async () => {
      const h = harness({ rate: new TenantRateLimiter({ sql: async () => db, scope: 'http-rate-test', ratePerSecond: 1 }) });
      assert.equal((await h.post({})).status, 202);
      const r = await h.post({});
      const doc = assertProblem(r, 429, 'rate-limited');
      assert.equal(r.headers['retry-after'], '1');
      assert.equal(doc.retryAfter, 1);
      const store = createBusinessStore(db);
      const gx = (await store.list('globex', 'devices', { filter: { serial: 'gx-1' } })).items[0];
      await store.create('globex', 'device_keys', { device_id: gx.id, key: 'gx key' }).catch(() => undefined);
      assert.equal((await h.post({ serial: 'gx-1', headers: bearer('gx-1', 'gx key') })).status, 202);
    });

    it('202 only once the flow has kept the reading; 503 not-stored with the reason when a node failed it', async () => {
      const f = flow(10);
      const h = harness({ inFlight: f.inFlight, emit: f.emit });
      let answered = false;
      const kept = h.post({}).then((r) => ((answered = true), r));
      const [a] = await f.waitFor(1);
      const failed = h.post({});
      const [, b] = await f.waitFor(2);
      await new Promise((r) => setImmediate(r));
      assert.equal(answered, false, 'no answer while the flow holds the reading');
      f.finish(a);
      const r = await kept;
      assert.equal(r.status, 202);
      assert.equal(json(r).id, a);
      f.fail(b, 'time series: connection refused');
      const refused = await failed;
      const doc = assertProblem(refused, 503, 'not-stored');
      assert.match(String(doc.detail), /connection refused/);
      assert.equal(doc.id, b);
      assert.equal(refused.headers['retry-after'], '5');
    });

    it('503 overloaded with Retry-After once the flow holds the bound; accepted again when it finishes one', async () => {
      const f = flow(2);
      const h = harness({ inFlight: f.inFlight, emit: f.emit });
      const first = h.post({});
      const [a] = await f.waitFor(1);
      const second = h.post({});
      const [, b] = await f.waitFor(2);
      const r = await h.post({});
      const doc = assertProblem(r, 503, 'overloaded');
      assert.equal(r.headers['retry-after'], '1');
      assert.equal(doc.retryAfter, 1);
      assert.ok(
        h.ingest.precheck({ route: 'telemetry', method: 'POST', serial: 'dev-1', headers: { 'content-type': 'text/plain' }, query: {} }),
        'refused before reading the body',
      );
      f.finish(a);
      assert.equal((await first).status, 202);
      const third = h.post({});
      const [, c] = await f.waitFor(2);
      f.finish(b);
      f.finish(c);
      assert.equal((await second).status, 202);
      assert.equal((await third).status, 202);
      assert.equal(h.emitted.length, 3);
    });

    it('503 unavailable when the registry cannot answer; 500 never escapes as a throw', async () => {
      const errors: Error[] = [];
      const h = harness({ directory: () => Promise.reject(new Error('db down')), onInternalError: (e) => errors.push(e) });
      const r = await h.post({});
      assertProblem(r, 503, 'unavailable');
      assert.equal(r.headers['retry-after'], '5');
      assert.equal(errors[0].message, 'db down');
      const broken = harness({
        emit: () => {
          throw new Error('boom');
        },
        onInternalError: (e) => errors.push(e),
      });
      assertProblem(await broken.post({}), 500, 'internal-error');
    });
  });

  describe('UDP tokens', () => {
    it('issues up to 100 base64 tokens with their expiry, spendable once by that device only', async () => {
      const h = harness();
      const r = await h.post({ route: 'tokens', headers: { 'content-type': 'application/json' }, body: '{"count": 3}' });
      assert.equal(r.status, 200, String(r.body));
      assert.equal(r.headers['cache-control'], 'no-store');
      const grant = json(r);
      assert.equal(grant.tokens.length, 3);
      assert.ok(Date.parse(grant.expiresAt) > Date.now() + 290_000);
      assert.ok(grant.expiresIn >= 299);
      const token = Buffer.from(grant.tokens[0], 'base64');
      assert.equal(token.length, 16);
      assert.deepEqual(await h.tokens.spend('gx-1', token), { ok: false, reason: 'foreign' });
      const spent = await h.tokens.spend('dev-1', token);
      assert.ok(spent.ok && spent.device.tenant === 'acme');
      assert.deepEqual(await h.tokens.spend('dev-1', token), { ok: false, reason: 'replayed' });

      const byQuery = await h.post({ route: 'tokens', query: { count: '5' }, headers: { 'content-type': undefined }, body: '' });
      assert.equal(json(byQuery).tokens.length, 5);
      const byKey = await h.post({ route: 'tokens', headers: { authorization: undefined, 'x-api-key': acmeKey, 'content-type': undefined }, body: '' });
      assert.equal(json(byKey).tokens.length, 1);
      for (const count of ['101', '0', 'x']) assertProblem(await h.post({ route: 'tokens', query: { count }, body: '' }), 400, 'invalid-request');
      assertProblem(await h.post({ route: 'tokens', headers: bearer('dev-1', 'wrong'), body: '' }), 401, 'unauthorized');
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM udp_tokens WHERE serial = 'dev-1' AND spent_at IS NULL`);
      assert.equal(rows[0].n, 3 - 1 + 5 + 1);
    });
  });

  describe('readBody', () => {
    it('refuses a declared length above the limit without reading', async () => {
      const stream = new PassThrough();
      const r = await readBody(stream, { 'content-length': '5000' }, 100, 1000);
      assert.ok(!r.ok);
      assert.equal(r.response.status, 413);
      assert.equal(stream.readableFlowing, null, 'never started reading');
    });

    it('stops at the limit of a body without length, before its end', async () => {
      const stream = new PassThrough();
      const pending = readBody(stream, {}, 100, 1000);
      stream.write(Buffer.alloc(60));
      stream.write(Buffer.alloc(60)); // 120 > 100; the stream never ends
      const r = await pending;
      assert.ok(!r.ok);
      assert.equal(r.response.status, 413);
      assert.equal(r.response.headers.connection, 'close');
    });

    it('reads a body within the limit; 408 for a body that stops arriving', async () => {
      const stream = new PassThrough();
      const pending = readBody(stream, {}, 100, 1000);
      stream.end(Buffer.from('t|1'));
      const r = await pending;
      assert.ok(r.ok && r.body.toString() === 't|1');
      const stalled = new PassThrough();
      const t = readBody(stalled, {}, 100, 50);
      stalled.write('t|');
      const timedOut = await t;
      assert.ok(!timedOut.ok && timedOut.response.status === 408);
    });
  });

  describe('fuzz', () => {
    it('answers any request with a 2xx or a problem document, and never throws', async function () {
      this.timeout(120_000);
      // A stub registry: one device with a known key; the device-key cache keeps PBKDF2 out of most runs.
      const keys = deriveScramKeys('fuzz key');
      const stubDirectory: DeviceDirectory = {
        credentials: async (serial) => (serial === 'fz' ? { device: { tenant: 't', serial, id: 1 }, keys: [{ slot: 1, ...keys }] } : undefined),
      };
      const stubSql = { kind: 'pglite', query: async () => ({ rows: [], rowCount: 0 }) } as unknown as SqlClient;
      const h = harness({
        directory: async () => stubDirectory,
        sql: async () => stubSql,
        rate: new TenantRateLimiter({ sql: async () => stubSql, scope: 'fuzz', ratePerSecond: 0 }),
        inFlight: { max: 200, size: 0 },
      });
      const text = fc.string({ maxLength: 40 });
      const header = (values: fc.Arbitrary<string>) => fc.option(fc.oneof(values, text), { nil: undefined });
      const request = fc.record({
        route: fc.constantFrom('telemetry' as const, 'tokens' as const, 'fiware' as const),
        method: fc.constantFrom('POST', 'POST', 'POST', 'GET', 'PUT', 'post', 'DELETE'),
        serial: fc.option(fc.oneof(fc.constant('fz'), text), { nil: undefined }),
        headers: fc.record({
          'content-type': header(
            fc.constantFrom(
              'application/senml+json',
              'application/senml+cbor',
              'application/senml+xml',
              'text/plain',
              'application/json',
              'text/plain; charset=iso-8859-1',
              'application/json;;',
              'a/b; c',
            ),
          ),
          authorization: header(
            fc.constantFrom('Bearer fz:fuzz key', `Basic ${Buffer.from('fz:fuzz key').toString('base64')}`, 'Bearer fz:', 'Basic !!', 'Bearer :x', 'Bearer'),
          ),
          'x-api-key': header(fc.constantFrom('cfx_abcdefgh_' + 'a'.repeat(43), '')),
          'content-length': header(fc.constantFrom('10', '99999999', '-1', '1e3', '')),
          'content-encoding': header(fc.constantFrom('identity', 'gzip')),
        }),
        query: fc.record({
          k: fc.option(text, { nil: undefined }),
          i: fc.option(fc.oneof(fc.constant('fz'), text), { nil: undefined }),
          count: fc.option(text, { nil: undefined }),
        }),
        body: fc.oneof(
          fc.uint8Array({ maxLength: 1100 }).map((b) => Buffer.from(b)),
          fc.string({ maxLength: 300 }).map((s) => Buffer.from(s)),
          fc
            .constantFrom(
              't|1',
              't|1|h',
              '[{"n":"a","v":1}]',
              '{"a":1}',
              '{"a":[1]}',
              '<senml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" v="1"/></senml>',
              '{"count":7}',
              '[{"bn":"x","_x":1}]',
            )
            .map((s) => Buffer.from(s)),
        ),
      });
      // Mostly well-formed requests too, so that the accepting paths are fuzzed as well.
      const validish = fc.record({
        route: fc.constant('telemetry' as const),
        method: fc.constant('POST'),
        serial: fc.constant('fz'),
        headers: fc.record({
          'content-type': fc.constantFrom('application/senml+json', 'text/plain', 'application/json'),
          authorization: fc.constant('Bearer fz:fuzz key'),
        }),
        query: fc.constant({}),
        body: fc.oneof(
          fc.constantFrom('t|1', 'a|x#b|2', '[{"n":"a","v":1}]', '{"a":1,"b":"x"}').map((s) => Buffer.from(s)),
          fc.string({ maxLength: 60 }).map((s) => Buffer.from(s)),
          fc.jsonValue({ maxDepth: 2 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
        ),
      });
      let accepted = 0;
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(fc.oneof({ arbitrary: request, weight: 2 }, { arbitrary: validish, weight: 1 }), async (req) => {
          let r: HttpResponse;
          try {
            const early = h.ingest.precheck(req);
            r = early ?? (await h.ingest.handle(req));
          } catch (err) {
            throw new Error(`threw ${(err as Error).stack}`, { cause: err });
          }
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          if (r.status >= 200 && r.status < 300) {
            accepted++;
            assert.ok([200, 202].includes(r.status));
            JSON.parse(r.body.toString());
          } else {
            assert.ok(r.status >= 400 && r.status < 600, `status ${r.status}`);
            assert.ok(isProblem(r), `a ${r.status} without a problem document`);
            const doc = JSON.parse(r.body.toString());
            assert.equal(doc.status, r.status);
            assert.ok(doc.type.startsWith(PROBLEM_BASE));
            if ([429, 503].includes(r.status)) assert.match(r.headers['retry-after'], /^\d+$/);
            if (r.status === 401) assert.ok(r.headers['www-authenticate']);
            assert.notEqual(r.status, 500, `an internal error: ${doc.detail}`);
          }
        }),
        { numRuns: 3000 },
      );
      assert.ok(accepted > 0, 'some random requests were valid and accepted');
      for (const status of [400, 401, 405, 413, 415]) assert.ok(statuses.has(status), `no ${status} among ${[...statuses.keys()]}`);
      if (process.env.CONFLUX_TEST_VERBOSE) console.log(Object.fromEntries(statuses));
    });
  });
});
