/** Sen1Message (seed 003): the seed's format, every dt_* type, and round trips. */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { CodecError } from '../../nodes/core/errors';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import {
  decodeSen1,
  encodeSen1,
  formatSen1,
  parseSen1,
  recordsToSen1,
  sen1ToRecords,
  SEN1_TYPES,
  type Sen1Message,
  type Sen1Type,
} from '../../nodes/core/codecs/sen1';

const NS = 'http://xmpp.rocks';

/** The seed's template, filled in, with the `</timespatamp>` typo read as `<timestamp>`. */
function seedDoc(type: string, values: string[], extra = ''): string {
  const datas = values.map((v, i) => `<Sen1Data>\n<value>${v}</value>\n<timestamp>2023-05-0${i + 1} 10:20:30</timestamp>\n</Sen1Data>`).join('\n');
  return `<Sen1Message xmlns="${NS}">
<username>jdupont</username>
<name>station12</name>
<metaname>temperature</metaname>
<metavalue>Température de l'air</metavalue>
<unite>Cel</unite>
<type>${type}</type>
<applicationSrc>meteo</applicationSrc>
<applicationDst>agri</applicationDst>${extra}
<Sen1Datas>
${datas}
</Sen1Datas>
</Sen1Message>`;
}

const t0 = Date.UTC(2023, 4, 1, 10, 20, 30) / 1000;
const day = 86400;

