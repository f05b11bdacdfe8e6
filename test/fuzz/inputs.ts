/**
 * Generated inputs for the fuzz targets: real payloads of every format (the examples of
 * docs/formats.md, docs/protocol-*.md and the seeds), and near-valid mutations of them — cut short,
 * a byte flipped, hostile bytes inserted (NUL, bad UTF-8, a BOM), huge and odd numbers, deep
 * nesting, a part repeated until oversize — mixed with plain random bytes and text.
 */
import fc from 'fast-check';
import { encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { encodeSenmlXml } from '../../nodes/core/codecs/senml-xml';
import type { ResolvedRecord } from '../../nodes/core/model/senml';

const T = 1_767_607_200;
const RECORDS: ResolvedRecord[] = [
  { n: 'urn:dev:ow:10e2073a01080063/temp', t: T, u: 'Cel', v: 23.1 },
  { n: 'room/hum', t: T + 1, u: '%RH', v: 40 },
  { n: 'door/open', t: T + 2, vb: true },
  { n: 'mode', t: T + 3, vs: 'éco' },
  { n: 'blob', t: T + 4, vd: 'aGVsbG8' },
  { n: 'energy', t: T + 5, u: 'J', s: 1200 },
];

export const SENML_JSON = [
  '[{"bn":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]',
  '[{"bn":"room/","bt":1767607200,"bu":"Cel","bver":10,"n":"temp","v":22},{"n":"hum","u":"%RH","v":40,"t":1},{"n":"open","vb":true,"t":-1}]',
  '[{"n":"mode","vs":"éco"},{"n":"blob","vd":"aGVsbG8"},{"n":"energy","u":"J","s":1200,"ut":60}]',
  '[{"bn":"a/","bv":10,"bs":5,"n":"x","v":1,"s":2}]',
  '[{"n":"t","v":21.5}]',
];
export const SENML_CBOR = [encodeSenmlCbor(RECORDS), encodeSenmlCbor(RECORDS.slice(0, 1)), Buffer.from('81a3006474656d70016343656c0218fe', 'hex')].map((b) =>
  Buffer.from(b),
);
export const SENML_XML = [
  encodeSenmlXml(RECORDS),
  '<sensml xmlns="urn:ietf:params:xml:ns:senml"><senml bn="urn:dev:ow:10e2073a01080063" u="Cel" v="23.1"/></sensml>',
  '<?xml version="1.0" encoding="UTF-8"?><sensml xmlns="urn:ietf:params:xml:ns:senml"><senml n="a" vs="x &amp; y"/><senml n="b" vb="false"/></sensml>',
];
export const ULTRALIGHT = ['t|21.5|h|40', '2026-01-05T10:00:00Z|t|21.5#t|22', 'mode|éco', 't|21.5|tt|2020-06-14T12:19:26Z', 'a|x\\|y|b|1e3', 't|-0.5#h|40'];
export const UL_COMMANDS = ['SN-1@ping|22', 'SN-1@set|k=v|k2=v2', 'SN-1@reboot', 'SN-1@ping|pong', 'SN-1@udptokens|tokens=00ff'];
export const ATTRIBUTES = ['{"t":21.5,"on":true,"mode":{"value":"eco"}}', '{"temp":21.5}', '{"t":22,"on":true}', '{"a":"x","b":-1e-7,"c":false}'];
const NS = 'http://xmpp.rocks';
export const SEN1 = [
  `<Sen1Message xmlns="${NS}"><username>jdupont</username><name>station12</name><metaname>temperature</metaname><metavalue>Température de l'air</metavalue><unite>Cel</unite><type>dt_numeric</type><applicationSrc>meteo</applicationSrc><applicationDst>agri</applicationDst><Sen1Datas><Sen1Data><value>21.5</value><timestamp>2023-05-01 10:20:30</timestamp></Sen1Data><Sen1Data><value>22</value><timestamp>2023-05-02 10:20:30</timestamp></Sen1Data></Sen1Datas></Sen1Message>`,
  `<?xml version="1.0" encoding="UTF-8"?><Sen1Message xmlns="${NS}"><username>u</username><name>n</name><metaname></metaname><metavalue/><unite></unite><type>dt_string</type><applicationSrc></applicationSrc><applicationDst></applicationDst><Sen1Datas><Sen1Data><value>ok</value><timestamp>2023-05-01 10:20:30</timestamp></Sen1Data></Sen1Datas></Sen1Message>`,
  `<Sen1Message xmlns="${NS}"><username>u</username><name>boiler/t</name><type>dt_boolean</type><Sen1Datas><Sen1Data><value>true</value><timestamp>2023-05-01</timestamp></Sen1Data></Sen1Datas></Sen1Message>`,
  `<Sen1Message xmlns="${NS}"><username>u</username><name>d</name><type>dt_duration</type><Sen1Datas><Sen1Data><value>P1D</value><timestamp>2023-05-01 10:20:30</timestamp></Sen1Data></Sen1Datas></Sen1Message>`,
];
export const EAPI = [
  '{"type":"eapi_measurement_new","data":{"timeStamp":"2022-10-11T16:21:27+00:00","value":24.6,"unit":"°C","unitType":"temperature","deviceId":"951FF00000340","sensorId":"5368"}}',
  '{"type":"eapi_geodata_new","data":{"timeStamp":"2022-10-11T15:21:24+00:00","latitude":47.19999075,"longitude":9.50875282,"accuracy":2316,"deviceId":"951FF00000340","sensorId":"5369"}}',
  '{"type":"eapi_occurrence_new","data":{"timeStamp":"2022-10-11T15:21:24+00:00","typeName":"LoggerStatusChange","previousState":"Start","newState":"LogDelayed","deviceId":"951FF00000340","sensorId":"5369"}}',
  '{"type":"eapi_deviation_enter","data":{"deviceId":"951FF00000340","sensorId":5763,"timeStamp":"2022-10-26T17:00:22+00:00","historyType":"enter","deviationType":"limit","reason":"upper_limit_alarm"}}',
  '{"type":"eapi_deviation_leave","data":{"deviceId":"951FF00000340","sensorId":5763,"timeStamp":"2022-10-26T18:00:22+00:00","historyType":"leave","deviationType":"limit","reason":"upper_limit_alarm"}}',
];
export const PLATFORM_EVENT = [
  '{"id":"evt_1","type":"vehicle.processed","subject":"WVW123","occurredAt":"2026-01-05T10:00:00Z","data":{"vin":"WVW123"}}',
  '{"id":"e2","type":"reading.received","occurredAt":"2026-01-05T10:00:00.000Z","data":{"n":"x","v":1}}',
];

/** Hostile fragments spliced into otherwise valid text or bytes. */
const HOSTILE: Buffer[] = [
  '\u0000',
  '\uFEFF',
  '1e999',
  '-1e-400',
  '9007199254740993',
  '-0',
  'NaN',
  'null',
  '"',
  '\\',
  '\\u0000',
  '\\ud800',
  '&#0;',
  '&bad;',
  '<!DOCTYPE x [<!ENTITY a "aaaa">]>',
  '<![CDATA[',
  ']]>',
  '|',
  '#',
  '@',
  '=',
  '%',
  '/',
  '..',
  '$',
  '__proto__',
  '{"__proto__":{"x":1}}',
  '"constructor"',
  'é',
  '\u2028',
  '🙂',
  '\r\n',
  ' ',
  '[]',
  '{}',
  '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[',
  '{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":',
].map((s) => Buffer.from(s, 'utf8'));
const HOSTILE_BYTES: Buffer[] = [
  [0xff],
  [0xfe, 0xff],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xe2, 0x82],
  [0x80],
  [0xef, 0xbb, 0xbf],
  [0x9f],
  [0xbf],
  [0xf9, 0x7c, 0x00],
  [0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0],
  [0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
  [0xc1],
  [0xd9, 0xd9, 0xf7],
].map((b) => Buffer.from(b));

type Mutation = (b: Buffer) => Buffer;

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  // cut short
  fc.nat().map((i) => (b: Buffer) => b.subarray(0, b.length === 0 ? 0 : i % b.length)),
  // a byte changed
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([i, v]) => (b: Buffer) => {
    if (b.length === 0) return b;
    const c = Buffer.from(b);
    c[i % c.length] = v;
    return c;
  }),
  // a hostile fragment inserted
  fc.tuple(fc.nat(), fc.constantFrom(...HOSTILE, ...HOSTILE_BYTES)).map(([i, frag]) => (b: Buffer) => {
    const at = b.length === 0 ? 0 : i % (b.length + 1);
    return Buffer.concat([b.subarray(0, at), frag, b.subarray(at)]);
  }),
  // a part removed
  fc.tuple(fc.nat(), fc.nat({ max: 16 })).map(([i, n]) => (b: Buffer) => {
    const at = b.length === 0 ? 0 : i % b.length;
    return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
  }),
  // a part repeated (long names, many records, oversize)
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 24 }), fc.integer({ min: 2, max: 200 })).map(([i, len, times]) => (b: Buffer) => {
    if (b.length === 0) return b;
    const at = i % b.length;
    const part = b.subarray(at, at + len);
    return Buffer.concat([b.subarray(0, at), ...Array.from({ length: times }, () => part), b.subarray(at)]);
  }),
  // a number replaced by an extreme one
  fc
    .constantFrom(
      '1e308',
      '1e309',
      '-1e309',
      '0.0000000000000000000000001',
      '18446744073709551616',
      '-9223372036854775809',
      '4294967296',
      '1.7976931348623157e308',
    )
    .map((n) => (b: Buffer) => Buffer.from(b.toString('latin1').replace(/-?\d+(\.\d+)?/, n), 'latin1')),
);

