/**
 * conflux-webhook-in's core without a server: every codec a sender may choose, the Standard
 * Webhooks signature checked against bodies signed by the reference library, basic auth, and the
 * order of the receiver's checks (what is refused before the body is read, what never reaches
 * the store).
 */
import { strict as assert } from 'node:assert';
import { Webhook } from 'standardwebhooks';
import { encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { encodeSenmlXml } from '../../nodes/core/codecs/senml-xml';
import { CodecError } from '../../nodes/core/errors';
import { ACTION_SCOPES, scopesAllow } from '../../nodes/core/auth/scopes';
import { createAuthenticator, parseSecrets, type Authenticate } from '../../nodes/core/webhooks/in-auth';
import { createBodyDecoder } from '../../nodes/core/webhooks/in-decode';
import { bodyId, keptHeaders, type StoredWebhook } from '../../nodes/core/webhooks/in-inbox';
import { createReceiver } from '../../nodes/core/webhooks/in-receiver';

const SECRET = `whsec_${Buffer.from('webhook-in unit test secret 0001').toString('base64')}`;
const OTHER = `whsec_${Buffer.from('another secret, rotated in 00002').toString('base64')}`;
const T = 1_750_000_000;
const noDb = () => Promise.reject(new Error('no database in unit tests'));

function signed(secret: string, body: string, id = 'msg_1', at = new Date()): Record<string, string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(id, at, body),
  };
}

async function refusal(auth: Authenticate, headers: Record<string, string>, body: string): Promise<{ status: number; detail: string }> {
  const outcome = await auth({ headers, body: Buffer.from(body) });
  assert.ok(!outcome.ok, 'refused');
  const doc = JSON.parse(String(outcome.response.body)) as { detail: string };
  assert.equal(outcome.response.headers['content-type'], 'application/problem+json');
  return { status: outcome.response.status, detail: doc.detail };
}

