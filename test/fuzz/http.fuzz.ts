/**
 * The device HTTP endpoint under fuzz (nodes/core/protocol/http-ingest.ts, docs/protocol-http.md),
 * in process against the registry in the fuzz store: generated requests — every route, odd
 * methods, hostile serials, right and wrong content types and charsets, Content-Encoding, lying
 * Content-Length, every kind of credential (good, wrong, malformed, another tenant's), bodies from
 * the formats' examples mutated, oversize and deeply nested. Each answer is 2xx, or a 4xx problem
 * document with a detail; never a 500, never a stack trace; and a valid reading is still accepted
 * after every hundred inputs.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { createDeviceDirectory } from '../../nodes/core/devices/directory';
import { TenantRateLimiter } from '../../nodes/core/devices/tenant-rate';
import { UdpTokens } from '../../nodes/core/devices/udp-tokens';
import { createHttpIngest, type HttpIngest, type IngestRequestWithBody, type IngestRoute } from '../../nodes/core/protocol/http-ingest';
import { assertHttpAnswer, budget, fuzz } from './fuzz';
import { ATTRIBUTES, payload, SENML_CBOR, SENML_JSON, SENML_XML, ULTRALIGHT } from './inputs';
import { DEVICE_KEY, fuzzStore } from './store';

const MAX_BODY = 8192;

export const CONTENT_TYPES = [
  undefined,
  '',
  'application/senml+json',
  'application/senml+cbor',
  'application/senml+xml',
  'text/plain',
  'application/json',
  'application/json; charset=utf-8',
  'text/plain; charset="US-ASCII"',
  'application/json; charset=latin1',
  'text/plain;charset',
  'application/octet-stream',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/cloudevents+json',
  'text/xml',
  'application/xml',
  'application/cbor',
  'application/',
  '/',
  ';;;',
  'APPLICATION/JSON',
  'application/json\u0000',
  'application/json; charset=utf-8; charset=utf-16',
  'x'.repeat(5000),
];

const basic = (user: string, key: string) => `Basic ${Buffer.from(`${user}:${key}`).toString('base64')}`;

/** The credentials a request presents: header name → value, or none. */
function credentials(apiKey: string, otherKey: string): fc.Arbitrary<Record<string, string>> {
  return fc.constantFrom<Record<string, string>>(
    { authorization: `Bearer SN-1:${DEVICE_KEY}` },
    { authorization: basic('SN-1', DEVICE_KEY) },
    { 'x-api-key': apiKey },
    { 'x-api-key': otherKey },
    {},
    { authorization: 'Bearer SN-1:wrong' },
    { authorization: `Bearer SN-2:${DEVICE_KEY}` },
    { authorization: basic('SN-1', '') },
    { authorization: 'Basic !!!not base64' },
    { authorization: 'Basic ' },
    { authorization: 'Digest username="x"' },
    { authorization: 'Bearer' },
    { authorization: `Bearer ${'A'.repeat(10_000)}:${'k'.repeat(10_000)}` },
    { 'x-api-key': 'cfx_not_a_real_key' },
    { 'x-api-key': '\u0000' },
    { 'x-api-key': apiKey.slice(0, -1) },
  );
}

const SERIALS = ['SN-2', 'GX-1', 'nosuch', '', 'SN-1\u0000', 'SN-1\n', 'x'.repeat(300), 'é/ü', '..', '%2F', 'SN-1:extra'];
const METHODS = ['GET', 'PUT', 'DELETE', 'post', 'OPTIONS', 'X', ''];
const LENGTHS = ['absent', 'huge', 'nan', 'negative', 'short'] as const;

/** Each format's examples with the Content-Type that carries them. */
const FORMATS: Array<[string, ReadonlyArray<string | Uint8Array>]> = [
  ['application/senml+json', SENML_JSON],
  ['application/senml+cbor', SENML_CBOR],
  ['application/senml+xml', SENML_XML],
  ['text/plain', ULTRALIGHT],
  ['application/json', [...ATTRIBUTES, ...SENML_JSON]],
];

/** Sometimes a value from `hostile`, mostly undefined (the valid request's own). */
const sometimes = <T>(hostile: fc.Arbitrary<T>, weight = 1): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight, arbitrary: hostile });