/** A seed, changed by up to `max` mutations (none: the seed as is). */
export function mutated(seeds: ReadonlyArray<string | Uint8Array>, max = 3): fc.Arbitrary<Buffer> {
  const bufs: Buffer[] = seeds.map((s) => (typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s)));
  return fc.tuple(fc.constantFrom(...bufs), fc.array(mutation, { maxLength: max })).map(([seed, ms]) => ms.reduce<Buffer>((b, m) => m(b), seed));
}

/** Deeply nested JSON (arrays or objects), past any sane limit. */
export const deepJson: fc.Arbitrary<Buffer> = fc.tuple(fc.integer({ min: 30, max: 5000 }), fc.boolean(), fc.boolean()).map(([depth, arrays, closed]) => {
  const open = arrays ? '[' : '{"a":';
  const close = arrays ? ']' : '}';
  return Buffer.from(open.repeat(depth) + '1' + (closed ? close.repeat(depth) : ''));
});

/** Random bytes and random text, short and long. */
export const noise: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 64, unit: 'binary' }).map((s) => Buffer.from(s, 'utf8')),
  fc.uint8Array({ minLength: 1000, maxLength: 20_000 }).map((b) => Buffer.from(b)),
  fc.json({ maxDepth: 3 }).map((s) => Buffer.from(s)),
);

/** Bytes shaped like `seeds`: mostly mutations, some as they are, some noise and deep nesting. */
export function payload(seeds: ReadonlyArray<string | Uint8Array>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 6, arbitrary: mutated(seeds) },
    { weight: 2, arbitrary: mutated(seeds, 0) },
    { weight: 2, arbitrary: noise },
    { weight: 1, arbitrary: deepJson },
  );
}

/** Every device payload format's seeds. */
export const DEVICE_SEEDS: ReadonlyArray<string | Uint8Array> = [...SENML_JSON, ...SENML_CBOR, ...SENML_XML, ...ULTRALIGHT, ...ATTRIBUTES];
