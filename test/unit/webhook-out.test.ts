/** The pieces of webhooks out: retry schedule, Retry-After, address classes, the guarded lookup, the circuit breaker. */
import * as assert from 'node:assert/strict';
import type * as dns from 'node:dns';
import { backoffDelay, scheduledRetry } from '../../nodes/core/mailbox/backoff';
import { checkTarget, classifyAddress, ForbiddenTargetError, guardedLookup } from '../../nodes/core/webhooks/out-address';
import { CircuitBreaker, EndpointGate } from '../../nodes/core/webhooks/out-breaker';
import { carriedEvent } from '../../nodes/core/events/event';
import { WebhookSigner } from '../../nodes/core/webhooks/out-sign';
import { Webhook } from 'standardwebhooks';
import { parseRetryAfter, parseSchedule, STANDARD_SCHEDULE_MS, webhookRetryPolicy } from '../../nodes/core/webhooks/out-retry';

describe('webhooks out: retry schedule', () => {
  it('is the Standard Webhooks example: 10 tries over about three days, then dead letters', () => {
    const policy = webhookRetryPolicy();
    assert.equal(policy.maxAttempts, 10);
    const total = STANDARD_SCHEDULE_MS.reduce((a, b) => a + b, 0);
    assert.equal(total, (5 + 5 * 60 + 30 * 60 + (2 + 5 + 10 + 14 + 20 + 24) * 3600) * 1000);
    assert.ok(total > 3 * 86_400_000 && total < 3.5 * 86_400_000);
    const none = () => 0;
    assert.deepEqual(
      Array.from({ length: 9 }, (_, i) => backoffDelay(i + 1, policy, none)),
      [...STANDARD_SCHEDULE_MS],
    );
  });

  it('jitter only shortens a delay, by at most its share', () => {
    const policy = webhookRetryPolicy([10_000], 0.1);
    assert.equal(
      backoffDelay(1, policy, () => 1),
      9_000,
    );
    assert.equal(
      backoffDelay(1, policy, () => 0),
      10_000,
    );
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(1, policy);
      assert.ok(d >= 9_000 && d <= 10_000, String(d));
    }
  });

  it('the last delay repeats past the schedule, and an empty schedule is refused', () => {
    const policy = scheduledRetry([1, 2]);
    assert.equal(policy.maxAttempts, 3);
    assert.equal(
      backoffDelay(7, policy, () => 0),
      2,
    );
    assert.throws(() => scheduledRetry([]), RangeError);
    assert.throws(() => scheduledRetry([-1]), RangeError);
  });

  it('parses a schedule written with units', () => {
    assert.deepEqual(parseSchedule('5s, 5m 30m,2h, 1d, 250ms, 3'), [5_000, 300_000, 1_800_000, 7_200_000, 86_400_000, 250, 3_000]);
    assert.throws(() => parseSchedule('5 minutes'), /not a delay/);
    assert.throws(() => parseSchedule(' , '), /at least one/);
  });
});

describe('webhooks out: Retry-After', () => {
  const now = Date.UTC(2026, 11, 3, 12, 0, 0);
  it('reads delta-seconds and HTTP dates, capped', () => {
    assert.equal(parseRetryAfter('120', now), 120_000);
    assert.equal(parseRetryAfter(['7'], now), 7_000);
    assert.equal(parseRetryAfter('Thu, 03 Dec 2026 12:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Thu, 03 Dec 2026 11:00:00 GMT', now), 0, 'a date in the past: at once');
    assert.equal(parseRetryAfter('999999', now, 60_000), 60_000);
  });
  it('ignores what it cannot read', () => {
    for (const v of [undefined, '', '  ', '-5', '1.5', 'soon', '12abc']) assert.equal(parseRetryAfter(v, now), undefined, String(v));
  });
});

describe('webhooks out: address classes', () => {
  const cases: [string, string | undefined][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.1.2', 'loopback'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fd12:3456::1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['100.64.0.1', 'cgnat'],
    ['100.127.255.254', 'cgnat'],
    ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['8.8.8.8', undefined],
    ['172.32.0.1', undefined],
    ['100.128.0.1', undefined],
    ['2606:4700::1111', undefined],
    ['example.com', undefined],
  ];
  for (const [address, cls] of cases) it(`${address} is ${cls ?? 'public'}`, () => assert.equal(classifyAddress(address), cls));

  it('checks IP-literal hosts and schemes before any request', () => {
    assert.throws(() => checkTarget(new URL('http://127.0.0.1:8080/x'), false), /loopback/);
    assert.throws(() => checkTarget(new URL('http://[::1]/x'), false), /loopback/);
    assert.throws(() => checkTarget(new URL('http://[::ffff:10.0.0.1]/x'), false), /private/);
    assert.throws(() => checkTarget(new URL('ftp://example.com/x'), false), ForbiddenTargetError);
    assert.throws(() => checkTarget(new URL('https://u:p@example.com/x'), false), /credentials/);
    checkTarget(new URL('http://127.0.0.1:8080/x'), true);
    checkTarget(new URL('https://example.com/x'), false);
  });

  it('the lookup refuses a name when any of its addresses is not allowed, every time it resolves', async () => {
    let answers: dns.LookupAddress[] = [{ address: '93.184.215.14', family: 4 }];
    const resolve = ((_host: string, _opts: unknown, cb: (err: Error | null, a: dns.LookupAddress[]) => void) =>
      cb(null, answers)) as unknown as typeof dns.lookup;
    const lookup = guardedLookup(false, resolve) as unknown as (
      h: string,
      o: dns.LookupOptions,
      cb: (err: Error | null, a: unknown, f?: number) => void,
    ) => void;
    const ask = (all: boolean) =>
      new Promise<{ err: Error | null; a: unknown; f?: number }>((r) => lookup('hooks.example', { all }, (err, a, f) => r({ err, a, f })));
    assert.deepEqual(await ask(false), { err: null, a: '93.184.215.14', f: 4 });
    assert.deepEqual((await ask(true)).a, answers);
    answers = [
      { address: '93.184.215.14', family: 4 },
      { address: '10.0.0.5', family: 4 },
    ]; // the name now also points inside (DNS rebinding)
    const refused = await ask(false);
    assert.ok(refused.err instanceof ForbiddenTargetError && /hooks\.example resolves to 10\.0\.0\.5, a private address/.test(refused.err.message));
    const allowed = guardedLookup(true, resolve) as unknown as typeof lookup;
    assert.equal(await new Promise((r) => allowed('hooks.example', { all: false }, (err) => r(err))), null);
  });
});

