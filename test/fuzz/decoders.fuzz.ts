/**
 * Every decoder under fuzz, in process: each input gives records (valid resolved SenML) or the
 * decoder's own typed error with a reason — CodecError for the codecs, FrameError for TCP frames,
 * a refusal for UDP datagrams — never a TypeError, RangeError or anything else from inside.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { decodeEapi } from '../../nodes/core/codecs/eapi';
import { compileMapping, decodeWithMapping } from '../../nodes/core/codecs/json-map';
import { decodeSen1 } from '../../nodes/core/codecs/sen1';
import { decodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { decodeSenmlJson } from '../../nodes/core/codecs/senml-json';
import { decodeSenmlXml } from '../../nodes/core/codecs/senml-xml';
import { parseUlCommand, parseUlCommandResult, ulToRecords } from '../../nodes/core/codecs/ultralight';
import { decodeDevicePayload } from '../../nodes/core/devices/ingest';
import { CodecError } from '../../nodes/core/errors';
import { validateResolved } from '../../nodes/core/model/senml';
import { decodeDatagramPayload, encodeDatagram, parseDatagram, PayloadType } from '../../nodes/core/protocol/datagram';
import { dataFramePayload, encodeFrame, FrameDecoder, FrameError, FrameType, type Frame } from '../../nodes/core/protocol/frames';
import { assertReason, budget, fuzz, type Outcomes } from './fuzz';
import { ATTRIBUTES, DEVICE_SEEDS, EAPI, mutated, noise, payload, SEN1, SENML_CBOR, SENML_JSON, SENML_XML, UL_COMMANDS, ULTRALIGHT } from './inputs';

const now = 1_767_607_200;

/** Runs a decoder on one input: records (checked) or a CodecError with a reason; anything else fails. */
async function decoded(what: string, outcomes: Outcomes, decode: () => unknown): Promise<void> {
  let result: unknown;
  try {
    result = await decode();
  } catch (err) {
    if (!(err instanceof CodecError))
      throw new Error(`${what}: expected records or a CodecError, got ${err instanceof Error ? err.stack : String(err)}`, { cause: err });
    assertReason(err.reason, what);
    outcomes.add('CodecError');
    return;
  }
  if (Array.isArray(result)) validateResolved(result, what);
  outcomes.add('records');
}

