/**
 * The UDP listener under fuzz (nodes/core/protocol/udp-server.ts, docs/protocol-udp.md), over a
 * real loopback socket: datagrams with fresh tokens, spent ones (a replay), another device's,
 * never-issued ones, payloads of every type from the formats' examples mutated, whole datagrams
 * mutated, cut short or oversize. UDP answers nothing, by design (docs/protocol-udp.md); each
 * datagram is accepted (handed on) or dropped with one of the documented reasons, counted, and
 * reported with a detail that names no internal error; the listener goes on accepting.
 */
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import fc from 'fast-check';
import { TenantRateLimiter } from '../../nodes/core/devices/tenant-rate';
import { UdpTokens } from '../../nodes/core/devices/udp-tokens';
import { encodeDatagram, PayloadType, type PayloadTypeCode } from '../../nodes/core/protocol/datagram';
import { DROP_REASONS, UdpServer, type UdpDropReason } from '../../nodes/core/protocol/udp-server';
import { assertReason, budget, fuzz } from './fuzz';
import { fuzzStore } from './store';
import { DEVICE_SEEDS, mutated, payload } from './inputs';

const MAX = 8192;
const SN1 = { tenant: 'fuzz', serial: 'SN-1', id: 1 };
const SN2 = { tenant: 'fuzz', serial: 'SN-2', id: 2 };

type TokenKind = 'fresh' | 'spent' | 'foreign' | 'unknown';

interface Input {
  token: TokenKind;
  type: PayloadTypeCode;
  payload: Buffer;
  /** Mutations of the whole datagram (its layout), or none. */
  mangle?: (d: Buffer) => Buffer;
}

const mangler: fc.Arbitrary<(d: Buffer) => Buffer> = fc.oneof(
  fc.nat().map((i) => (d: Buffer) => d.subarray(0, i % d.length)),
  fc.tuple(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 255 })).map(([i, v]) => (d: Buffer) => {
    const c = Buffer.from(d);
    c[Math.min(i, c.length - 1)] = v;
    return c;
  }),
  fc.constant((d: Buffer) => Buffer.concat([d, Buffer.alloc(MAX, 0x20)])),
);

const input: fc.Arbitrary<Input> = fc.record(
  {
    token: fc.constantFrom<TokenKind>('fresh', 'fresh', 'fresh', 'fresh', 'spent', 'foreign', 'unknown'),
    type: fc.constantFrom(PayloadType.senmlCbor, PayloadType.ultralightAscii, PayloadType.ultralightUtf8, PayloadType.json),
    payload: fc.oneof(payload(DEVICE_SEEDS), mutated(['{"t":21.5}', 't|21.5'])).filter((p) => p.length > 0),
    mangle: fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: mangler }),
  },
  { requiredKeys: ['token', 'type', 'payload'] },
);

describe('fuzz: UDP datagrams', function () {
  this.timeout(budget(2));
  let tokens: UdpTokens;
  const rejections: Array<{ reason: UdpDropReason; detail: string }> = [];
  let server: UdpServer;
  let client: dgram.Socket;
  let port = 0;
  let accepted = 0;
  let lastSpent: Buffer | undefined;
  let wake: (() => void) | undefined;

  /** Resolves once the listener has handled more than `count` datagrams (its callbacks say when). */
  function handledPast(count: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the listener did not handle the datagram within 10 s')), 10_000);
      wake = () => {
        if (handled() <= count) return;
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
      wake();
    });
  }

  before(async function () {
    this.timeout(60_000);
    const store = await fuzzStore();
    tokens = new UdpTokens(async () => store.db, { ttlMs: 60_000 });
    server = new UdpServer({
      port: 0,
      host: '127.0.0.1',
      limits: { maxFrameBytes: MAX },
      tokens,
      rate: new TenantRateLimiter({ sql: async () => store.db, scope: 'fuzz', ratePerSecond: 0 }),
      onReadings: () => {
        accepted++;
        wake?.();
      },
      onRejected: (reason, _remote, detail) => {
        rejections.push({ reason, detail });
        wake?.();
      },
    });
    ({ port } = await server.listen());
    client = dgram.createSocket('udp4');
  });

  after(async () => {
    client?.close();
    await server?.close();
  });

  const handled = () => {
    const s = server.stats();
    return s.accepted + Object.values(s.dropped).reduce((a, b) => a + b, 0);
  };

  function send(d: Buffer): Promise<void> {
    return new Promise((resolve, reject) => client.send(d, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  }

  it('accepts each datagram or drops it for a documented reason, with a detail; and goes on accepting', async () => {
    await fuzz({
      target: 'endpoint UDP datagrams',
      arbitrary: input,
      check: async (x, o) => {
        let token: Buffer;
        if (x.token === 'fresh') token = (await tokens.issue(SN1))[0].token;
        else if (x.token === 'spent' && lastSpent) token = lastSpent;
        else if (x.token === 'foreign') token = (await tokens.issue(SN2))[0].token;
        else token = Buffer.alloc(16, 0xab);
        let d = encodeDatagram({ serial: 'SN-1', token, type: x.type, payload: x.payload });
        if (x.mangle) d = x.mangle(d);
        const before = handled();
        const acceptedBefore = accepted;
        rejections.length = 0; // only this input's: the test itself must not hold memory across inputs
        const rejected = 0;
        await send(d);
        await handledPast(before);
        assert.equal(handled(), before + 1, 'one datagram, one outcome');
        if (x.token === 'fresh' && d.length > 0) lastSpent = token;
        if (accepted > acceptedBefore) {
          o.add('accepted');
          return;
        }
        assert.equal(rejections.length, rejected + 1, 'a dropped datagram is reported');
        const { reason, detail } = rejections[rejected];
        assert.ok(DROP_REASONS.includes(reason));
        assertReason(detail, `dropped as ${reason}`);
        o.add(reason);
      },
    });
    // Still accepting.
    const before = accepted;
    const count = handled();
    await send(encodeDatagram({ serial: 'SN-1', token: (await tokens.issue(SN1))[0].token, type: PayloadType.ultralightAscii, payload: 't|21.5' }));
    await handledPast(count);
    assert.equal(accepted, before + 1, 'a valid datagram after the fuzz inputs is accepted');
  });
});
