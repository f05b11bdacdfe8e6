/**
 * Every decoder, fed random input shaped like its format: it returns records or throws a
 * CodecError, never a raw TypeError, RangeError or anything else (those would be our bugs, and a
 * listener would report them as the device's fault).
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { CodecError } from '../../nodes/core/errors';
import { decodeSenmlJson } from '../../nodes/core/codecs/senml-json';
import { decodeSenmlXml } from '../../nodes/core/codecs/senml-xml';
import { decodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { decodeSen1 } from '../../nodes/core/codecs/sen1';
import { decodeEapi } from '../../nodes/core/codecs/eapi';
import { parseUlCommand, parseUlCommandResult, ulToRecords } from '../../nodes/core/codecs/ultralight';
import { decodeDevicePayload } from '../../nodes/core/devices/ingest';

const now = 1.7e9;

function onlyCodecErrors(decode: () => unknown): void {
  try {
    decode();
  } catch (err) {
    assert.ok(err instanceof CodecError, `expected a CodecError, got ${err instanceof Error ? err.stack : String(err)}`);
    assert.ok(err.reason.length > 0, 'with a reason');
  }
}

/** Text built from a format's own tokens, so the fuzz reaches past the first check. */
const tokens = (words: string[], maxLength = 16): fc.Arbitrary<string> => fc.array(fc.constantFrom(...words), { maxLength }).map((a) => a.join(''));

const senmlValue = fc.oneof(
  fc.constantFrom('"a"', '"bn/"', '1', '-1e400', '1e308', '2.5', 'true', 'null', '""', '"aGk="', '"=="', '[]', '{}', '10', '11', '-1', '"_"'),
  fc.double().map(String),
  fc.string({ maxLength: 8 }).map((s) => JSON.stringify(s)),
);
const senmlKey = fc.constantFrom('bn', 'bt', 'bu', 'bv', 'bs', 'bver', 'n', 'u', 'v', 'vs', 'vb', 'vd', 's', 't', 'ut', 'x_', 'x');
const senmlJson = fc
  .array(
    fc.array(fc.tuple(senmlKey, senmlValue), { maxLength: 6 }).map((fields) => `{${fields.map(([k, v]) => `"${k}":${v}`).join(',')}}`),
    { maxLength: 4 },
  )
  .map((records) => `[${records.join(',')}]`);

