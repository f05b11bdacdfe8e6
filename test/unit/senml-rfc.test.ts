/**
 * RFC 8428 examples, as printed in the RFC, through the SenML codecs: sections 5.1.1-5.1.7 (JSON),
 * 6 (CBOR), 7 and 8 (XML). Expected resolved records are written out by hand from section 4.6.
 */
import { strict as assert } from 'node:assert';
import { CodecError } from '../../nodes/core/errors';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { decodeSenmlJson, encodeSenmlJson } from '../../nodes/core/codecs/senml-json';
import { decodeSenmlXml, encodeSenmlXml } from '../../nodes/core/codecs/senml-xml';
import { decodeSenmlCbor, encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { detectSenmlFormat } from '../../nodes/core/codecs/senml-common';

const now = 1.7e9; // "now" for relative times, fixed so results are exact
const json = (text: string): ResolvedRecord[] => decodeSenmlJson(text, { now });
const xml = (text: string): ResolvedRecord[] => decodeSenmlXml(text, { now });
const hex = (dump: string): Uint8Array => Buffer.from(dump.replace(/\s/g, ''), 'hex');

function rejects(fn: () => unknown, pattern: RegExp, field?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CodecError, `expected a CodecError, got ${String(err)}`);
    assert.match(err.message, pattern);
    if (field !== undefined) assert.equal(err.field, field);
    return true;
  });
}

// Section 5.1.1
const single = `[
  {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
]`;

// Section 5.1.2, first example
const multiple = `[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]`;

// Section 5.1.2, second example (note the RFC's base name here lacks the final "3")
const multipleTimed = `[
  {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
   "bu":"A","bver":5,
   "n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7}
]`;

// Section 5.1.2, the SensML stream, closed where the RFC writes "..."
const stream = `[
  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
   "bu":"%RH","v":21.2},
  {"t":10,"v":21.3},
  {"t":20,"v":21.4},
  {"t":30,"v":21.4},
  {"t":40,"v":21.5},
  {"t":50,"v":21.5},
  {"t":60,"v":21.5},
  {"t":70,"v":21.6},
  {"t":80,"v":21.7}
]`;

// Section 5.1.3
const measurements = `[
  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
   "bu":"%RH","v":20},
  {"u":"lon","v":24.30621},
  {"u":"lat","v":60.07965},
  {"t":60,"v":20.3},
  {"u":"lon","t":60,"v":24.30622},
  {"u":"lat","t":60,"v":60.07965},
  {"t":120,"v":20.7},
  {"u":"lon","t":120,"v":24.30623},
  {"u":"lat","t":120,"v":60.07966},
  {"u":"%EL","t":150,"v":98},
  {"t":180,"v":21.2},
  {"u":"lon","t":180,"v":24.30628},
  {"u":"lat","t":180,"v":60.07967}
]`;

// Section 5.1.4
const measurementsResolved = `[
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,
   "v":20},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,
   "v":24.30621},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,
   "v":60.07965},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,
   "v":20.3},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,
   "v":24.30622},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,
   "v":60.07965},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,
   "v":20.7},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,
   "v":24.30623},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,
   "v":60.07966},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,
   "v":98},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,
   "v":21.2},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,
   "v":24.30628},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,
   "v":60.07967}
]`;

// Section 5.1.5
const dataTypes = `[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
  {"n":"label","vs":"Machine Room"},
  {"n":"open","vb":false},
  {"n":"nfv-reader","vd":"aGkgCg"}
]`;

// Section 5.1.6
const collection = `[
  {"bn":"2001:db8::2/","bt":1.320078429e+09,
   "n":"temperature","u":"Cel","v":25.2},
  {"n":"humidity","u":"%RH","v":30},
  {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
  {"n":"humidity","u":"%RH","v":67}
]`;

// Section 5.1.7, three examples
const thermostat = `[
  {"bn":"urn:dev:ow:10e2073a01080063:"},
  {"n":"temp","u":"Cel","v":23.1},
  {"n":"heat","u":"/","v":1},
  {"n":"fan","u":"/","v":0}
]`;
const lightsOn = `[
  {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":1},
  {"n":"2001:db8::4","v":1}
]`;
const lightsOff = `[
  {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
  {"n":"2001:db8::4","v":0.5},
  {"n":"2001:db8::3","t":0.1,"v":0},
  {"n":"2001:db8::4","t":0.1,"v":0}
]`;