describe('webhook-in core', () => {
  describe('Standard Webhooks signature', () => {
    const auth = createAuthenticator({ mode: 'signature', tenant: 'acme', secrets: `${OTHER} ${SECRET}` }, noDb);
    const body = JSON.stringify({ type: 'vehicle.processed', vin: 'WVW123' });

    it('accepts a body signed by the reference library with any current secret', async () => {
      assert.deepEqual(await auth({ headers: signed(SECRET, body), body: Buffer.from(body) }), { ok: true, tenant: 'acme' });
      assert.deepEqual(await auth({ headers: signed(OTHER, body), body: Buffer.from(body) }), { ok: true, tenant: 'acme' });
    });

    it('refuses a tampered body, an unknown secret, an old or future timestamp and missing headers, saying why', async () => {
      const headers = signed(SECRET, body);
      assert.match((await refusal(auth, headers, body.replace('123', '124'))).detail, /no v1 signature/);
      const stranger = `whsec_${Buffer.from('not one of the node secrets 0003').toString('base64')}`;
      assert.equal((await refusal(auth, signed(stranger, body), body)).status, 401);
      const old = new Date(Date.now() - 5 * 60_000 - 10_000);
      assert.match((await refusal(auth, signed(SECRET, body, 'msg_2', old), body)).detail, /more than 5 minutes old/);
      const ahead = new Date(Date.now() + 5 * 60_000 + 10_000);
      assert.match((await refusal(auth, signed(SECRET, body, 'msg_3', ahead), body)).detail, /ahead/);
      const { 'webhook-signature': _drop, ...unsigned } = headers;
      assert.match((await refusal(auth, unsigned, body)).detail, /webhook-signature/);
    });

    it('refuses a configuration without a usable secret', () => {
      assert.throws(() => parseSecrets(''), /at least one/);
      assert.throws(() => parseSecrets('secret'), /whsec_/);
      assert.throws(() => parseSecrets(`${SECRET} whsec_!!`), /secret 2/);
    });
  });

  describe('HTTP basic', () => {
    const auth = createAuthenticator({ mode: 'basic', tenant: 'acme', user: 'partner', password: 'p:ss wörd' }, noDb);
    const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });

    it('accepts the user and password, a password holding a colon included', async () => {
      assert.deepEqual(await auth({ headers: basic('partner', 'p:ss wörd'), body: Buffer.alloc(0) }), { ok: true, tenant: 'acme' });
    });

    it('refuses a wrong password, another user and no credentials, with a challenge', async () => {
      for (const headers of [basic('partner', 'wrong'), basic('other', 'p:ss wörd'), {}, { authorization: 'Bearer x' }]) {
        const outcome = await auth({ headers, body: Buffer.alloc(0) });
        assert.ok(!outcome.ok);
        assert.equal(outcome.response.status, 401);
        assert.match(outcome.response.headers['www-authenticate'], /^Basic realm="conflux-webhooks"/);
      }
    });

    it('needs both a user and a password', () => {
      assert.throws(() => createAuthenticator({ mode: 'basic', tenant: 'acme', user: 'partner' }, noDb), /user and a password/);
    });
  });

  it('grants the webhooks action to the webhooks, webhooks:write, write and * scopes only', () => {
    assert.deepEqual([...ACTION_SCOPES.webhooks], ['webhooks', 'webhooks:write', 'write', '*']);
    assert.ok(scopesAllow(['webhooks'], 'webhooks'));
    assert.ok(!scopesAllow(['devices', 'commands'], 'webhooks'));
  });

  describe('decoding', () => {
    const now = T * 1000;
    it('passes JSON through, with the platform event it holds under the authenticated tenant', async () => {
      const json = createBodyDecoder({ codec: 'json' });
      const event = {
        id: 'evt_1',
        type: 'vehicle.processed',
        tenant: 'someone-else',
        subject: 'WVW123',
        occurredAt: '2025-06-15T12:00:00Z',
        data: { ok: true },
      };
      const out = await json.decode(Buffer.from(JSON.stringify(event)), 'application/json', 'acme', now);
      assert.equal((out.payload as { tenant: string }).tenant, 'someone-else', 'the payload is the body as sent');
      assert.equal(out.event?.tenant, 'acme');
      assert.equal(out.event?.type, 'vehicle.processed');
      assert.equal((await json.decode(Buffer.from('[1, 2]'), undefined, 'acme', now)).event, undefined);
      await assert.rejects(
        json.decode(Buffer.from('{"a": '), 'application/json', 'acme', now),
        (e: CodecError) => e.format === 'json' && /not JSON/.test(e.message),
      );
      await assert.rejects(json.decode(Buffer.alloc(0), 'application/json', 'acme', now), /empty/);
    });

    it('decodes SenML JSON, CBOR and XML by Content-Type or first byte', async () => {
      const senml = createBodyDecoder({ codec: 'senml', senmlFormat: 'auto' });
      const records = [{ n: 'pump/temp', u: 'Cel', v: 21.5, t: T }];
      for (const [body, type, format] of [
        [Buffer.from(JSON.stringify(records)), 'application/senml+json', 'senml+json'],
        [Buffer.from(encodeSenmlCbor(records)), 'application/senml+cbor', 'senml+cbor'],
        [Buffer.from(encodeSenmlXml(records)), undefined, 'senml+xml'],
      ] as const) {
        const out = await senml.decode(body, type, 'acme', now);
        assert.equal(out.format, format);
        assert.deepEqual(out.payload, records);
      }
      await assert.rejects(senml.decode(Buffer.from('[{"n": "x", "v": "text"}]'), 'application/senml+json', 'acme', now), CodecError);
    });

    it('decodes Sen1, UltraLight under the device id, eapi and a JSONata map', async () => {
      const sen1 = `<Sen1Message xmlns="http://xmpp.rocks"><username>u</username><name>station12</name><metaname></metaname><metavalue/><unite>Cel</unite><type>dt_numeric</type><applicationSrc></applicationSrc><applicationDst></applicationDst><Sen1Datas><Sen1Data><value>4.5</value><timestamp>2023-05-01 10:20:30</timestamp></Sen1Data></Sen1Datas></Sen1Message>`;
      const s = await createBodyDecoder({ codec: 'sen1' }).decode(Buffer.from(sen1), 'application/xml', 'acme', now);
      assert.equal(s.format, 'sen1');
      assert.equal((s.payload as Array<{ v: number }>)[0].v, 4.5);

      const ul = await createBodyDecoder({ codec: 'ultralight', deviceId: 'truck-9' }).decode(Buffer.from('t|21.5'), 'text/plain', 'acme', now);
      assert.deepEqual(ul.device, { tenant: 'acme', id: 'truck-9' });
      assert.equal((ul.payload as Array<{ n: string }>)[0].n.split('/')[0], 'truck-9');

      const eapi = {
        type: 'eapi_measurement_new',
        data: { timeStamp: '2022-10-11T16:21:27Z', value: 24.6, unit: '°C', unitType: 'temperature', deviceId: '951FF', sensorId: '5368' },
      };
      const e = await createBodyDecoder({ codec: 'eapi' }).decode(Buffer.from(JSON.stringify(eapi)), 'application/json', 'acme', now);
      assert.equal((e.payload as Array<{ v: number }>)[0].v, 24.6);

      const map = createBodyDecoder({ codec: 'map', expression: '{"n": vin & "/speed", "u": "km/h", "v": speed}' });
      const m = await map.decode(Buffer.from('{"vin": "WVW123", "speed": 88}'), 'application/json', 'acme', now);
      assert.deepEqual(m.payload, [{ n: 'WVW123/speed', u: 'km/h', v: 88, t: T }]);
      assert.throws(() => createBodyDecoder({ codec: 'map', expression: 'x.{' }));
    });

    it('names the media types each codec takes', () => {
      assert.equal(createBodyDecoder({ codec: 'json' }).mediaRefusal('application/cloudevents+json; charset=utf-8'), undefined);
      assert.equal(createBodyDecoder({ codec: 'json' }).mediaRefusal(undefined), undefined);
      assert.match(createBodyDecoder({ codec: 'json' }).mediaRefusal('text/plain') ?? '', /cannot carry json/);
      assert.match(createBodyDecoder({ codec: 'json' }).mediaRefusal('application/json; charset=latin1') ?? '', /charset/);
      assert.equal(createBodyDecoder({ codec: 'senml' }).mediaRefusal('application/senml+cbor'), undefined);
      assert.match(createBodyDecoder({ codec: 'ultralight' }).mediaRefusal('application/json') ?? '', /text\/plain/);
    });
  });

  describe('the receiver', () => {
    const stored: Array<[string, string, StoredWebhook]> = [];
    const receiver = createReceiver({
      authenticate: createAuthenticator({ mode: 'signature', tenant: 'acme', secrets: SECRET }, noDb),
      decoder: createBodyDecoder({ codec: 'json' }),
      maxBodyBytes: 64,
      store: (tenant, id, s) => {
        stored.push([tenant, id, s]);
        return Promise.resolve('stored');
      },
    });
    const headersOf = (body: string) => ({ 'content-type': 'application/json', ...signed(SECRET, body, `msg_${stored.length}`) });

    it('refuses what it can before reading the body: method, encoding, type, declared length', () => {
      assert.equal(receiver.precheck({ method: 'GET', headers: {} })?.status, 405);
      assert.equal(receiver.precheck({ method: 'POST', headers: { 'content-encoding': 'gzip' } })?.status, 415);
      assert.equal(receiver.precheck({ method: 'POST', headers: { 'content-type': 'text/csv' } })?.status, 415);
      assert.equal(receiver.precheck({ method: 'POST', headers: { 'content-length': '65' } })?.status, 413);
      assert.equal(receiver.precheck({ method: 'POST', headers: { 'content-length': '64' } }), undefined);
    });

    it('stores only an authenticated body that decodes, and answers 202 with its id', async () => {
      const before = stored.length;
      const good = '{"a": 1}';
      const ok = await receiver.handle({ method: 'POST', headers: headersOf(good), body: Buffer.from(good) });
      assert.equal(ok.status, 202);
      assert.deepEqual(JSON.parse(String(ok.body)), { id: `msg_${before}`, status: 'stored' });
      assert.equal(stored.length, before + 1);
      assert.equal(stored[before][2].headers['webhook-signature'], undefined, 'no signature kept');
      const bad = '{"a": ';
      const refused = await receiver.handle({ method: 'POST', headers: headersOf(bad), body: Buffer.from(bad) });
      assert.equal(refused.status, 400);
      assert.match(JSON.parse(String(refused.body)).detail, /not JSON/);
      const big = `{"a": "${'x'.repeat(80)}"}`;
      assert.equal((await receiver.handle({ method: 'POST', headers: headersOf(big), body: Buffer.from(big) })).status, 413);
      assert.equal(stored.length, before + 1, 'nothing refused was stored');
    });

    it('derives a stable id from the body when no webhook-id comes, and keeps no credentials', () => {
      assert.equal(bodyId(Buffer.from('{"a":1}')), bodyId(Buffer.from('{"a":1}')));
      assert.notEqual(bodyId(Buffer.from('{"a":1}')), bodyId(Buffer.from('{"a":2}')));
      assert.deepEqual(keptHeaders({ authorization: 'Basic x', 'x-api-key': 'k', 'x-event': 'order.paid', 'webhook-id': 'm' }), {
        'x-event': 'order.paid',
        'webhook-id': 'm',
      });
    });
  });
});

