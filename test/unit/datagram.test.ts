/**
 * The UDP datagram codec: its layout byte for byte, a clear reason for every malformed
 * datagram, each payload type decoded for the token's device, and a fuzz: no input makes it throw.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { DATAGRAM_OVERHEAD, decodeDatagramPayload, encodeDatagram, parseDatagram, PayloadType, type PayloadTypeCode } from '../../nodes/core/protocol/datagram';
import { buildDatagram } from '../../tools/device-client/udp';

const TOKEN = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const NOW = 1_767_000_000;
/** What a JavaScript crash says, rather than a reason. */
const INTERNAL = /Cannot read prop|is not a function|is not iterable|Maximum call stack|undefined is not/;

function reasonOf(bytes: Uint8Array): string {
  const parsed = parseDatagram(bytes);
  assert.equal(parsed.ok, false, 'expected the datagram to be refused');
  return (parsed as { reason: string }).reason;
}

describe('UDP datagram', () => {
  describe('layout', () => {
    it('puts version, serial length, serial, token, type and payload at the documented offsets', () => {
      const d = encodeDatagram({ serial: 'SN-1', token: TOKEN, type: PayloadType.ultralightAscii, payload: 't|21.5' });
      assert.equal(d[0], 1, 'offset 0: version 1');
      assert.equal(d[1], 4, 'offset 1: serial length');
      assert.equal(d.subarray(2, 6).toString(), 'SN-1', 'offset 2: serial');
      assert.deepEqual(d.subarray(6, 22), TOKEN, 'offset 2+L: 16-byte token');
      assert.equal(d[22], 0x02, 'offset 18+L: payload type');
      assert.equal(d.subarray(23).toString(), 't|21.5', 'offset 19+L: payload');
      assert.equal(d.length, DATAGRAM_OVERHEAD + 4 + 6);
    });

    it('builds the example of docs/protocol-udp.md byte for byte', () => {
      const d = buildDatagram({ serial: 'SN-1', token: TOKEN, format: 'ultralight-ascii', payload: 't|21.5' });
      assert.equal(d.toString('hex'), '01' + '04' + '534e2d31' + '00112233445566778899aabbccddeeff' + '02' + '747c32312e35');
      assert.equal(d.length, 29);
    });

    it('reads back what it wrote, for any serial, token, type and payload', () => {
      const serial = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).filter((s) => Buffer.byteLength(s) <= 255);
      const type = fc.constantFrom<PayloadTypeCode>(0x01, 0x02, 0x03, 0x04);
      fc.assert(
        fc.property(serial, fc.uint8Array({ minLength: 16, maxLength: 16 }), type, fc.uint8Array({ minLength: 1, maxLength: 300 }), (s, token, t, payload) => {
          const parsed = parseDatagram(encodeDatagram({ serial: s, token, type: t, payload }));
          assert.ok(parsed.ok);
          assert.equal(parsed.datagram.serial, s);
          assert.deepEqual([...parsed.datagram.token], [...token]);
          assert.equal(parsed.datagram.type, t);
          assert.deepEqual([...parsed.datagram.payload], [...payload]);
        }),
        { numRuns: 300 },
      );
    });

    it('refuses to build what the layout cannot carry', () => {
      assert.throws(() => encodeDatagram({ serial: '', token: TOKEN, type: 0x02, payload: 'x' }), /serial/);
      assert.throws(() => encodeDatagram({ serial: 'x'.repeat(256), token: TOKEN, type: 0x02, payload: 'x' }), /serial/);
      assert.throws(() => encodeDatagram({ serial: 'a', token: TOKEN.subarray(0, 15), type: 0x02, payload: 'x' }), /16 bytes/);
      assert.throws(() => encodeDatagram({ serial: 'a', token: TOKEN, type: 0x09 as PayloadTypeCode, payload: 'x' }), /0x09/);
      assert.throws(() => encodeDatagram({ serial: 'a', token: TOKEN, type: 0x02, payload: '' }), /empty/);
      assert.throws(() => buildDatagram({ serial: 'a', token: TOKEN, format: 'ultralight-ascii', payload: 't|21°' }), /ASCII/);
    });
  });

  describe('malformed datagrams are refused with the reason', () => {
    const good = encodeDatagram({ serial: 'SN-1', token: TOKEN, type: PayloadType.json, payload: '{"t":1}' });

    it('empty', () => assert.match(reasonOf(Buffer.alloc(0)), /empty/));
    it('another version', () => assert.match(reasonOf(Buffer.from([2, ...good.subarray(1)])), /version 2 is not supported/));
    it('only the version byte', () => assert.match(reasonOf(Buffer.from([1])), /serial length/));
    it('a zero serial length', () => assert.match(reasonOf(Buffer.from([1, 0, ...TOKEN, 4, 0x7b])), /serial length is 0/));
    it('cut inside the serial', () => assert.match(reasonOf(good.subarray(0, 4)), /ends inside the serial \(4 bytes declared, 2 present\)/));
    it('a serial that is not UTF-8', () => assert.match(reasonOf(Buffer.from([1, 2, 0xc3, 0x28, ...TOKEN, 4, 0x7b])), /serial is not valid UTF-8/));
    it('cut inside the token', () => assert.match(reasonOf(good.subarray(0, 12)), /ends inside the token \(16 bytes expected at offset 6, 6 present\)/));
    it('no payload type', () => assert.match(reasonOf(good.subarray(0, 22)), /ends before the payload type \(offset 22\)/));
    it('an unknown payload type', () => {
      const bad = Buffer.from(good);
      bad[22] = 0x17;
      assert.match(reasonOf(bad), /payload type 0x17 is unknown \(expected 0x01 binary SenML CBOR, 0x02 ASCII UltraLight/);
    });
    it('no payload', () => assert.match(reasonOf(good.subarray(0, 23)), /no payload/));
  });

  describe('payloads', () => {
    const decode = (type: PayloadTypeCode, payload: Uint8Array | string, serial = 'SN-1') =>
      decodeDatagramPayload(type, typeof payload === 'string' ? Buffer.from(payload) : payload, serial, NOW);

    it('0x01 SenML CBOR, names under the device', () => {
      const r = decode(0x01, encodeSenmlCbor([{ n: 'temp', t: NOW - 5, u: 'Cel', v: 21.5 }]));
      assert.ok(r.ok);
      assert.equal(r.decoded.format, 'senml+cbor');
      assert.deepEqual(r.decoded.records, [{ n: 'SN-1/temp', t: NOW - 5, u: 'Cel', v: 21.5 }]);
    });

    it('0x01 refuses JSON bytes: the type says what the payload is', () => {
      const r = decode(0x01, '[{"n":"temp","v":1}]');
      assert.ok(!r.ok);
      assert.match(r.reason, /expects a SenML CBOR array, but the payload starts with byte 0x5b/);
    });

    it('0x02 ASCII UltraLight, and a byte over 0x7f is refused with its offset', () => {
      const r = decode(0x02, 't|21.5|h|40');
      assert.ok(r.ok);
      assert.equal(r.decoded.format, 'ultralight');
      assert.deepEqual(r.decoded.records, [
        { n: 'SN-1/t', t: NOW, v: 21.5 },
        { n: 'SN-1/h', t: NOW, v: 40 },
      ]);
      const bad = decode(0x02, Buffer.from('mode|éco'));
      assert.ok(!bad.ok);
      assert.match(bad.reason, /ASCII, but payload byte 5 is 0xc3/);
    });

    it('0x03 UTF-8 UltraLight takes non-ASCII text and refuses invalid UTF-8', () => {
      const r = decode(0x03, 'mode|éco');
      assert.ok(r.ok);
      assert.equal(r.decoded.records[0].n, 'SN-1/mode');
      assert.equal(r.decoded.records[0].vs, 'éco');
      const bad = decode(0x03, Buffer.from([0x6d, 0x7c, 0xff]));
      assert.ok(!bad.ok);
      assert.match(bad.reason, /not valid UTF-8/);
    });

    it('0x04 JSON: a SenML array or an attributes object; anything else refused', () => {
      const senml = decode(0x04, '[{"bn":"SN-1/","n":"temp","u":"Cel","v":20}]');
      assert.ok(senml.ok);
      assert.equal(senml.decoded.format, 'senml+json');
      assert.deepEqual(senml.decoded.records, [{ n: 'SN-1/temp', t: NOW, u: 'Cel', v: 20 }]);
      const attrs = decode(0x04, '{"t":21.5,"on":true,"mode":"eco"}');
      assert.ok(attrs.ok);
      assert.equal(attrs.decoded.format, 'attributes+json');
      assert.deepEqual(attrs.decoded.records, [
        { n: 'SN-1/t', t: NOW, v: 21.5 },
        { n: 'SN-1/on', t: NOW, vb: true },
        { n: 'SN-1/mode', t: NOW, vs: 'eco' },
      ]);
      for (const [body, why] of [
        ['42', /SenML array or an object/],
        ['{"t":', /not JSON/],
        ['{"t":null}', /finite number, a boolean or a string/],
        ['[{"v":"x"}]', /./],
      ] as const) {
        const r = decode(0x04, body);
        assert.ok(!r.ok, body);
        assert.match(r.reason, why);
      }
    });

    it("a device cannot write under another device's names", () => {
      const r = decode(0x04, '[{"n":"SN-2/temp","v":1}]');
      assert.ok(r.ok);
      assert.equal(r.decoded.records[0].n, 'SN-1/SN-2/temp');
      const ul = decode(0x03, 'SN-2@ping|ok');
      assert.ok(ul.ok, !ul.ok ? ul.reason : '');
      assert.deepEqual(
        ul.decoded.records.map((x) => x.n),
        ['SN-1/SN-2/ping_info'],
        'an UltraLight command result naming another device stays under the sender',
      );
    });
  });

  describe('fuzz', () => {
    it('random bytes never throw: always a datagram or a reason', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
          const parsed = parseDatagram(bytes);
          if (!parsed.ok) assert.ok(typeof parsed.reason === 'string' && parsed.reason.length > 5);
          else assert.equal(parsed.datagram.token.length, 16);
        }),
        { numRuns: 5_000 },
      );
    });

    it('random bytes after a valid header never throw: a datagram, then decoded records or a reason', () => {
      const type = fc.integer({ min: 0, max: 255 });
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 8 }), type, fc.uint8Array({ maxLength: 200 }), (serial, t, tail) => {
          const bytes = Buffer.concat([Buffer.from([1, serial.length]), serial, TOKEN, Buffer.from([t]), tail]);
          const parsed = parseDatagram(bytes);
          if (!parsed.ok) return assert.ok(parsed.reason.length > 5);
          const d = decodeDatagramPayload(parsed.datagram.type, parsed.datagram.payload, 'SN-1', NOW);
          if (d.ok) assert.ok(d.decoded.records.length > 0 && d.decoded.records.every((r) => r.n.startsWith('SN-1/')));
          else {
            assert.ok(typeof d.reason === 'string' && d.reason.length > 5, d.reason);
            assert.ok(!d.internal, `a CodecError's reason, not a crash: ${d.reason}`);
            assert.doesNotMatch(d.reason, INTERNAL, 'a reason, not a crash');
          }
        }),
        { numRuns: 5_000 },
      );
    });

    it('payload-shaped random input never throws', () => {
      const payload = fc.oneof(
        fc.json().map((j) => Buffer.from(j)),
        fc.string({ unit: 'binary', maxLength: 60 }).map((s) => Buffer.from(s)),
        fc.array(fc.constantFrom('t', '|', '21.5', '@', '#', '=', 'SN-1', '2026-01-05T10:00:00Z', 'x'), { maxLength: 12 }).map((a) => Buffer.from(a.join(''))),
        fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from([0x81, ...b])),
      );
      fc.assert(
        fc.property(fc.constantFrom<PayloadTypeCode>(0x01, 0x02, 0x03, 0x04), payload, (t, p) => {
          const d = decodeDatagramPayload(t, p, 'SN-1', NOW);
          assert.ok(d.ok ? Array.isArray(d.decoded.records) : d.reason.length > 0);
          // Only a CodecError becomes a reason; anything else a decoder throws is marked internal.
          if (!d.ok) assert.ok(!d.internal, `a CodecError's reason, not a crash: ${d.reason}`);
          // senml-cbor wraps what the CBOR library throws as "malformed CBOR: <its message>": a reason, if a terse one.
          if (!d.ok && !/malformed CBOR: /.test(d.reason)) assert.doesNotMatch(d.reason, INTERNAL, 'a reason, not a crash');
        }),
        { numRuns: 3_000 },
      );
    });
  });
});