// Section 6: the CBOR of the second example of 5.1.2
const cborDump = `
 0000 87 a7 21 78 1b 75 72 6e 3a 64 65 76 3a 6f 77 3a
 0010 31 30 65 32 30 37 33 61 30 31 30 38 30 30 36 3a
 0020 22 fb 41 d3 03 a1 5b 00 10 62 23 61 41 20 05 00
 0030 67 76 6f 6c 74 61 67 65 01 61 56 02 fb 40 5e 06
 0040 66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06
 0050 24 02 fb 3f f3 33 33 33 33 33 33 a3 00 67 63 75
 0060 72 72 65 6e 74 06 23 02 fb 3f f4 cc cc cc cc cc
 0070 cd a3 00 67 63 75 72 72 65 6e 74 06 22 02 fb 3f
 0080 f6 66 66 66 66 66 66 a3 00 67 63 75 72 72 65 6e
 0090 74 06 21 02 f9 3e 00 a3 00 67 63 75 72 72 65 6e
 00a0 74 06 20 02 fb 3f f9 99 99 99 99 99 9a a3 00 67
 00b0 63 75 72 72 65 6e 74 06 00 02 fb 3f fb 33 33 33
 00c0 33 33 33`.replace(/^ *[0-9a-f]{4} /gm, '');

// Section 7: the XML of the second example of 5.1.2
const xmlTimed = `<sensml xmlns="urn:ietf:params:xml:ns:senml">
  <senml bn="urn:dev:ow:10e2073a0108006:" bt="1.276020076001e+09"
  bu="A" bver="5" n="voltage" u="V" v="120.1"></senml>
  <senml n="current" t="-5" v="1.2"></senml>
  <senml n="current" t="-4" v="1.3"></senml>
  <senml n="current" t="-3" v="1.4"></senml>
  <senml n="current" t="-2" v="1.5"></senml>
  <senml n="current" t="-1" v="1.6"></senml>
  <senml n="current" v="1.7"></senml>
</sensml>`;

// Section 8: the XML of the first example of 5.1.2, and of 5.1.1
const xmlMultiple = `<sensml xmlns="urn:ietf:params:xml:ns:senml">
  <senml bn="urn:dev:ow:10e2073a01080063:" n="voltage" u="V"
  v="120.1"></senml>
  <senml n="current" u="A" v="1.2"></senml>
</sensml>`;
const xmlSingle = `<sensml xmlns="urn:ietf:params:xml:ns:senml">
  <senml n="urn:dev:ow:10e2073a01080063" u="Cel" v="23.1"></senml>
</sensml>`;

