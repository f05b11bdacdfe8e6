/**
 * conflux-webhook-in under fuzz (nodes/core/webhooks/in-*.ts, docs/webhooks-in.md), in process: a
 * receiver for each codec (JSON, SenML, Sen1, UltraLight, eapi, a JSONata map) and each
 * authentication mode (basic, API key, Standard Webhooks signature), storing into the inbox of the
 * fuzz store. Generated requests: bodies of each codec mutated, odd content types and encodings,
 * lying lengths, credentials good and bad, signatures over the body sent or over another, stale
 * timestamps, webhook-ids with control characters or too long. Each answer is 2xx (stored, or a
 * duplicate) or a 4xx problem document with a detail; never a 500, never a stack trace; a valid
 * event is still stored after every hundred inputs.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { Webhook } from 'standardwebhooks';
import { createAuthenticator, type WebhookAuthMode } from '../../nodes/core/webhooks/in-auth';
import { createBodyDecoder, type WebhookCodec } from '../../nodes/core/webhooks/in-decode';
import { storeOnce } from '../../nodes/core/webhooks/in-inbox';
import { createReceiver, type Receiver, type ReceiverRequestWithBody } from '../../nodes/core/webhooks/in-receiver';
import { assertHttpAnswer, budget, fuzz } from './fuzz';
import { CONTENT_TYPES } from './http.fuzz';
import { ATTRIBUTES, EAPI, payload, PLATFORM_EVENT, SEN1, SENML_CBOR, SENML_JSON, SENML_XML, ULTRALIGHT } from './inputs';
import { fuzzStore, TENANT } from './store';

const MAX_BODY = 16 * 1024;
const SECRET = `whsec_${Buffer.from('fuzz webhook-in secret, 32 bytes').toString('base64')}`;
const USER = 'partner';
const PASSWORD = 'p:ss wörd';

/** Each codec's examples and the media type that carries them. */
const CODECS: Record<WebhookCodec, { seeds: ReadonlyArray<string | Uint8Array>; type: string; expression?: string; deviceId?: string }> = {
  json: { seeds: [...PLATFORM_EVENT, ...ATTRIBUTES, ...EAPI], type: 'application/json' },
  senml: { seeds: [...SENML_JSON, ...SENML_CBOR, ...SENML_XML], type: '' },
  sen1: { seeds: SEN1, type: 'application/xml' },
  ultralight: { seeds: ULTRALIGHT, type: 'text/plain', deviceId: 'WH-1' },
  eapi: { seeds: EAPI, type: 'application/json' },
  map: { seeds: ['{"id":"a","x":1}', '{"id":"WH-2","x":"21.5"}'], type: 'application/json', expression: '{"n": id & "/temp", "u": "Cel", "v": $number(x)}' },
};
const MODES: WebhookAuthMode[] = ['basic', 'api-key', 'signature'];

interface WebhookInput {
  codec: WebhookCodec;
  mode: WebhookAuthMode;
  request: ReceiverRequestWithBody;
}

const sometimes = <T>(hostile: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: hostile });