describe('fuzz: decoders', function () {
  this.timeout(budget(0.5));

  it('SenML JSON', () =>
    fuzz({
      target: 'decoder SenML JSON',
      arbitrary: fc.oneof(
        payload(SENML_JSON),
        fc.json().map((s) => Buffer.from(s)),
      ),
      check: (b, o) => decoded('senml+json', o, () => decodeSenmlJson(b, { now })),
    }));

  it('SenML CBOR', () =>
    fuzz({
      target: 'decoder SenML CBOR',
      arbitrary: payload(SENML_CBOR),
      check: (b, o) => decoded('senml+cbor', o, () => decodeSenmlCbor(b, { now })),
    }));

  it('SenML XML', () =>
    fuzz({
      target: 'decoder SenML XML',
      arbitrary: payload(SENML_XML),
      check: (b, o) => decoded('senml+xml', o, () => decodeSenmlXml(b, { now })),
    }));

  it('Sen1Message', () =>
    fuzz({
      target: 'decoder Sen1',
      arbitrary: payload(SEN1),
      check: (b, o) => decoded('sen1', o, () => decodeSen1(b).records),
    }));

  it('UltraLight measures, commands and command results', () =>
    fuzz({
      target: 'decoder UltraLight',
      arbitrary: fc.tuple(payload([...ULTRALIGHT, ...UL_COMMANDS]), fc.constantFrom('SN-1', 'dev 1', 'a/b', 'é')),
      check: async ([b, serial], o) => {
        const map = { t: { name: 'temperature', type: 'Number' }, tt: { name: 'TimeInstant', type: 'DateTime' }, h: { name: 'on', type: 'Boolean' } };
        await decoded('ultralight', o, () => ulToRecords(b, { deviceId: serial, map, now }));
        await decoded('ultralight command', o, () => void parseUlCommand(b));
        await decoded('ultralight result', o, () => void parseUlCommandResult(b));
      },
    }));

  it('cloud logger (eapi) messages, as text and as parsed JSON', () =>
    fuzz({
      target: 'decoder eapi',
      arbitrary: payload(EAPI),
      check: async (b, o) => {
        await decoded('eapi', o, () => decodeEapi(b.toString('utf8')));
        let value: unknown;
        try {
          value = JSON.parse(b.toString('utf8'));
        } catch {
          return;
        }
        await decoded('eapi (value)', o, () => decodeEapi(value));
      },
    }));

  it('JSON mapping (JSONata) over hostile documents', () => {
    const mapping = compileMapping('{"n": id & "/temp", "u": "Cel", "v": $number(x)}', { timeoutMs: 200 });
    return fuzz({
      target: 'decoder JSON map',
      arbitrary: payload(['{"id":"a","x":1}', '{"id":"SN-1","x":"21.5"}', '{"id":"b","x":-1e3}']),
      check: (b, o) => decoded('map', o, () => decodeWithMapping(mapping, b, { now })),
    });
  });

  it('device payloads: SenML (any wire format), UltraLight, JSON attributes', () =>
    fuzz({
      target: 'decoder device payloads',
      arbitrary: fc.tuple(
        fc.constantFrom('senml', 'ultralight', 'attributes') as fc.Arbitrary<'senml' | 'ultralight' | 'attributes'>,
        payload([...DEVICE_SEEDS, ...ATTRIBUTES]),
      ),
      check: (([format, b], o) => decoded(`device ${format}`, o, () => decodeDevicePayload(format, b, 'SN-1', now).records)) as (
        input: ['senml' | 'ultralight' | 'attributes', Buffer],
        o: Outcomes,
      ) => Promise<void>,
    }));

  it('TCP frames: a byte stream cut anywhere gives back its frames, or a fatal FrameError; each data frame decodes or is refused', () => {
    const frame = fc.oneof(
      fc.tuple(fc.constantFrom(FrameType.BINARY, FrameType.ASCII, FrameType.UTF8, FrameType.JSON), payload(DEVICE_SEEDS)),
      fc.tuple(fc.integer({ min: 0, max: 255 }), noise),
    );
    const stream = fc.tuple(
      fc.array(frame, { minLength: 1, maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 8 }),
      fc.boolean(),
      fc.nat(),
    );
    return fuzz({
      target: 'decoder TCP frames',
      arbitrary: stream,
      check: ([frames, cuts, corrupt, at], o) => {
        const max = 4096;
        let bytes = Buffer.concat(frames.map(([type, p]) => encodeFrame(type, p)));
        if (corrupt) {
          // A length field made wrong (0 or huge) somewhere: the framing is lost from there on.
          bytes = Buffer.from(bytes);
          bytes.writeUInt32BE(at % 2 === 0 ? 0 : 0x7fffffff, 0);
        }
        const decoder = new FrameDecoder(max);
        const got: Frame[] = [];
        let error: FrameError | undefined;
        let offset = 0;
        for (const cut of [...cuts, bytes.length]) {
          const r = decoder.push(bytes.subarray(offset, Math.min(bytes.length, offset + cut)));
          offset = Math.min(bytes.length, offset + cut);
          got.push(...r.frames);
          if (r.error) error = r.error;
          if (offset >= bytes.length) break;
        }
        if (offset < bytes.length) {
          const r = decoder.push(bytes.subarray(offset));
          got.push(...r.frames);
          if (r.error) error = r.error;
        }
        if (error) {
          assert.ok(error instanceof FrameError && error.fatal);
          assertReason(error.message, 'frame decoder');
          o.add('fatal FrameError');
        } else {
          // Without a bad length, exactly the frames written, in order (those over the limit end it with an error).
          assert.equal(got.length, frames.length);
          got.forEach((f, i) => {
            assert.equal(f.type, frames[i][0]);
            assert.ok(f.payload.equals(frames[i][1]));
          });
          o.add('frames');
        }
        for (const f of got) {
          try {
            dataFramePayload(f);
            o.add('data payload');
          } catch (err) {
            if (!(err instanceof FrameError)) throw new Error(`dataFramePayload: ${err instanceof Error ? err.stack : String(err)}`, { cause: err });
            assertReason(err.message, 'data frame');
            o.add('FrameError');
          }
        }
      },
    });
  });

  it('UDP datagrams: read and decoded, or refused with a reason; never a throw', () => {
    const valid = fc
      .tuple(
        fc.constantFrom('SN-1', 'é', 'x'.repeat(255)),
        fc.constantFrom(PayloadType.senmlCbor, PayloadType.ultralightAscii, PayloadType.ultralightUtf8, PayloadType.json),
        payload(DEVICE_SEEDS),
      )
      .filter(([, , p]) => p.length > 0)
      .map(([serial, type, p]) => encodeDatagram({ serial, token: Buffer.alloc(16, 7), type, payload: p }));
    return fuzz({
      target: 'decoder UDP datagrams',
      arbitrary: fc.oneof(
        { weight: 3, arbitrary: valid },
        { weight: 3, arbitrary: fc.tuple(valid, fc.array(fc.nat(), { maxLength: 0 })).chain(([d]) => mutated([d])) },
        noise,
      ),
      check: (d, o) => {
        const parsed = parseDatagram(d);
        if (!parsed.ok) {
          assertReason(parsed.reason, 'datagram');
          o.add('malformed');
          return;
        }
        const r = decodeDatagramPayload(parsed.datagram.type, parsed.datagram.payload, parsed.datagram.serial, now);
        if (r.ok) {
          validateResolved(r.decoded.records, 'udp');
          o.add('decoded');
        } else {
          assert.ok(!r.internal, `an internal error: ${r.reason}`);
          assertReason(r.reason, 'datagram payload');
          o.add('undecodable');
        }
      },
    });
  });
});