describe('decoders under fuzz: a CodecError or records, nothing else', () => {
  it('SenML JSON', () => {
    fc.assert(
      fc.property(fc.oneof(senmlJson, fc.json(), fc.string({ maxLength: 40 })), (text) => onlyCodecErrors(() => decodeSenmlJson(text, { now }))),
      { numRuns: 3000 },
    );
  });

  it('SenML XML', () => {
    const attr = fc.tuple(senmlKey, fc.oneof(fc.constantFrom('a', '1', 'true', '1e400', 'x', '', 'aGk=', '&amp;', '&bad;'), fc.string({ maxLength: 6 })));
    const doc = fc
      .array(
        fc.array(attr, { maxLength: 5 }).map((as) => `<senml ${as.map(([k, v]) => `${k}="${v.replace(/"/g, '')}"`).join(' ')}/>`),
        { maxLength: 3 },
      )
      .map((recs) => `<sensml xmlns="urn:ietf:params:xml:ns:senml">${recs.join('')}</sensml>`);
    fc.assert(
      fc.property(
        fc.oneof(doc, tokens(['<', '>', '/', 'sensml', 'senml', ' n="a"', ' v="1"', 'xmlns="urn:ietf:params:xml:ns:senml"', '<!DOCTYPE', '&', '"'])),
        (text) => onlyCodecErrors(() => decodeSenmlXml(text, { now })),
      ),
      { numRuns: 2000 },
    );
  });

  it('SenML CBOR', () => {
    const heads = fc.constantFrom(0x80, 0x81, 0x82, 0x9f, 0xa0, 0xa1, 0xa2, 0xbf, 0xff, 0x00, 0x20, 0x21, 0x61, 0x40, 0x42, 0xf9, 0xfa, 0xfb, 0xc1, 0xd9);
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 60 }),
      fc.array(fc.oneof(heads, fc.integer({ min: 0, max: 255 })), { maxLength: 40 }).map((a) => Uint8Array.from(a)),
    );
    fc.assert(
      fc.property(bytes, (b) => onlyCodecErrors(() => decodeSenmlCbor(b, { now }))),
      { numRuns: 3000 },
    );
  });

  it('UltraLight measures, commands and command results', () => {
    const ul = fc.oneof(
      tokens(['t', 'h', 'tt', 'TimeInstant', '|', '#', '@', '=', '\\', '15', 'abc', '2020-06-14T12:19:26Z', 'dev', 'ping', ' ']),
      fc.string({ maxLength: 30 }),
    );
    const device = fc.constantFrom(undefined, '', 'dev1', 'bad id');
    const map = { t: { name: 'temperature', type: 'Number' }, tt: { name: 'TimeInstant', type: 'DateTime' }, h: { name: 'on', type: 'Boolean' } };
    fc.assert(
      fc.property(ul, device, (text, deviceId) => {
        onlyCodecErrors(() => ulToRecords(text, { deviceId, map, now }));
        onlyCodecErrors(() => parseUlCommand(text));
        onlyCodecErrors(() => parseUlCommandResult(text));
      }),
      { numRuns: 3000 },
    );
  });

  it('Sen1Message', () => {
    const value = fc.oneof(fc.constantFrom('1', '2.5', 'true', 'x', '', '2023-05-01', '2023-05-01 10:20:30', 'P1D', '10:20:30'), fc.string({ maxLength: 8 }));
    const doc = fc
      .tuple(
        fc.constantFrom('dt_string', 'dt_integer', 'dt_numeric', 'dt_boolean', 'dt_date', 'dt_datetime', 'dt_duration', 'dt_time', 'dt_x'),
        fc.array(fc.tuple(value, value), { maxLength: 3 }),
        fc.constantFrom('boiler/t', 'a b', ''),
      )
      .map(
        ([type, datas, name]) =>
          `<Sen1Message xmlns="http://xmpp.rocks"><username>u</username><name>${name}</name><type>${type}</type><Sen1Datas>` +
          datas.map(([v, t]) => `<Sen1Data><value>${v.replace(/[<&]/g, '')}</value><timestamp>${t.replace(/[<&]/g, '')}</timestamp></Sen1Data>`).join('') +
          '</Sen1Datas></Sen1Message>',
      );
    fc.assert(
      fc.property(fc.oneof(doc, fc.string({ maxLength: 40 })), (text) => onlyCodecErrors(() => decodeSen1(text))),
      { numRuns: 2000 },
    );
  });

  it('cloud logger messages', () => {
    const field = fc.oneof(
      fc.constantFrom<unknown>('2022-10-11T16:21:27+00:00', 24.6, '°C', 'temperature', 'd1', 5368, '5368', Infinity, null, true, [], {}, '', 'x y'),
      fc.jsonValue({ maxDepth: 1 }),
    );
    const data = fc.dictionary(
      fc.constantFrom(
        'timeStamp',
        'value',
        'unit',
        'unitType',
        'deviceId',
        'sensorId',
        'latitude',
        'longitude',
        'accuracy',
        'typeName',
        'newState',
        'previousState',
        'deviationType',
        'reason',
        'historyType',
        'limitzone',
        'DEVICEID',
      ),
      field,
    );
    const message = fc.record({
      type: fc.constantFrom('eapi_measurement_new', 'eapi_geodata_new', 'eapi_occurrence_new', 'eapi_deviation_enter', 'eapi_deviation_leave', 'x'),
      data,
    });
    fc.assert(
      fc.property(
        fc.oneof(
          message,
          message.map((m) => JSON.stringify(m)),
          fc.jsonValue({ maxDepth: 2 }),
          fc.string({ maxLength: 30 }),
        ),
        (input) => onlyCodecErrors(() => decodeEapi(input)),
      ),
      { numRuns: 3000 },
    );
  });

  it('device payloads: JSON objects of attribute values', () => {
    fc.assert(
      fc.property(fc.oneof(fc.json(), fc.string({ maxLength: 30 })), (text) => onlyCodecErrors(() => decodeDevicePayload('attributes', text, 'SN-1', now))),
      { numRuns: 2000 },
    );
  });
});

/**
 * Found by `npm run fuzz` (test/fuzz/decoders.fuzz.ts): these decoders returned records past the
 * canonical limits (a name over 1,024 characters, a unit over 256), which a tier then refused far
 * from the input that caused it. Each now refuses the input itself, naming the record and field.
 */
describe('decoders refuse what the canonical model would refuse', () => {
  const long = 'x'.repeat(1100);

  function refused(decode: () => unknown, field: string): void {
    assert.throws(decode, (err: unknown) => err instanceof CodecError && err.field === field && err.index === 0);
  }

  it('Sen1: a unit over 256 characters', () => {
    const doc = `<Sen1Message xmlns="http://xmpp.rocks"><username>u</username><name>n</name><unite>${'C'.repeat(300)}</unite><type>dt_numeric</type><Sen1Datas><Sen1Data><value>1</value><timestamp>2023-05-01 10:20:30</timestamp></Sen1Data></Sen1Datas></Sen1Message>`;
    refused(() => decodeSen1(doc), 'u');
  });

  it('UltraLight: a command name that makes the record name too long', () => {
    refused(() => ulToRecords(`SN-1@${long}|ok`, { now }), 'n');
  });

  it('eapi: an occurrence type name that makes the record name too long', () => {
    const msg = {
      type: 'eapi_occurrence_new',
      data: { timeStamp: '2022-10-11T15:21:24+00:00', typeName: long, newState: 'LogDelayed', deviceId: '951FF00000340', sensorId: '5369' },
    };
    refused(() => decodeEapi(msg), 'n');
  });
});