/**
 * Found by `npm run fuzz` (test/fuzz/webhook-in.fuzz.ts): a JSON body nested thousands of levels
 * deep parsed, then overflowed the stack when stored (JSON.stringify recurses), and the sender got
 * a 500. It is now refused as undecodable, before anything is stored.
 */
describe('webhook-in: deeply nested JSON', () => {
  const basicAuth = { authorization: `Basic ${Buffer.from('partner:secret').toString('base64')}` };

  it('refuses JSON nested deeper than 256 levels with a 400 naming the limit; 256 levels pass', async () => {
    let stored = 0;
    const receiver = createReceiver({
      authenticate: createAuthenticator({ mode: 'basic', tenant: 'acme', user: 'partner', password: 'secret' }, noDb),
      decoder: createBodyDecoder({ codec: 'json' }),
      maxBodyBytes: 100_000,
      store: async () => {
        stored++;
        return 'stored';
      },
      onInternalError: (err) => assert.fail(`an internal error: ${err.message}`),
    });
    const post = (body: string) => receiver.handle({ method: 'POST', headers: { 'content-type': 'application/json', ...basicAuth }, body: Buffer.from(body) });
    const deep = await post('['.repeat(20_000) + ']'.repeat(20_000));
    assert.equal(deep.status, 400);
    assert.match(JSON.parse(String(deep.body)).detail, /nested deeper than 256 levels/);
    assert.equal((await post('{"a":'.repeat(257) + '1' + '}'.repeat(257))).status, 400);
    assert.equal(stored, 0);
    assert.equal((await post('[' + '{"s":"[[[[[[","a":'.repeat(255) + '1' + '}'.repeat(255) + ']')).status, 202);
    assert.equal(stored, 1);
  });
});