describe('webhooks out: circuit breaker and endpoint gate', () => {
  it('opens after the threshold of failures in a row, lets one probe through after openMs, closes on its success', () => {
    const b = new CircuitBreaker({ failureThreshold: 3, openMs: 1_000 });
    b.failure(0);
    b.failure(1);
    b.success(); // a success in between resets the count
    b.failure(2);
    b.failure(3);
    assert.equal(b.state(3), 'closed');
    b.failure(4);
    assert.equal(b.state(5), 'open');
    assert.equal(b.allow(500), false);
    assert.equal(b.waitMs(500), 504);
    assert.equal(b.state(1_004), 'half-open');
    assert.equal(b.allow(1_004), true, 'the probe');
    assert.equal(b.allow(1_005), false, 'one probe at a time');
    b.success();
    assert.equal(b.state(1_006), 'closed');
    assert.equal(b.allow(1_006), true);
  });

  it('a failed probe opens the circuit again for openMs', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 100 });
    b.failure(0);
    assert.equal(b.allow(100), true);
    b.failure(100);
    assert.equal(b.state(150), 'open');
    assert.equal(b.allow(199), false);
    assert.equal(b.allow(200), true);
  });

  it('the gate admits up to its concurrency, then says busy; open says how long to wait', () => {
    const g = new EndpointGate({ concurrency: 2, failureThreshold: 1, openMs: 50 });
    assert.deepEqual(g.admit(0), { verdict: 'go' });
    assert.deepEqual(g.admit(0), { verdict: 'go' });
    assert.equal(g.admit(0).verdict, 'busy');
    g.settle('ok', 1);
    assert.deepEqual(g.admit(1), { verdict: 'go' });
    g.settle('failed', 2);
    g.settle('neutral', 2);
    assert.deepEqual(g.admit(10), { verdict: 'open', waitMs: 42 });
    assert.deepEqual(g.admit(52), { verdict: 'go' });
  });

  it('estimates how long a line takes from the average duration, or from a request that has not come back', () => {
    const g = new EndpointGate({ concurrency: 2, failureThreshold: 5, openMs: 50 });
    assert.equal(g.drainMs(9, 0), 5, 'nothing known: 1 ms each');
    g.admit(0);
    g.settle('ok', 10, 10);
    assert.equal(g.drainMs(9, 10), 50, '10 × 10 ms over 2 at once');
    g.admit(10);
    assert.equal(g.drainMs(9, 1_010), 5_000, 'the request in flight for 1 s says more than the average');
  });
});

describe('events carried by a flow message (webhooks and AMQP out)', () => {
  it('takes an event from msg.payload or msg.event; canonical records carry none; anything else is refused with the reason', () => {
    const event = { id: 'evt_1', type: 'vehicle.processed', tenant: 'acme', occurredAt: '2026-12-03T10:00:00.000Z', subject: 'VIN1', data: { ok: true } };
    assert.deepEqual(carriedEvent({ payload: event }), event);
    assert.deepEqual(carriedEvent({ payload: 'x', event }), event);
    assert.equal(carriedEvent({ payload: [{ n: 'dev1/t/temp', t: 1_764_756_000, v: 21.5 }] }), undefined);
    assert.throws(() => carriedEvent({ payload: { type: 'x' } }), /id must be a string/);
    assert.throws(() => carriedEvent({ payload: 'text' }), /neither canonical records nor a platform event/);
  });
});

describe('webhooks out: signature', () => {
  it('signs as the reference standardwebhooks library does, and the library verifies it', () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const reference = new Webhook(secret);
    const signer = new WebhookSigner(secret);
    for (const body of ['{}', '{"type":"device.connected","data":{"ü":"€"}}', JSON.stringify({ data: 'x'.repeat(5000) })]) {
      const at = new Date();
      const signature = signer.sign('evt_abc', at, body);
      assert.equal(signature, reference.sign('evt_abc', at, body));
      const headers = { 'webhook-id': 'evt_abc', 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': signature };
      assert.doesNotThrow(() => reference.verify(body, headers));
    }
  });

  it('refuses a secret that is not base64', () => {
    assert.throws(() => new WebhookSigner('whsec_not base64!'), /base64/);
  });
});
