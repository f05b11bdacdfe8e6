/**
 * The TCP device protocol's frame codec and the server side of its SCRAM login: round trips,
 * fuzzing (random bytes never throw out of the decoder), and RFC 7677's worked example.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { CodecError } from '../../nodes/core/errors';
import { deriveScramKeys } from '../../nodes/core/auth/scram';
import type { DeviceCredentials, DeviceDirectory } from '../../nodes/core/devices/directory';
import { decodeDevicePayload } from '../../nodes/core/devices/ingest';
import {
  dataFramePayload,
  decodeAck,
  decodeError,
  decodeTokenGrant,
  decodeTokenRequest,
  encodeAck,
  encodeError,
  encodeFrame,
  encodeTokenGrant,
  encodeTokenRequest,
  FrameDecoder,
  FrameError,
  FrameType,
  type Frame,
} from '../../nodes/core/protocol/frames';
import { ScramServerSession } from '../../nodes/core/protocol/scram-session';

/** Splits bytes at the given cut points. */
function cut(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  out.push(bytes.subarray(at));
  return out;
}

const frameArb = fc.record({ type: fc.integer({ min: 0, max: 255 }), payload: fc.uint8Array({ maxLength: 300 }) });

describe('TCP frames', () => {
  it('lays a frame out as length (4 bytes, big-endian, type + payload), type, payload', () => {
    assert.deepEqual(encodeFrame(FrameType.JSON, '{"t":1}'), Buffer.from([0, 0, 0, 8, 0x04, ...Buffer.from('{"t":1}')]));
    assert.deepEqual(encodeFrame(FrameType.PING), Buffer.from([0, 0, 0, 1, 0x15]));
  });

  it('any sequence of frames cut anywhere decodes to the same frames', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.payload)));
        const decoder = new FrameDecoder(301);
        const got: Frame[] = [];
        for (const chunk of cut(bytes, cuts)) {
          const r = decoder.push(chunk);
          assert.equal(r.error, undefined);
          got.push(...r.frames);
        }
        assert.equal(decoder.buffered, 0);
        assert.deepEqual(
          got.map((f) => [f.type, Buffer.from(f.payload)]),
          frames.map((f) => [f.type, Buffer.from(f.payload)]),
        );
      }),
      { numRuns: 300 },
    );
  });

  it('random bytes never throw: they are frames, a partial frame waiting, or a clear fatal error', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), fc.integer({ min: 1, max: 200 }), (chunks, max) => {
        const decoder = new FrameDecoder(max);
        let error: FrameError | undefined;
        let frameBytes = 0;
        for (const chunk of chunks) {
          const r = decoder.push(chunk);
          for (const f of r.frames) {
            assert.ok(Number.isInteger(f.type) && f.type >= 0 && f.type <= 255);
            assert.ok(f.payload.length + 1 <= max, 'no frame over the limit comes out');
            frameBytes += 5 + f.payload.length;
          }
          if (error) assert.deepEqual(r, { frames: [], error }, 'a failed decoder takes nothing more');
          error = r.error;
        }
        const total = chunks.reduce((n, c) => n + c.length, 0);
        if (error) {
          assert.ok(error instanceof FrameError && error.fatal);
          assert.match(error.message, /^(frame length 0: a frame holds at least its type byte|frame of \d+ bytes exceeds the limit of \d+ bytes)$/);
        } else {
          assert.equal(frameBytes + decoder.buffered, total, 'every byte is in a frame or waiting for the rest of one');
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses an oversized length as soon as its 4 bytes arrive, and a zero length', () => {
    const d = new FrameDecoder(1000);
    assert.deepEqual(d.push(Buffer.from([0, 0])).frames, []);
    const r = d.push(Buffer.from([0x03, 0xe9]));
    assert.equal(r.error?.message, 'frame of 1001 bytes exceeds the limit of 1000 bytes');
    assert.equal(new FrameDecoder(10).push(Buffer.from([0, 0, 0, 0, 1])).error?.message, 'frame length 0: a frame holds at least its type byte');
  });

  it('a frame sent one byte at a time comes out once, whole', () => {
    const payload = Buffer.alloc(5000, 7);
    const bytes = encodeFrame(FrameType.BINARY, payload);
    const d = new FrameDecoder(10_000);
    const got: Frame[] = [];
    for (let i = 0; i < bytes.length; i++) {
      got.push(...d.push(bytes.subarray(i, i + 1)).frames);
      if (i < bytes.length - 1) assert.equal(d.buffered, i + 1);
    }
    assert.equal(got.length, 1);
    assert.deepEqual(got[0].payload, payload);
  });

  describe('data frame payloads', () => {
    const frame = (type: number, payload: Buffer | string): Frame => ({ type, payload: Buffer.from(payload) });

    it('JSON: a SenML array is senml, an object is attributes', () => {
      assert.deepEqual(dataFramePayload(frame(FrameType.JSON, '[{"n":"t","v":1}]')), { format: 'senml', body: [{ n: 't', v: 1 }] });
      assert.deepEqual(dataFramePayload(frame(FrameType.JSON, '\ufeff{"t":1}')), { format: 'attributes', body: { t: 1 } });
      assert.throws(() => dataFramePayload(frame(FrameType.JSON, '{"t":')), /^FrameError: JSON frame: invalid JSON: /);
      assert.throws(() => dataFramePayload(frame(FrameType.JSON, '42')), /expected a SenML array or an object of attribute values, got number/);
    });

    it('ASCII refuses a byte over 0x7f and names its offset; UTF8 refuses invalid UTF-8', () => {
      assert.deepEqual(dataFramePayload(frame(FrameType.ASCII, 't|21.5')), { format: 'ultralight', body: 't|21.5' });
      assert.throws(() => dataFramePayload(frame(FrameType.ASCII, Buffer.from('t|é', 'utf8'))), /ASCII frame: byte 0xc3 at offset 2 is not 7-bit ASCII/);
      assert.deepEqual(dataFramePayload(frame(FrameType.UTF8, 'mode|éco')), { format: 'ultralight', body: 'mode|éco' });
      assert.throws(() => dataFramePayload(frame(FrameType.UTF8, Buffer.from([0x74, 0x7c, 0xc3]))), /UTF8 frame: not valid UTF-8/);
      assert.throws(() => dataFramePayload(frame(FrameType.UTF8, Buffer.from([0xed, 0xa0, 0x80]))), /not valid UTF-8/, 'a surrogate');
    });

    it('BINARY takes SenML CBOR only', () => {
      assert.equal(dataFramePayload(frame(FrameType.BINARY, Buffer.from([0x81, 0xa0]))).format, 'senml');
      assert.throws(() => dataFramePayload(frame(FrameType.BINARY, '[{"n":"t","v":1}]')), /BINARY frame: expected SenML CBOR/);
    });

    it('any payload of any data type decodes or fails with a reason, never anything else', () => {
      const types = [FrameType.BINARY, FrameType.ASCII, FrameType.UTF8, FrameType.JSON];
      const bytes = fc.oneof(
        fc.uint8Array({ maxLength: 80 }),
        fc.json().map((j) => new Uint8Array(Buffer.from(j))),
        fc.constantFrom('[{"bn":"x/","n":"t","v":1}]', 't|1|h|x', '{"a":{"value":true}}', '[{"n":"a","v":1e400}]').map((s) => new Uint8Array(Buffer.from(s))),
      );
      fc.assert(
        fc.property(fc.constantFrom(...types), bytes, (type, payload) => {
          try {
            const { format, body } = dataFramePayload({ type, payload: Buffer.from(payload) });
            decodeDevicePayload(format, body, 'SN-1', 1.7e9);
          } catch (err) {
            // the frame's own error or the payload's codec error, never a raw TypeError or RangeError
            assert.ok(err instanceof FrameError || err instanceof CodecError, `a FrameError or CodecError, got ${String(err)}`);
            assert.ok(err.message.length > 0, 'with a reason');
          }
        }),
        { numRuns: 1000 },
      );
    });
  });

  it('ACK, ERROR and TOKEN payloads', () => {
    assert.equal(decodeAck(encodeAck(70_000)), 70_000);
    assert.deepEqual(decodeError(encodeError(3, 'JSON frame: invalid JSON')), { id: 3, reason: 'JSON frame: invalid JSON' });
    assert.equal(decodeTokenRequest(encodeTokenRequest(100)), 100);
    assert.equal(decodeTokenRequest(Buffer.alloc(0)), 1);
    assert.throws(() => decodeTokenRequest(Buffer.from([101])), /ask for 1 to 100 tokens, not 101/);
    assert.throws(() => decodeTokenRequest(Buffer.from([0])), /not 0/);
    const tokens = [Buffer.alloc(16, 1), Buffer.alloc(16, 2)];
    assert.deepEqual(decodeTokenGrant(encodeTokenGrant({ id: 9, ttlMs: 300_000, tokens })), { id: 9, ttlMs: 300_000, tokens });
    assert.throws(() => decodeTokenGrant(Buffer.alloc(9)), /TOKEN grant/);
  });
});