describe('SenML codecs: RFC 8428 examples', () => {
  describe('section 5.1 (JSON)', () => {
    it('5.1.1 single data point: a relative time of 0 is "now"', () => {
      assert.deepStrictEqual(json(single), [{ n: 'urn:dev:ow:10e2073a01080063', u: 'Cel', v: 23.1, t: now }]);
    });

    it('5.1.2 multiple data points: base name prefixes both names', () => {
      assert.deepStrictEqual(json(multiple), [
        { n: 'urn:dev:ow:10e2073a01080063:voltage', u: 'V', v: 120.1, t: now },
        { n: 'urn:dev:ow:10e2073a01080063:current', u: 'A', v: 1.2, t: now },
      ]);
    });

    it('5.1.2 with base time, base unit and bver 5: ordered by time, bver in every record', () => {
      const bt = 1.276020076001e9;
      const n = 'urn:dev:ow:10e2073a0108006:current';
      assert.deepStrictEqual(json(multipleTimed), [
        { n, u: 'A', t: bt - 5, v: 1.2, bver: 5 },
        { n, u: 'A', t: bt - 4, v: 1.3, bver: 5 },
        { n, u: 'A', t: bt - 3, v: 1.4, bver: 5 },
        { n, u: 'A', t: bt - 2, v: 1.5, bver: 5 },
        { n, u: 'A', t: bt - 1, v: 1.6, bver: 5 },
        { n: 'urn:dev:ow:10e2073a0108006:voltage', u: 'V', t: bt, v: 120.1, bver: 5 },
        { n, u: 'A', t: bt, v: 1.7, bver: 5 },
      ]);
    });

    it('5.1.2 SensML stream: records without a name take the base name', () => {
      const bt = 1.320067464e9;
      const n = 'urn:dev:ow:10e2073a01080063';
      const values = [21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.5, 21.6, 21.7];
      assert.deepStrictEqual(
        json(stream),
        values.map((v, k) => ({ n, u: '%RH', t: bt + 10 * k, v })),
      );
    });

    it('5.1.3 multiple measurements resolve to exactly the records of 5.1.4', () => {
      assert.deepStrictEqual(json(measurements), JSON.parse(measurementsResolved));
    });

    it('5.1.4 resolved data decodes to itself', () => {
      assert.deepStrictEqual(json(measurementsResolved), JSON.parse(measurementsResolved));
    });

    it('5.1.5 multiple data types: v, vs, vb and vd', () => {
      const bn = 'urn:dev:ow:10e2073a01080063:';
      assert.deepStrictEqual(json(dataTypes), [
        { n: `${bn}temp`, u: 'Cel', v: 23.1, t: now },
        { n: `${bn}label`, vs: 'Machine Room', t: now },
        { n: `${bn}open`, vb: false, t: now },
        { n: `${bn}nfv-reader`, vd: 'aGkgCg', t: now },
      ]);
    });

    it('5.1.6 collection of resources: a new base name keeps the earlier base time', () => {
      const t = 1.320078429e9;
      assert.deepStrictEqual(json(collection), [
        { n: '2001:db8::2/temperature', u: 'Cel', v: 25.2, t },
        { n: '2001:db8::2/humidity', u: '%RH', v: 30, t },
        { n: '2001:db8::1/temperature', u: 'Cel', v: 12.3, t },
        { n: '2001:db8::1/humidity', u: '%RH', v: 67, t },
      ]);
    });

    it('5.1.7 thermostat: the base-only record yields no reading', () => {
      const bn = 'urn:dev:ow:10e2073a01080063:';
      assert.deepStrictEqual(json(thermostat), [
        { n: `${bn}temp`, u: 'Cel', v: 23.1, t: now },
        { n: `${bn}heat`, u: '/', v: 1, t: now },
        { n: `${bn}fan`, u: '/', v: 0, t: now },
      ]);
    });

    it('5.1.7 two lights on: base unit and absolute base time apply to both', () => {
      const t = 1.320078429e9;
      assert.deepStrictEqual(json(lightsOn), [
        { n: '2001:db8::3', u: '/', v: 1, t },
        { n: '2001:db8::4', u: '/', v: 1, t },
      ]);
    });

    it('5.1.7 two lights dimmed then off 100 ms later', () => {
      const bt = 1.320078429e9;
      assert.deepStrictEqual(json(lightsOff), [
        { n: '2001:db8::3', u: '/', v: 0.5, t: bt },
        { n: '2001:db8::4', u: '/', v: 0.5, t: bt },
        { n: '2001:db8::3', u: '/', v: 0, t: bt + 0.1 },
        { n: '2001:db8::4', u: '/', v: 0, t: bt + 0.1 },
      ]);
    });

    it('accepts UTF-8 bytes and already parsed packs like text', () => {
      assert.deepStrictEqual(decodeSenmlJson(Buffer.from(measurements), { now }), json(measurements));
      assert.deepStrictEqual(decodeSenmlJson(JSON.parse(dataTypes) as unknown[], { now }), json(dataTypes));
    });

    it('every example survives encode then decode', () => {
      for (const text of [single, multiple, multipleTimed, stream, measurements, dataTypes, collection, thermostat, lightsOn, lightsOff]) {
        const records = json(text);
        assert.deepStrictEqual(json(encodeSenmlJson(records)), records);
      }
    });
  });

  describe('section 6 (CBOR)', () => {
    it('the hex dump decodes to the same records as the JSON of 5.1.2', () => {
      const bytes = hex(cborDump);
      assert.equal(bytes.length, 0xc3);
      assert.deepStrictEqual(decodeSenmlCbor(bytes, { now }), json(multipleTimed));
    });

    it('5.1.5 encodes vd as a CBOR byte string and reads it back as base64url', () => {
      const records = json(dataTypes);
      const bytes = encodeSenmlCbor(records);
      assert.ok(Buffer.from(bytes).includes(Buffer.from([0x08, 0x44, 0x68, 0x69, 0x20, 0x0a])), 'label 8, then bytes(4) "hi \\n"');
      assert.deepStrictEqual(decodeSenmlCbor(bytes, { now }), records);
    });

    it('writes a definite-length array of maps with integer keys, as in the RFC', () => {
      const bytes = encodeSenmlCbor([{ n: 'a', t: 2 ** 30, v: 1.5 }]);
      // [ {0: "a", 6: 2**30, 2: 1.5} ]
      assert.equal(Buffer.from(bytes).toString('hex'), '81' + 'a3' + '006161' + '061a40000000' + '02fb3ff8000000000000');
    });

    it('reads an indefinite-length array (a SensML stream) and decimal fractions (tag 4)', () => {
      // [_ {0: "a", 6: 2**30, 2: 4([-2, 2718])} ]
      const bytes = hex('9f a3 0061 61 06 1a40000000 02 c4 82 21 190a9e ff');
      assert.deepStrictEqual(decodeSenmlCbor(bytes, { now }), [{ n: 'a', t: 2 ** 30, v: 27.18 }]);
    });
  });

  describe('sections 7 and 8 (XML)', () => {
    it('section 7 decodes to the same records as the JSON of 5.1.2', () => {
      assert.deepStrictEqual(xml(xmlTimed), json(multipleTimed));
    });

    it('section 8, first XML example, decodes like the first JSON of 5.1.2', () => {
      assert.deepStrictEqual(xml(xmlMultiple), json(multiple));
    });

    it('section 8, second XML example, decodes like 5.1.1', () => {
      assert.deepStrictEqual(xml(xmlSingle), json(single));
    });

    it('reads bytes, an XML declaration, comments, self-closing records and a namespace prefix', () => {
      const text =
        '<?xml version="1.0" encoding="UTF-8"?><!-- from a gateway --><s:sensml xmlns:s="urn:ietf:params:xml:ns:senml">' +
        '<s:senml n="urn:dev:ow:10e2073a01080063" u="Cel" v="23.1"/></s:sensml>';
      assert.deepStrictEqual(decodeSenmlXml(Buffer.from(text), { now }), json(single));
    });

    it('types attributes by Table 5: xsd:boolean 1/0, xsd:double exponents, xsd:int bver', () => {
      const text =
        '<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml bn="d:" bver="3" bt="1.7E9" n="a" vb="1"/>' +
        '<senml n="b" vb="0" t=".5"/><senml n="c" v="-1.5e-3" s="+2"/></sensml>';
      assert.deepStrictEqual(xml(text), [
        { n: 'd:a', t: 1.7e9, vb: true, bver: 3 },
        { n: 'd:c', t: 1.7e9, v: -1.5e-3, s: 2, bver: 3 },
        { n: 'd:b', t: 1.7e9 + 0.5, vb: false, bver: 3 },
      ]);
    });

    it('names the record and the field of a bad attribute', () => {
      const doc = (attrs: string): string => `<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" v="1"/><senml n="b" ${attrs}/></sensml>`;
      rejects(() => xml(doc('v="12,5"')), /record 1: field "v": "12,5" is not a finite xsd:double/, 'v');
      rejects(() => xml(doc('vb="yes"')), /record 1: field "vb": "yes" is not an xsd:boolean/, 'vb');
      rejects(() => xml(doc('v="1" bver="5.0"')), /record 1: field "bver": "5.0" is not an xsd:int/, 'bver');
    });

    it('every example survives encode then decode, special characters included', () => {
      for (const text of [single, multiple, multipleTimed, measurements, dataTypes, collection, thermostat, lightsOff]) {
        const records = json(text);
        assert.deepStrictEqual(xml(encodeSenmlXml(records)), records);
      }
      const tricky: ResolvedRecord[] = [{ n: 'a', t: 2 ** 30, vs: ' <&>"\' tab\there\r\nnew line &amp; &#10; ', u: '\u00a0%\u00a0' }];
      assert.deepStrictEqual(xml(encodeSenmlXml(tricky)), tricky);
    });

    it('refuses to encode characters XML 1.0 cannot carry', () => {
      rejects(() => encodeSenmlXml([{ n: 'a', t: 2 ** 30, vs: 'bell\u0007' }]), /XML 1.0/, 'vs');
    });
  });

  describe('XML security', () => {
    it('refuses an external entity (XXE) and says the DOCTYPE is why', () => {
      const xxe =
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' +
        '<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" vs="&xxe;"/></sensml>';
      rejects(() => xml(xxe), /DOCTYPE/);
    });

    it('refuses an entity expansion bomb (billion laughs) and says the DOCTYPE is why', () => {
      let entities = '<!ENTITY lol0 "lol">';
      for (let i = 1; i < 10; i++) entities += `<!ENTITY lol${i} "${`&lol${i - 1};`.repeat(10)}">`;
      const bomb = `<?xml version="1.0"?><!DOCTYPE lolz [${entities}]><sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" vs="&lol9;"/></sensml>`;
      rejects(() => xml(bomb), /DOCTYPE/);
    });
  });

  describe('rules every format applies', () => {
    const cbor = (dump: string): ResolvedRecord[] => decodeSenmlCbor(hex(dump), { now });

    it('refuses a field ending in "_" it does not understand (section 4.4), in JSON, XML and CBOR', () => {
      rejects(() => json('[{"n":"a","v":1,"hue_":"red"}]'), /must be understood/, 'hue_');
      rejects(() => xml('<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" v="1" hue_="red"/></sensml>'), /must be understood/, 'hue_');
      rejects(() => cbor('81 a3 00 61 61 02 01 64 6875655f 63 726564'), /must be understood/, 'hue_');
    });

    it('ignores other unknown fields', () => {
      const expected = [{ n: 'a', t: now, v: 1 }];
      assert.deepStrictEqual(json('[{"n":"a","v":1,"hue":"red"}]'), expected);
      assert.deepStrictEqual(xml('<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" v="1" hue="red" x:y_="z" xmlns:x="urn:x"/></sensml>'), expected);
      assert.deepStrictEqual(cbor('81 a3 00 61 61 02 01 63 687565 63 726564'), expected);
    });

    // RFC 4648 section 10's vectors, padded as base64 libraries write them (RIOT's and other SenML
    // libraries' tests carry such values): read liberally, written without the padding.
    it('accepts vd with base64 padding and writes it without (RFC 8428 sections 4.3 and 6)', () => {
      const vectors: Array<[string, string, string]> = [
        ['f', 'Zg==', 'Zg'],
        ['fo', 'Zm8=', 'Zm8'],
        ['foo', 'Zm9v', 'Zm9v'],
        ['foob', 'Zm9vYg==', 'Zm9vYg'],
        ['fooba', 'Zm9vYmE=', 'Zm9vYmE'],
      ];
      for (const [bytes, padded, bare] of vectors) {
        const records = json(`[{"n":"a","vd":"${padded}"}]`);
        assert.deepStrictEqual(records, [{ n: 'a', t: now, vd: bare }], padded);
        assert.equal(encodeSenmlJson(records), `[{"n":"a","t":${now},"vd":"${bare}"}]`);
        assert.match(encodeSenmlXml(records), new RegExp(` vd="${bare}"`));
        assert.equal(Buffer.from(decodeSenmlCbor(encodeSenmlCbor(records))[0].vd!, 'base64url').toString(), bytes);
        assert.deepStrictEqual(xml(`<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" vd="${padded}"/></sensml>`), [{ n: 'a', t: now, vd: bare }]);
      }
    });

    it('reads a record before the first bver as version 10, and refuses a pack whose versions then disagree', () => {
      // the later record's bver must not be stamped on the earlier record: it was written as version 10
      rejects(() => json('[{"n":"a","v":1},{"bver":5,"n":"b","v":2}]'), /record 1: field "bver": version 5 disagrees with version 10/, 'bver');
      rejects(() => json('[{"bn":"d/"},{"bver":5,"n":"b","v":2}]'), /record 1: field "bver": version 5 disagrees with version 10/, 'bver');
      rejects(
        () => xml('<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" v="1"/><senml bver="5" n="b" v="2"/></sensml>'),
        /record 1: .*disagrees/,
        'bver',
      );
      rejects(() => cbor('82 a2 00 61 61 02 01 a3 20 05 00 61 62 02 02'), /record 1: .*disagrees/, 'bver');
      rejects(() => json('[{"bver":5,"n":"a","v":1},{"bver":10,"n":"b","v":2}]'), /record 1: field "bver": version 10 disagrees with version 5/, 'bver');
      // a version repeated, or given once and carried on, is one version
      assert.deepStrictEqual(json('[{"n":"a","v":1},{"bver":10,"n":"b","v":2}]'), [
        { n: 'a', t: now, v: 1 },
        { n: 'b', t: now, v: 2 },
      ]);
      assert.deepStrictEqual(
        json('[{"bver":5,"n":"a","v":1},{"n":"b","v":2},{"bver":5,"n":"c","v":3}]').map((r) => r.bver),
        [5, 5, 5],
      );
    });

    it('refuses bver above 10 and keeps bver out of resolved records at exactly 10', () => {
      rejects(() => json('[{"bver":11,"n":"a","v":1}]'), /newer than 10/, 'bver');
      rejects(() => xml('<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml bver="11" n="a" v="1"/></sensml>'), /newer than 10/, 'bver');
      rejects(() => cbor('81 a3 20 0b 00 61 61 02 01'), /newer than 10/, 'bver');
      assert.deepStrictEqual(json('[{"bver":10,"n":"a","v":1}]'), [{ n: 'a', t: now, v: 1 }]);
    });

    it('refuses names outside the SenML character set, and empty names', () => {
      rejects(() => json('[{"n":"a b","v":1}]'), /not a valid SenML name/, 'n');
      rejects(() => json('[{"n":"-a","v":1}]'), /not a valid SenML name/, 'n');
      rejects(() => json('[{"bn":"dev#1/","n":"t","v":1}]'), /not a valid SenML name/, 'n');
      rejects(() => json('[{"v":1}]'), /needs a name/, 'n');
      rejects(() => xml('<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="caf\u00e9" v="1"/></sensml>'), /not a valid SenML name/, 'n');
    });

    it('keeps vd as base64url without padding, and refuses the standard alphabet or broken padding', () => {
      assert.deepStrictEqual(json('[{"n":"a","vd":"-_8"}]'), [{ n: 'a', t: now, vd: '-_8' }]);
      assert.deepStrictEqual(cbor('81 a2 00 61 61 08 42 fbff'), [{ n: 'a', t: now, vd: '-_8' }]);
      rejects(() => json('[{"n":"a","vd":"aGk==="}]'), /base64url/, 'vd');
      rejects(() => json('[{"n":"a","vd":"aG="}]'), /base64url/, 'vd');
      rejects(() => json('[{"n":"a","vd":"="}]'), /base64url/, 'vd');
      rejects(() => json('[{"n":"a","vd":"+/8"}]'), /base64url/, 'vd');
      rejects(() => cbor('81 a2 00 61 61 08 63 2d5f38'), /byte string/, 'vd');
    });

    it('refuses base value + value, base time + time or base sum + sum that overflow to Infinity', () => {
      rejects(() => json('[{"n":"a","bv":1e308,"v":1e308}]'), /finite/, 'v');
      rejects(() => json('[{"n":"a","bt":1e308,"t":1e308,"v":1}]'), /finite/, 't');
      rejects(() => json('[{"n":"a","bs":-1e308,"s":-1e308}]'), /finite/, 's');
    });

    it('encoders refuse records that are not resolved', () => {
      for (const encode of [encodeSenmlJson, encodeSenmlXml, encodeSenmlCbor]) {
        rejects(() => encode([{ n: 'a', t: 5, v: 1 }]), /absolute time/, 't');
        rejects(() => encode([{ n: 'a', t: 2 ** 30, v: 1, vs: 'x' }]), /exactly one/);
        rejects(() => encode([{ n: 'a', t: 2 ** 30, v: 1, bver: 10 }]), /bver|version/i, 'bver');
        rejects(
          () =>
            encode([
              { n: 'a', t: 2 ** 30, v: 1, bver: 3 },
              { n: 'b', t: 2 ** 30, v: 1 },
            ]),
          /every resolved record/,
          'bver',
        );
        rejects(() => encode([{ n: 'a', t: 2 ** 30, s: Number.NaN }]), /finite/, 's');
      }
    });
  });

  describe('detectSenmlFormat', () => {
    it('tells JSON, XML and CBOR apart by their first significant byte', () => {
      assert.equal(detectSenmlFormat(multiple), 'json');
      assert.equal(detectSenmlFormat(Buffer.from(`\ufeff \n${multiple}`)), 'json');
      assert.equal(detectSenmlFormat([]), 'json');
      assert.equal(detectSenmlFormat(`\n  ${xmlSingle}`), 'xml');
      assert.equal(detectSenmlFormat(Buffer.from(xmlSingle)), 'xml');
      assert.equal(detectSenmlFormat(hex(cborDump)), 'cbor');
      assert.equal(detectSenmlFormat(hex('9f ff')), 'cbor');
      assert.equal(detectSenmlFormat(hex('d9d9f7 80')), 'cbor');
    });

    it('refuses anything else with a CodecError', () => {
      for (const input of ['{"n":"a"}', '', Buffer.from([0xa1, 0x00]), 42, { n: 'a' }]) {
        rejects(() => detectSenmlFormat(input), /cannot tell the SenML format/);
      }
    });
  });
});