describe('sen1: the seed format', () => {
  it('decodes the seed template with its meta data', () => {
    const { records, meta } = decodeSen1(seedDoc('dt_numeric', ['21.5', '-3']));
    assert.deepEqual(records, [
      { n: 'station12/temperature', t: t0, u: 'Cel', v: 21.5 },
      { n: 'station12/temperature', t: t0 + day, u: 'Cel', v: -3 },
    ]);
    assert.deepEqual(meta, {
      username: 'jdupont',
      name: 'station12',
      metaname: 'temperature',
      metavalue: "Température de l'air",
      unite: 'Cel',
      type: 'dt_numeric',
      applicationSrc: 'meteo',
      applicationDst: 'agri',
    });
  });

  it('reads bytes and an XML declaration, and empty optional elements as absent', () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?><Sen1Message xmlns="${NS}"><username>u</username><name>n</name><metaname></metaname><metavalue/><unite></unite><type>dt_string</type><applicationSrc></applicationSrc><applicationDst></applicationDst><Sen1Datas><Sen1Data><value>ok</value><timestamp>2023-05-01 10:20:30</timestamp></Sen1Data></Sen1Datas></Sen1Message>`;
    const msg = parseSen1(Buffer.from(xml));
    assert.deepEqual(msg, { username: 'u', name: 'n', type: 'dt_string', datas: [{ value: 'ok', timestamp: '2023-05-01 10:20:30' }] });
    assert.deepEqual(sen1ToRecords(msg), [{ n: 'n', t: t0, vs: 'ok' }]);
  });

  it('refuses the seed template verbatim: its </timespatamp></timestamp> is not XML', () => {
    const verbatim = `<Sen1Message xmlns="${NS}"><username>u</username><name>n</name><metaname></metaname><metavalue></metavalue><unite></unite><type>dt_string</type><applicationSrc></applicationSrc><applicationDst></applicationDst><Sen1Datas><Sen1Data><value>x</value></timespatamp></timestamp></Sen1Data></Sen1Datas></Sen1Message>`;
    assert.throws(() => decodeSen1(verbatim), CodecError);
  });

  it('decodes entities and character references in text', () => {
    const msg = parseSen1(seedDoc('dt_string', ['a &amp; b &lt;c&gt; &#233;']));
    assert.equal(msg.datas[0].value, 'a & b <c> é');
  });
});

describe('sen1: every type', () => {
  const cases: Array<{ type: Sen1Type; good: Array<[string, Partial<ResolvedRecord>]>; bad: string[] }> = [
    {
      type: 'dt_string',
      good: [
        ['bonjour', { vs: 'bonjour' }],
        ['', { vs: '' }],
        ['42', { vs: '42' }],
      ],
      bad: [],
    },
    {
      type: 'dt_integer',
      good: [
        ['42', { v: 42 }],
        ['-7', { v: -7 }],
        ['+3', { v: 3 }],
        ['007', { v: 7 }],
      ],
      bad: ['4.2', '1e3', 'abc', '', '12345678901234567890', '0x10'],
    },
    {
      type: 'dt_numeric',
      good: [
        ['3.14', { v: 3.14 }],
        ['-0.5', { v: -0.5 }],
        ['1e3', { v: 1000 }],
        ['.5', { v: 0.5 }],
        ['10', { v: 10 }],
      ],
      bad: ['3,14', 'NaN', 'Infinity', '1e999', '', 'abc', '1.2.3'],
    },
    { type: 'dt_date', good: [['2024-02-29', { vs: '2024-02-29' }]], bad: ['2023-02-29', '2023-13-01', '2023-1-01', '01/02/2023', '2023-05-01 10:00:00', ''] },
    {
      type: 'dt_datetime',
      good: [['2023-05-01 23:59:59', { vs: '2023-05-01 23:59:59' }]],
      bad: ['2023-05-01T10:00:00', '2023-05-01 24:00:00', '2023-05-01 10:60:00', '2023-05-01', ''],
    },
    {
      type: 'dt_duration',
      good: [
        ['P1DT2H', { vs: 'P1DT2H' }],
        ['PT30M', { vs: 'PT30M' }],
        ['P1Y2M3W4DT5H6M7.5S', { vs: 'P1Y2M3W4DT5H6M7.5S' }],
        ['P2W', { vs: 'P2W' }],
      ],
      bad: ['P', 'PT', '1DT2H', 'P1H', 'PT1D', 'P-1D', ''],
    },
    {
      type: 'dt_time',
      good: [
        ['00:00:00', { vs: '00:00:00' }],
        ['23:59:59', { vs: '23:59:59' }],
      ],
      bad: ['24:00:00', '12:60:00', '12:00', '1:02:03', ''],
    },
    {
      type: 'dt_boolean',
      good: [
        ['true', { vb: true }],
        ['false', { vb: false }],
      ],
      bad: ['TRUE', '1', 'yes', 'vrai', ''],
    },
  ];

  for (const { type, good, bad } of cases) {
    it(`${type}: decodes valid values and refuses ${bad.length} invalid ones`, () => {
      const { records } = decodeSen1(
        seedDoc(
          type,
          good.map(([text]) => text),
        ),
      );
      assert.equal(records.length, good.length);
      good.forEach(([, expected], i) => assert.deepEqual(records[i], { n: 'station12/temperature', t: t0 + i * day, u: 'Cel', ...expected }));
      for (const text of bad) {
        assert.throws(
          () => decodeSen1(seedDoc(type, [text])),
          (err: unknown) => {
            assert.ok(err instanceof CodecError, String(err));
            assert.equal(err.field, 'value');
            return true;
          },
          `${type} accepted ${JSON.stringify(text)}`,
        );
      }
    });
  }

  it('names the datum index of a bad value', () => {
    assert.throws(
      () => decodeSen1(seedDoc('dt_integer', ['1', '2', 'x'])),
      (err: CodecError) => err.index === 2 && err.field === 'value',
    );
  });

  it('refuses a name outside the SenML name rule, naming the field', () => {
    const xml = seedDoc('dt_string', ['x']).replace('<name>station12</name>', '<name>station 12</name>');
    assert.throws(
      () => decodeSen1(xml),
      (err: CodecError) => err instanceof CodecError && err.field === 'name',
    );
  });
});

describe('sen1: encoding', () => {
  const records: ResolvedRecord[] = [
    { n: 'station12/temperature', t: t0, u: 'Cel', v: 21.5 },
    { n: 'station12/on', t: t0, vb: true },
    { n: 'station12/temperature', t: t0 + 1.25, u: 'Cel', v: 22 },
    { n: 'station12/label', t: t0, vs: 'a <b> & c' },
  ];

  it('writes one message per name and type, with the meta data', () => {
    const msgs = recordsToSen1(records, { username: 'jdupont', applicationSrc: 'agri', metaname: 'temperature', metavalue: 'Air' });
    assert.equal(msgs.length, 3);
    assert.deepEqual(msgs[0], {
      username: 'jdupont',
      name: 'station12',
      metaname: 'temperature',
      metavalue: 'Air',
      unite: 'Cel',
      type: 'dt_numeric',
      applicationSrc: 'agri',
      datas: [
        { value: '21.5', timestamp: '2023-05-01 10:20:30' },
        { value: '22', timestamp: '2023-05-01 10:20:31.250' },
      ],
    });
    assert.equal(msgs[1].type, 'dt_boolean');
    assert.equal(msgs[1].name, 'station12/on');
    assert.equal(msgs[2].type, 'dt_string');
  });

  it('encodes to documents that decode back to the records', () => {
    const docs = encodeSen1(records, { username: 'jdupont' });
    assert.equal(docs.length, 3);
    const back = docs.flatMap((d) => decodeSen1(d).records);
    const sortKey = (r: ResolvedRecord): string => `${r.n} ${r.t}`;
    assert.deepEqual(
      [...back].sort((a, b) => sortKey(a).localeCompare(sortKey(b))),
      [...records].sort((a, b) => sortKey(a).localeCompare(sortKey(b))),
    );
  });

  it('uses dt_integer and text types from meta, and checks values against them', () => {
    assert.equal(recordsToSen1([{ n: 'a', t: t0, v: 3 }], { username: 'u', type: 'dt_integer' })[0].type, 'dt_integer');
    assert.throws(
      () => recordsToSen1([{ n: 'a', t: t0, v: 3.5 }], { username: 'u', type: 'dt_integer' }),
      (e: CodecError) => e.index === 0 && e.field === 'v',
    );
    assert.equal(recordsToSen1([{ n: 'a', t: t0, vs: 'P1D' }], { username: 'u', type: 'dt_duration' })[0].type, 'dt_duration');
    assert.throws(
      () => recordsToSen1([{ n: 'a', t: t0, vs: 'soon' }], { username: 'u', type: 'dt_duration' }),
      (e: CodecError) => e.index === 0 && e.field === 'vs',
    );
  });

  it('refuses what Sen1 cannot carry', () => {
    assert.throws(() => recordsToSen1([{ n: 'a', t: t0, vd: 'AAEC' }], { username: 'u' }), CodecError);
    assert.throws(() => recordsToSen1([{ n: 'a', t: t0, v: 1 }], { username: '' }), CodecError);
    assert.throws(
      () => formatSen1({ username: 'u', name: 'n', type: 'dt_string', datas: [{ value: 'bell\u0007', timestamp: '2023-05-01 10:20:30' }] }),
      CodecError,
    );
    assert.throws(() => formatSen1({ username: 'u', name: 'n', type: 'dt_string', datas: [] }), CodecError);
  });
});

// ---- properties -------------------------------------------------------------------------------

const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF\r]/g;
/** Text as Sen1 can carry it: anything XML can hold, without surrounding whitespace (values are trimmed). */
const text = fc
  .array(fc.oneof(fc.string({ unit: 'binary', maxLength: 5 }), fc.constantFrom('&', '<', '>', '"', "'", '&amp;', '&#65;', ']]>', ' ', 'é', '\u{1F600}')), {
    maxLength: 5,
  })
  .map((parts) => parts.join('').replace(NOT_XML, '').trim());
const nonEmpty = text.filter((s) => s !== '');
const name = fc.stringMatching(/^[A-Za-z0-9][-:./A-Za-z0-9_]{0,20}$/);
const metaname = fc.stringMatching(/^[-:.A-Za-z0-9_]{1,12}$/);
const tMs = fc.integer({ min: 2 ** 28 * 1000, max: Date.UTC(2200, 0, 1) });
const time = tMs.map((ms) => ms / 1000);
const finite = fc.double({ noNaN: true, noDefaultInfinity: true });

function valueFor(type: Sen1Type): fc.Arbitrary<string> {
  switch (type) {
    case 'dt_string':
      return text;
    case 'dt_integer':
      return fc.integer({ min: -(2 ** 40), max: 2 ** 40 }).map(String);
    case 'dt_numeric':
      return finite.map((v) => (Object.is(v, -0) ? '-0' : String(v)));
    case 'dt_boolean':
      return fc.boolean().map(String);
    case 'dt_date':
      return fc.date({ min: new Date('0001-01-01'), max: new Date('9999-12-31'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10));
    case 'dt_datetime':
      return tMs.map((ms) => new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19).replace('T', ' '));
    case 'dt_time':
      return fc
        .tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 59 }))
        .map((p) => p.map((n) => String(n).padStart(2, '0')).join(':'));
    case 'dt_duration':
      return fc.tuple(fc.nat(99), fc.nat(23)).map(([d, h]) => `P${d}DT${h}H`);
  }
}

const message: fc.Arbitrary<Sen1Message> = fc.constantFrom(...SEN1_TYPES).chain((type) =>
  fc.record(
    {
      username: nonEmpty,
      name: nonEmpty,
      metaname: nonEmpty,
      metavalue: nonEmpty,
      unite: nonEmpty,
      type: fc.constant(type),
      applicationSrc: nonEmpty,
      applicationDst: nonEmpty,
      datas: fc.array(fc.record({ value: valueFor(type), timestamp: valueFor('dt_datetime') }, { noNullPrototype: true }), { minLength: 1, maxLength: 5 }),
    },
    { requiredKeys: ['username', 'name', 'type', 'datas'], noNullPrototype: true },
  ),
);

describe('sen1: properties', () => {
  it('parseSen1(formatSen1(m)) equals m for any valid message', () => {
    fc.assert(
      fc.property(message, (m) => assert.deepEqual(parseSen1(formatSen1(m)), m)),
      { numRuns: 400 },
    );
  });

  it('records of one name and kind survive encoding and decoding', () => {
    const value = fc.oneof(
      finite.map((v) => ({ v })),
      fc.boolean().map((vb) => ({ vb })),
      text.map((vs) => ({ vs })),
    );
    const pack = fc
      .tuple(
        name,
        fc.option(metaname, { nil: undefined }),
        fc.option(nonEmpty, { nil: undefined }),
        value,
        fc.array(fc.tuple(time, value), { minLength: 0, maxLength: 4 }),
      )
      .map(([n, meta, u, first, rest]) => {
        const kind = Object.keys(first)[0];
        const full = meta === undefined ? n : `${n}/${meta}`;
        const values = [first, ...rest.map(([, v]) => v).filter((v) => Object.keys(v)[0] === kind)];
        return { meta, records: values.map((v, i): ResolvedRecord => ({ n: full, t: rest[i]?.[0] ?? 1.7e9, ...(u === undefined ? {} : { u }), ...v })) };
      });
    fc.assert(
      fc.property(pack, ({ meta, records }) => {
        const docs = encodeSen1(records, { username: 'u', metaname: meta });
        assert.equal(docs.length, 1);
        const back = decodeSen1(docs[0]);
        assert.deepEqual(back.records, records);
        assert.equal(back.meta.metaname, meta);
      }),
      { numRuns: 400 },
    );
  });
});
