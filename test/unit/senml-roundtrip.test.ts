/**
 * Property tests: any resolved pack survives encoding and decoding in each SenML format, and
 * passing a pack from one format to the next changes nothing.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { MAX_TIME, type ResolvedRecord } from '../../nodes/core/model/senml';
import { decodeSenmlJson, encodeSenmlJson } from '../../nodes/core/codecs/senml-json';
import { decodeSenmlXml, encodeSenmlXml } from '../../nodes/core/codecs/senml-xml';
import { decodeSenmlCbor, encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';

const now = 1.7e9;
const runs = { numRuns: 300 };

// Characters XML 1.0 cannot carry in any form; text is drawn without them so XML can take part.
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

/** Text mixing arbitrary Unicode with what trips up encoders: markup, entities, edge whitespace. */
const text = fc
  .array(
    fc.oneof(
      fc.string({ unit: 'binary', maxLength: 6 }),
      fc.constantFrom('&', '<', '>', '"', "'", '&amp;', '&lt;', '&#10;', '&nbsp;', ']]>', ' ', '\t', '\n', '\r\n', '\u00a0', '\u2028', '\\', '\u{1F600}'),
    ),
    { maxLength: 6 },
  )
  .map((parts) => parts.join('').replace(NOT_XML, ''));

const name = fc.stringMatching(/^[A-Za-z0-9][-:./A-Za-z0-9_]{0,24}$/);
// -0 is left out: JSON and CBOR integers have no negative zero, so it reads back as 0.
const double = fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (x === 0 ? 0 : x));
const time = fc.oneof(
  fc.double({ min: 2 ** 28, max: 4e9, noNaN: true }),
  fc.integer({ min: 2 ** 28, max: 2 ** 33 }),
  fc.double({ min: 2 ** 28, max: MAX_TIME, maxExcluded: true, noNaN: true }),
);
const base64url = fc.uint8Array({ maxLength: 24 }).map((b) => Buffer.from(b).toString('base64url'));

const value = fc.oneof(
  double.map((v) => ({ v })),
  text.map((vs) => ({ vs })),
  fc.boolean().map((vb) => ({ vb })),
  base64url.map((vd) => ({ vd })),
  fc.constant({}), // a record may hold only a sum
);

const record = fc
  .record({
    n: name,
    t: time,
    value,
    u: fc.option(text, { nil: undefined }),
    s: fc.option(double, { nil: undefined }),
    ut: fc.option(double, { nil: undefined }),
  })
  .map(({ n, t, value, u, s, ut }) => {
    const r: ResolvedRecord = { n, t, ...value };
    if (u !== undefined) r.u = u;
    if (s !== undefined || Object.keys(value).length === 0) r.s = s ?? 0;
    if (ut !== undefined) r.ut = ut;
    return r;
  });

/** A resolved pack: chronological (resolve orders by time), bver in every record or in none. */
const pack = fc
  .tuple(fc.array(record, { minLength: 1, maxLength: 8 }), fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }))
  .map(([records, bver]) => {
    records.sort((a, b) => a.t - b.t);
    if (bver !== undefined) for (const r of records) r.bver = bver;
    return records;
  });

const codecs = {
  json: (records: ResolvedRecord[]) => decodeSenmlJson(encodeSenmlJson(records), { now }),
  xml: (records: ResolvedRecord[]) => decodeSenmlXml(encodeSenmlXml(records), { now }),
  cbor: (records: ResolvedRecord[]) => decodeSenmlCbor(encodeSenmlCbor(records), { now }),
};

describe('SenML codecs: round trips (property tests)', () => {
  for (const [format, roundTrip] of Object.entries(codecs)) {
    it(`decode(encode(x)) deep-equals x in ${format}`, () => {
      fc.assert(
        fc.property(pack, (records) => assert.deepStrictEqual(roundTrip(records), records)),
        runs,
      );
    });
  }

  it('CBOR then JSON then XML gives the same records', () => {
    fc.assert(
      fc.property(pack, (records) => {
        const viaCbor = codecs.cbor(records);
        const viaJson = codecs.json(viaCbor);
        const viaXml = codecs.xml(viaJson);
        assert.deepStrictEqual(viaXml, records);
      }),
      runs,
    );
  });

  it('the same records give the same bytes whichever format they came through', () => {
    fc.assert(
      fc.property(pack, (records) => {
        const json = encodeSenmlJson(records);
        assert.equal(encodeSenmlJson(codecs.xml(codecs.cbor(records))), json);
        assert.equal(encodeSenmlXml(codecs.json(records)), encodeSenmlXml(records));
        assert.deepStrictEqual(encodeSenmlCbor(codecs.xml(records)), encodeSenmlCbor(records));
      }),
      runs,
    );
  });
});