/** A valid request of some format, with a few of its parts replaced by hostile ones. */
export function ingestRequest(apiKey: string, otherKey: string): fc.Arbitrary<IngestRequestWithBody> {
  return fc
    .record({
      route: fc.constantFrom<IngestRoute>('telemetry', 'telemetry', 'telemetry', 'telemetry', 'tokens', 'fiware'),
      format: fc.nat({ max: FORMATS.length - 1 }).chain((i) => fc.tuple(fc.constant(FORMATS[i][0]), payload(FORMATS[i][1]))),
      method: sometimes(fc.constantFrom(...METHODS)),
      serial: sometimes(fc.oneof(fc.constantFrom(...SERIALS), fc.string({ maxLength: 20 }))),
      type: sometimes(fc.constantFrom(...CONTENT_TYPES)),
      encoding: sometimes(fc.constantFrom('identity', 'gzip', 'br, gzip')),
      length: sometimes(fc.constantFrom(...LENGTHS)),
      auth: fc.oneof(
        fc.constant<Record<string, string>>({ authorization: `Bearer SN-1:${DEVICE_KEY}` }),
        fc.constant<Record<string, string>>({ 'x-api-key': apiKey }),
        credentials(apiKey, otherKey),
      ),
      count: sometimes(fc.constantFrom('1', '100', '101', '0', '-1', 'abc', '1e2')),
      fiwareKey: fc.constantFrom(undefined, apiKey, 'wrong', ''),
      body: sometimes(fc.constantFrom(Buffer.alloc(0), Buffer.alloc(MAX_BODY + 1, 0x61), Buffer.from('{"count": 5}'), Buffer.from('{"count": 500}'))),
    })
    .map((r) => {
      const body = r.body ?? r.format[1];
      const headers: Record<string, string> = { ...r.auth };
      const type = r.type === undefined ? r.format[0] : r.type;
      if (type !== undefined && !(r.route === 'tokens' && r.type === undefined)) headers['content-type'] = type;
      if (r.encoding !== undefined) headers['content-encoding'] = r.encoding;
      const lengths = { huge: '99999999999', nan: '12abc', negative: '-5', short: String(Math.max(0, body.length - 3)) };
      if (r.length === undefined) headers['content-length'] = String(body.length);
      else if (r.length !== 'absent') headers['content-length'] = lengths[r.length];
      const serial = r.serial ?? 'SN-1';
      const query: Record<string, string | undefined> = { count: r.count };
      if (r.route === 'fiware') Object.assign(query, { i: serial, k: r.fiwareKey });
      const tokensBody = r.route === 'tokens' && r.body === undefined ? Buffer.alloc(0) : body;
      return { route: r.route, method: r.method ?? 'POST', serial: r.route === 'fiware' ? undefined : serial, headers, query, body: tokensBody };
    });
}

/** A request the endpoint must accept. */
function validReading(): IngestRequestWithBody {
  const body = Buffer.from('t|21.5|h|40');
  return {
    route: 'telemetry',
    method: 'POST',
    serial: 'SN-1',
    headers: { 'content-type': 'text/plain', 'content-length': String(body.length), authorization: `Bearer SN-1:${DEVICE_KEY}` },
    query: {},
    body,
  };
}

describe('fuzz: device HTTP endpoint', function () {
  this.timeout(budget(2));
  let ingest: HttpIngest;
  let apiKey = '';
  let otherKey = '';
  let emitted = 0;
  /** What reached the operator's log as a fault: every one is a bug. */
  const internal: string[] = [];

  before(async function () {
    this.timeout(60_000);
    const store = await fuzzStore();
    ({ apiKey, otherKey } = store);
    const directory = createDeviceDirectory(store.db);
    ingest = createHttpIngest({
      directory: async () => directory,
      sql: async () => store.db,
      maxBodyBytes: MAX_BODY,
      rate: new TenantRateLimiter({ sql: async () => store.db, scope: 'fuzz', ratePerSecond: 0 }),
      tokens: new UdpTokens(async () => store.db, { ttlMs: 60_000 }),
      inFlight: { size: 0, max: 1000 },
      emit: () => {
        emitted++;
      },
      onInternalError: (err) => {
        internal.push(err.stack ?? String(err));
      },
    });
    assert.equal((await ingest.handle(validReading())).status, 202);
  });

  it('answers every request with 2xx or a 4xx problem with its detail, and goes on accepting readings', async () => {
    let n = 0;
    await fuzz({
      target: 'endpoint device HTTP',
      arbitrary: ingestRequest(apiKey, otherKey),
      check: async (req, o) => {
        const before = emitted;
        const early = ingest.precheck(req);
        const r = early ?? (await ingest.handle(req));
        const what = `${req.method} ${req.route} ${JSON.stringify(req.serial ?? req.query.i)}`;
        assert.deepEqual(internal.splice(0), [], `${what}: a fault in the operator's log`);
        o.add(assertHttpAnswer(r, what));
        if (r.status === 202) {
          assert.equal(emitted, before + 1, 'a 202 is a reading handed on');
          assert.match(JSON.parse(String(r.body)).id, /^[0-9a-f-]{36}$/);
        } else assert.equal(emitted, before, `a ${r.status} hands nothing on`);
        if (++n % 100 === 0) assert.equal((await ingest.handle(validReading())).status, 202, 'a valid reading after the fuzz inputs');
      },
    });
  });
});