function webhookInput(apiKey: string, readKey: string): fc.Arbitrary<WebhookInput> {
  const codec = fc.constantFrom(...(Object.keys(CODECS) as WebhookCodec[]));
  return fc
    .record({
      codec: codec.chain((c) => fc.tuple(fc.constant(c), payload(CODECS[c].seeds))),
      mode: fc.constantFrom(...MODES),
      method: sometimes(fc.constantFrom('GET', 'PUT', 'post', '')),
      type: sometimes(fc.constantFrom(...CONTENT_TYPES)),
      encoding: sometimes(fc.constantFrom('gzip', 'identity', 'x')),
      length: sometimes(fc.constantFrom('99999999999', '1x', '-1')),
      credential: sometimes(fc.constantFrom('none', 'wrong', 'read-only', 'malformed', 'another body', 'stale', 'future', 'bad timestamp', 'v2 only')),
      id: fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 1_000_000 }).map((n) => `msg_${n}`) },
        { weight: 1, arbitrary: fc.constantFrom('', 'a b', 'é', '\u0000', 'x'.repeat(300), 'msg_1') },
        { weight: 1, arbitrary: fc.constant(undefined) },
      ),
      body: sometimes(fc.constantFrom(Buffer.alloc(0), Buffer.alloc(MAX_BODY + 1, 0x7b))),
    })
    .map((r) => {
      const [codecName, generated] = r.codec;
      const body = r.body ?? generated;
      const headers: Record<string, string> = {};
      const type = r.type ?? CODECS[codecName].type;
      if (type) headers['content-type'] = type;
      if (r.encoding) headers['content-encoding'] = r.encoding;
      headers['content-length'] = r.length ?? String(body.length);
      const id = r.id ?? 'msg_generated';
      if (r.id !== undefined) headers['webhook-id'] = r.id;
      const c = r.credential;
      if (r.mode === 'basic') {
        const user = c === 'wrong' ? 'someone' : USER;
        if (c !== 'none') headers.authorization = c === 'malformed' ? 'Basic ***' : `Basic ${Buffer.from(`${user}:${PASSWORD}`).toString('base64')}`;
      } else if (r.mode === 'api-key') {
        if (c !== 'none') headers['x-api-key'] = c === 'wrong' ? 'cfx_wrong' : c === 'read-only' ? readKey : c === 'malformed' ? '\u0000 x' : apiKey;
      } else if (c !== 'none') {
        const at = new Date(Date.now() + (c === 'stale' ? -600_000 : c === 'future' ? 600_000 : 0));
        const signed = new Webhook(SECRET).sign(id.replace(/[^\x21-\x7e]/g, '') || 'x', at, c === 'another body' ? Buffer.from('other') : body);
        headers['webhook-id'] ??= id.replace(/[^\x21-\x7e]/g, '') || 'x';
        headers['webhook-timestamp'] = c === 'bad timestamp' ? 'soon' : String(Math.floor(at.getTime() / 1000));
        headers['webhook-signature'] = c === 'malformed' ? 'v1,' : c === 'v2 only' ? signed.replace(/v1,/g, 'v2,') : signed;
      }
      return { codec: codecName, mode: r.mode, request: { method: r.method ?? 'POST', headers, body } };
    });
}

describe('fuzz: webhook-in', function () {
  this.timeout(budget(3));
  const receivers = new Map<string, Receiver>();
  /** What reached the operator's log as a fault: every one is a bug. */
  const internal: string[] = [];
  let apiKey = '';
  let readKey = '';

  before(async function () {
    this.timeout(60_000);
    const store = await fuzzStore();
    ({ apiKey, readKey } = store);
    for (const [codec, spec] of Object.entries(CODECS) as Array<[WebhookCodec, (typeof CODECS)[WebhookCodec]]>) {
      const decoder = createBodyDecoder({ codec, expression: spec.expression, deviceId: spec.deviceId });
      for (const mode of MODES) {
        const queue = `fuzz-${codec}-${mode}`;
        receivers.set(
          `${codec} ${mode}`,
          createReceiver({
            authenticate: createAuthenticator({ mode, tenant: TENANT, user: USER, password: PASSWORD, secrets: SECRET }, async () => store.db),
            decoder,
            maxBodyBytes: MAX_BODY,
            store: (tenant, messageId, stored) => storeOnce(store.db, tenant, queue, messageId, stored),
            onInternalError: (err) => internal.push(err.stack ?? String(err)),
          }),
        );
      }
    }
  });

  /** An event the json/basic receiver must store. */
  let valid = 0;
  const validEvent = (): ReceiverRequestWithBody => ({
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': `valid_${++valid}`,
      authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`,
    },
    body: Buffer.from(PLATFORM_EVENT[0]),
  });

  it('answers every request with 2xx or a 4xx problem with its detail, and goes on storing events', async () => {
    let n = 0;
    await fuzz({
      target: 'endpoint webhook-in',
      arbitrary: webhookInput(apiKey, readKey),
      check: async ({ codec, mode, request }, o) => {
        const receiver = receivers.get(`${codec} ${mode}`)!;
        const r = receiver.precheck(request) ?? (await receiver.handle(request));
        const what = `${codec}/${mode}: ${request.method} ${JSON.stringify(request.headers).slice(0, 300)}`;
        assert.deepEqual(internal.splice(0), [], `${what}: a fault in the operator's log`);
        o.add(assertHttpAnswer(r, what));
        if (++n % 100 === 0) assert.equal((await receivers.get('json basic')!.handle(validEvent())).status, 202, 'a valid event after the fuzz inputs');
      },
    });
  });
});