describe('SCRAM over AUTH frames (server side)', () => {
  // RFC 7677 section 3: user "user", password "pencil"; also docs/protocol-tcp.md's worked example.
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const device = { tenant: 'default', serial: 'user', id: 1 };
  const pencil = { slot: 1, ...deriveScramKeys('pencil', { salt, iterations: 4096 }) };
  const directory = (entries: Record<string, DeviceCredentials>): DeviceDirectory => ({ credentials: async (serial) => entries[serial] });
  const secret = Buffer.alloc(32, 9);
  const serverNonce = () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';

  it('answers RFC 7677’s example exactly', async () => {
    const s = new ScramServerSession({ directory: directory({ user: { device, keys: [pencil] } }), secret, serverNonce });
    const first = await s.step('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    assert.deepEqual(first, { kind: 'continue', reply: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096' });
    const final = await s.step('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
    assert.deepEqual(final, { kind: 'ok', reply: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', device });
    assert.equal(s.finished, true);
  });

  it('gives an unknown serial a stable salt of the usual shape, then the same refusal as a wrong key', async () => {
    const dir = directory({ user: { device, keys: [pencil] } });
    const ask = async (serial: string) => (await new ScramServerSession({ directory: dir, secret }).step(`n,,n=${serial},r=abc`)) as { reply: string };
    const a = await ask('nobody');
    const b = await ask('nobody');
    const known = await ask('user');
    const shape = /^r=abc[A-Za-z0-9+/]{24},s=[A-Za-z0-9+/]{22}==,i=4096$/;
    assert.match(a.reply, shape);
    assert.match(known.reply, shape);
    assert.equal(a.reply.split(',s=')[1], b.reply.split(',s=')[1], 'the same salt every time, as a real device has');
    for (const serial of ['nobody', 'user']) {
      const s = new ScramServerSession({ directory: dir, secret });
      const sf = (await s.step(`n,,n=${serial},r=abc`)) as { reply: string };
      const nonce = sf.reply.slice(2, sf.reply.indexOf(','));
      const out = await s.step(`c=biws,r=${nonce},p=${Buffer.alloc(32).toString('base64')}`);
      assert.equal(out.kind === 'failed' && out.reply, 'e=invalid-proof');
    }
  });

  it('malformed messages end the login with an RFC 5802 error, never a throw', async () => {
    const dir = directory({ user: { device, keys: [pencil] } });
    const cases: Array<[string, string]> = [
      ['p=tls-unique,,n=user,r=a', 'e=channel-binding-not-supported'],
      ['n,,m=x,n=user,r=a', 'e=extensions-not-supported'],
      ['n,,n=us=er,r=a', 'e=invalid-username-encoding'],
      ['n,,n=user', 'e=invalid-encoding'],
      ['hello', 'e=invalid-encoding'],
      ['n,,n=user,r=a b', 'e=invalid-encoding'],
    ];
    for (const [message, reply] of cases) assert.equal((await new ScramServerSession({ directory: dir, secret }).step(message)).reply, reply, message);
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 60 }), fc.string({ maxLength: 80 }), async (first, final) => {
        const s = new ScramServerSession({ directory: dir, secret });
        const a = await s.step(first);
        const b = await s.step(final);
        assert.ok(a.reply.startsWith('r=') || a.reply.startsWith('e='));
        assert.ok(b.kind !== 'ok' && (b.reply.startsWith('e=') || b.reply.startsWith('r=')));
      }),
      { numRuns: 300 },
    );
  });

  it('decodes the escaped serial (=2C is a comma, =3D an equals sign)', async () => {
    const odd = { tenant: 't', serial: 'a,b=c', id: 2 };
    const s = new ScramServerSession({ directory: directory({ 'a,b=c': { device: odd, keys: [pencil] } }), secret });
    await s.step('n,,n=a=2Cb=3Dc,r=x');
    assert.equal(s.serial, 'a,b=c');
  });
});
