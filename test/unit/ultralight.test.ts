/** UltraLight 2.0: FIWARE's documented examples, its parser's corner cases, our escaping, round trips. */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { CodecError } from '../../nodes/core/errors';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import {
  formatUlCommand,
  formatUlCommandResult,
  formatUltralight,
  parseUlCommand,
  parseUlCommandResult,
  parseUltralight,
  recordsToUl,
  ulToRecords,
  type UlCommand,
  type UlGroup,
  type UlMap,
  type UlMeasureGroup,
} from '../../nodes/core/codecs/ultralight';

const now = 1.7e9;
const measures = (pairs: Array<[string, string]>, timestamp?: string): UlMeasureGroup => ({
  kind: 'measures',
  ...(timestamp === undefined ? {} : { timestamp }),
  measures: pairs.map(([key, value]) => ({ key, value })),
});

describe('ultralight: FIWARE usermanual examples', () => {
  it('t|15|k|abc', () => {
    assert.deepEqual(parseUltralight('t|15|k|abc'), [
      measures([
        ['t', '15'],
        ['k', 'abc'],
      ]),
    ]);
    assert.deepEqual(ulToRecords('t|15|k|abc', { deviceId: 'dev1', now }), [
      { n: 'dev1/t', t: now, v: 15 },
      { n: 'dev1/k', t: now, vs: 'abc' },
    ]);
  });

  it('gps|1.2/3.4#t|10: two groups', () => {
    assert.deepEqual(parseUltralight('gps|1.2/3.4#t|10'), [measures([['gps', '1.2/3.4']]), measures([['t', '10']])]);
  });

  it('2016-06-13T00:35:30Z|lle|100: a group timestamp', () => {
    assert.deepEqual(parseUltralight('2016-06-13T00:35:30Z|lle|100'), [measures([['lle', '100']], '2016-06-13T00:35:30Z')]);
    assert.deepEqual(ulToRecords('2016-06-13T00:35:30Z|lle|100', { deviceId: 'dev1', now }), [
      { n: 'dev1/lle', t: Date.UTC(2016, 5, 13, 0, 35, 30) / 1000, v: 100 },
    ]);
  });

  it('h|70|t|15 (MQTT) with a map to full names', () => {
    const map: UlMap = { h: 'humidity', t: { name: 'temperature', type: 'Number' } };
    assert.deepEqual(ulToRecords('h|70|t|15', { deviceId: 'id_sen1', map, now }), [
      { n: 'id_sen1/humidity', t: now, v: 70 },
      { n: 'id_sen1/temperature', t: now, v: 15 },
    ]);
  });

  it('t|10|s|true|l|78.8 with Number and Boolean types (autocast)', () => {
    const map: UlMap = { t: { name: 'temperature', type: 'Number' }, s: { name: 'status', type: 'Boolean' }, l: { name: 'level', type: 'Number' } };
    assert.deepEqual(ulToRecords('t|10|s|true|l|78.8', { deviceId: 'd', map, now }), [
      { n: 'd/temperature', t: now, v: 10 },
      { n: 'd/status', t: now, vb: true },
      { n: 'd/level', t: now, v: 78.8 },
    ]);
  });

  it('a Text type keeps numeric-looking text as text; untyped true stays text', () => {
    assert.deepEqual(ulToRecords('c|0012|s|true', { deviceId: 'd', map: { c: { name: 'code', type: 'Text' } }, now }), [
      { n: 'd/code', t: now, vs: '0012' },
      { n: 'd/s', t: now, vs: 'true' },
    ]);
  });

  it('commands: weatherStation167@ping|param1=1|param2=2, Robot1@turn|left, id_sen1@ping|22', () => {
    assert.deepEqual(parseUlCommand('weatherStation167@ping|param1=1|param2=2'), {
      deviceId: 'weatherStation167',
      command: 'ping',
      params: { param1: '1', param2: '2' },
    });
    assert.deepEqual(parseUlCommand('Robot1@turn|left'), { deviceId: 'Robot1', command: 'turn', value: 'left' });
    assert.deepEqual(parseUlCommand('id_sen1@ping|22'), { deviceId: 'id_sen1', command: 'ping', value: '22' });
    assert.equal(
      formatUlCommand({ deviceId: 'weatherStation167', command: 'ping', params: { param1: '1', param2: '2' } }),
      'weatherStation167@ping|param1=1|param2=2',
    );
    assert.equal(formatUlCommand({ deviceId: 'Robot1', command: 'turn', value: 'left' }), 'Robot1@turn|left');
  });

  it('configuration values: device_1@configuration|pollingInterval=200|publishInterval=80|dt=20190626T154200Z', () => {
    assert.deepEqual(parseUlCommand('device_1@configuration|pollingInterval=200|publishInterval=80|dt=20190626T154200Z'), {
      deviceId: 'device_1',
      command: 'configuration',
      params: { pollingInterval: '200', publishInterval: '80', dt: '20190626T154200Z' },
    });
  });

  it('command results: weatherStation167@ping|Ping ok, id_sen1@ping|1234567890', () => {
    assert.deepEqual(parseUlCommandResult('weatherStation167@ping|Ping ok'), { deviceId: 'weatherStation167', command: 'ping', result: 'Ping ok' });
    assert.deepEqual(parseUlCommandResult('id_sen1@ping|1234567890'), { deviceId: 'id_sen1', command: 'ping', result: '1234567890' });
    assert.equal(formatUlCommandResult({ deviceId: 'weatherStation167', command: 'ping', result: 'Ping ok' }), 'weatherStation167@ping|Ping ok');
  });
});

describe('ultralight: as lib/ulParser.js reads it', () => {
  it('drops one leading | of a group', () => {
    assert.deepEqual(parseUltralight('|t|1#|k|2'), [measures([['t', '1']]), measures([['k', '2']])]);
  });

  it('keeps the first place and the last value of a repeated key', () => {
    assert.deepEqual(parseUltralight('a|1|b|2|a|3'), [
      measures([
        ['a', '3'],
        ['b', '2'],
      ]),
    ]);
  });

  it('reads a group with an @ after its start as a command (polling results), becoming <command>_info', () => {
    assert.deepEqual(parseUltralight('t|1#dev1@ping|Ping ok'), [
      measures([['t', '1']]),
      { kind: 'command', command: { deviceId: 'dev1', command: 'ping', value: 'Ping ok' } },
    ]);
    assert.deepEqual(ulToRecords('dev1@ping|Ping ok', { deviceId: 'dev1', now }), [{ n: 'dev1/ping_info', t: now, vs: 'Ping ok' }]);
  });

  it('a value with = or / is plain text; a command with no data has no params', () => {
    assert.deepEqual(parseUltralight('q|a=b/c'), [measures([['q', 'a=b/c']])]);
    assert.deepEqual(parseUlCommand('dev@reset'), { deviceId: 'dev', command: 'reset', params: {} });
    assert.equal(formatUlCommand({ deviceId: 'dev', command: 'reset', params: {} }), 'dev@reset');
  });

  it('a command value may hold # (FIWARE splits commands on # only in measure payloads)', () => {
    assert.deepEqual(parseUlCommand('dev@say|#1'), { deviceId: 'dev', command: 'say', value: '#1' });
  });

  it('refuses, with a CodecError, what FIWARE refuses', () => {
    for (const bad of ['', 't', 't|', '|', 't|1|', 't||k|2', 't|1#', '#t|1', 't|1##k|2', 't|1|k']) {
      assert.throws(() => ulToRecords(bad, { deviceId: 'd', now }), CodecError, JSON.stringify(bad));
    }
  });
});

// FIWARE's own cases (telefonicaid/iotagent-ul test/unit/ngsiv2: the timestampedDevice provisioned
// with tt -> TimeInstant (DateTime) and tmp -> temperature (float), and its polling command results).
describe("ultralight: as FIWARE's agent tests expect", () => {
  const provisioned: UlMap = { tt: { name: 'TimeInstant', type: 'DateTime' }, tmp: { name: 'temperature', type: 'float' } };
  const instant = Date.UTC(2020, 5, 14, 12, 19, 26, 477) / 1000;

  it('tmp|24.4|humidity|32|tt|2020-06-14T12:19:26.476659Z: TimeInstant is the time of the measures, not a reading', () => {
    const records = ulToRecords('tmp|24.4|humidity|32|tt|2020-06-14T12:19:26.476659Z', { deviceId: 'timestampedDevice', map: provisioned, now });
    assert.deepEqual(records, [
      { n: 'timestampedDevice/temperature', t: instant, v: 24.4 },
      { n: 'timestampedDevice/humidity', t: instant, v: 32 },
    ]);
  });

  it('an unmapped key named TimeInstant sets the time too; it applies to its own group only', () => {
    assert.deepEqual(ulToRecords('TimeInstant|2020-06-14T12:19:26Z|t|1#t|2', { deviceId: 'd', now }), [
      { n: 'd/t', t: Date.UTC(2020, 5, 14, 12, 19, 26) / 1000, v: 1 },
      { n: 'd/t', t: now, v: 2 },
    ]);
  });

  it('refuses a TimeInstant that is no time, one beside a leading timestamp, or one with nothing to time', () => {
    assert.throws(
      () => ulToRecords('tmp|1|tt|yesterday', { deviceId: 'd', map: provisioned, now }),
      (e: CodecError) => e.field === 'tt' && /ISO 8601/.test(e.reason),
    );
    assert.throws(
      () => ulToRecords('2016-06-13T00:35:30Z|tmp|1|tt|2020-06-14T12:19:26Z', { deviceId: 'd', map: provisioned, now }),
      (e: CodecError) => e.field === 'tt' && /timestamp and a TimeInstant/.test(e.reason),
    );
    assert.throws(
      () => ulToRecords('tt|2020-06-14T12:19:26Z', { deviceId: 'd', map: provisioned, now }),
      (e: CodecError) => e.index === 0 && /no reading/.test(e.reason),
    );
  });

  it('decodes a command result without a device id: it names its device', () => {
    assert.deepEqual(ulToRecords('weatherStation167@ping|Ping ok', { now }), [{ n: 'weatherStation167/ping_info', t: now, vs: 'Ping ok' }]);
    assert.deepEqual(ulToRecords('MQTT_2@PING|1234567890', { deviceId: '', now }), [{ n: 'MQTT_2/PING_info', t: now, vs: '1234567890' }]);
  });

  it('refuses measures without a device id, naming the group', () => {
    assert.throws(
      () => ulToRecords('t|1', { now }),
      (e: CodecError) => e.field === 'deviceId' && /no device id/.test(e.reason),
    );
    assert.throws(
      () => ulToRecords('dev1@ping|ok#t|1', { now }),
      (e: CodecError) => e.field === 'deviceId' && e.index === 1,
    );
  });
});

describe('ultralight: escaping', () => {
  it('reads \\| \\# \\@ \\= \\\\ as literal characters', () => {
    assert.deepEqual(parseUltralight('msg|a\\|b\\#c\\@d\\=e\\\\f'), [measures([['msg', 'a|b#c@d=e\\f']])]);
    assert.deepEqual(parseUlCommand('dev@set|k\\=1=v\\|2'), { deviceId: 'dev', command: 'set', params: { 'k=1': 'v|2' } });
    assert.deepEqual(parseUlCommandResult('dev@cmd|ok\\|done'), { deviceId: 'dev', command: 'cmd', result: 'ok|done' });
  });

  it('writes escapes only where needed, so plain values stay FIWARE text', () => {
    assert.equal(
      formatUltralight([
        measures([
          ['t', '15'],
          ['k', 'abc'],
          ['q', 'a=b'],
        ]),
      ]),
      't|15|k|abc|q|a=b',
    );
    assert.equal(formatUltralight([measures([['m', 'x|y#z@w\\v']])]), 'm|x\\|y\\#z\\@w\\\\v');
    assert.equal(formatUlCommand({ deviceId: 'd', command: 'c', params: { 'a=b': 'x|y' } }), 'd@c|a\\=b=x\\|y');
    assert.equal(formatUlCommand({ deviceId: 'd', command: 'c', value: 'k=v' }), 'd@c|k\\=v');
  });

  it('refuses an unknown or dangling escape', () => {
    assert.throws(() => parseUltralight('path|C:\\temp'), CodecError);
    assert.throws(() => parseUltralight('k|v\\'), CodecError);
  });
});

describe('ultralight: records', () => {
  const map: UlMap = { t: { name: 'temperature', type: 'Number' }, s: { name: 'room1/on', type: 'Boolean' }, l: 'label' };
  const records: ResolvedRecord[] = [
    { n: 'dev1/temperature', t: 1465778130, v: 21.5 },
    { n: 'dev1/room1/on', t: 1465778130, vb: false },
    { n: 'dev1/label', t: 1465778131.5, vs: 'a|b' },
  ];

  it('writes one timestamped group per time, with short keys', () => {
    assert.equal(recordsToUl(records, { deviceId: 'dev1', map }), '2016-06-13T00:35:30Z|t|21.5|s|false#2016-06-13T00:35:31.500Z|l|a\\|b');
    assert.deepEqual(ulToRecords(recordsToUl(records, { deviceId: 'dev1', map }), { deviceId: 'dev1', map, now }), records);
  });

  it('refuses records it cannot write, naming the record', () => {
    assert.throws(
      () => recordsToUl([{ n: 'other/t', t: now, v: 1 }], { deviceId: 'dev1' }),
      (e: CodecError) => e.index === 0 && e.field === 'n',
    );
    assert.throws(
      () => recordsToUl([{ n: 'dev1/x', t: now, vs: '' }], { deviceId: 'dev1' }),
      (e: CodecError) => e.index === 0,
    );
    assert.throws(
      () => recordsToUl([{ n: 'dev1/x', t: now, vd: 'AA' }], { deviceId: 'dev1' }),
      (e: CodecError) => e.field === 'vd',
    );
    assert.throws(() => recordsToUl([{ n: 'dev1/temperature', t: now, vs: 'hot' }], { deviceId: 'dev1', map }), CodecError);
  });

  it('refuses names outside the SenML rule and bad typed values', () => {
    assert.throws(
      () => ulToRecords('temp C|1', { deviceId: 'd', now }),
      (e: CodecError) => e.field === 'temp C',
    );
    assert.throws(() => ulToRecords('t|1', { deviceId: 'bad id', now }), CodecError);
    assert.throws(
      () => ulToRecords('t|warm', { deviceId: 'd', map, now }),
      (e: CodecError) => e.field === 't',
    );
    assert.throws(
      () => ulToRecords('s|yes', { deviceId: 'd', map, now }),
      (e: CodecError) => e.field === 's',
    );
    assert.throws(
      () => ulToRecords('yesterday|t|1', { deviceId: 'd', now }),
      (e: CodecError) => e.field === 'timestamp',
    );
  });
});

// ---- properties -------------------------------------------------------------------------------

/** Any text a store can hold (no U+0000), heavy on the characters UltraLight gives meaning to. */
const text = fc
  .array(fc.oneof(fc.string({ unit: 'binary', maxLength: 4 }), fc.constantFrom('|', '#', '@', '=', '\\', '\\|', ' ')), { minLength: 1, maxLength: 5 })
  .map((p) => p.join(''))
  .filter((s) => s !== '' && !s.includes('\u0000'));
const group: fc.Arbitrary<UlGroup> = fc.record(
  {
    kind: fc.constant('measures' as const),
    timestamp: text,
    measures: fc.uniqueArray(fc.record({ key: text, value: text }, { noNullPrototype: true }), { minLength: 1, maxLength: 5, selector: (m) => m.key }),
  },
  { requiredKeys: ['kind', 'measures'], noNullPrototype: true },
);
const params = fc
  .uniqueArray(
    fc.tuple(
      text.filter((k) => k !== '__proto__'),
      fc.oneof(text, fc.constant('')),
    ),
    { maxLength: 4, selector: ([k]) => k },
  )
  .map((pairs) => Object.fromEntries(pairs));
const command: fc.Arbitrary<UlCommand> = fc.oneof(
  fc.record({ deviceId: text, command: text, value: fc.oneof(text, fc.constant('')) }, { noNullPrototype: true }),
  fc.record({ deviceId: text, command: text, params }, { noNullPrototype: true }),
);

describe('ultralight: properties', () => {
  it('parseUltralight(formatUltralight(groups)) equals groups', () => {
    fc.assert(
      fc.property(fc.array(group, { minLength: 1, maxLength: 4 }), (groups) => {
        assert.deepEqual(parseUltralight(formatUltralight(groups)), groups);
      }),
      { numRuns: 500 },
    );
  });

  it('commands and command results survive formatting and parsing', () => {
    fc.assert(
      fc.property(command, (cmd) => assert.deepEqual(parseUlCommand(formatUlCommand(cmd)), cmd)),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.record({ deviceId: text, command: text, result: fc.oneof(text, fc.constant('')) }, { noNullPrototype: true }), (res) => {
        assert.deepEqual(parseUlCommandResult(formatUlCommandResult(res)), res);
      }),
      { numRuns: 300 },
    );
  });

  it('records of one device survive recordsToUl and ulToRecords with a typed map', () => {
    const map: UlMap = { t: { name: 'temperature', type: 'Number' }, o: { name: 'on', type: 'Boolean' }, l: { name: 'zone/label', type: 'Text' } };
    const value = {
      'dev-1/temperature': fc.double({ noNaN: true, noDefaultInfinity: true }).map((v) => ({ v })),
      'dev-1/on': fc.boolean().map((vb) => ({ vb })),
      'dev-1/zone/label': text.map((vs) => ({ vs })),
    };
    const reading = fc
      .constantFrom(...(Object.keys(value) as Array<keyof typeof value>))
      .chain((n) => fc.tuple(fc.constant(n), value[n], fc.integer({ min: 2 ** 28 * 1000, max: Date.UTC(2200, 0, 1) })));
    const pack = fc
      .uniqueArray(reading, { minLength: 1, maxLength: 8, selector: ([n, , ms]) => `${n}@${ms}` })
      .map((rs) => rs.map(([n, v, ms]): ResolvedRecord => ({ n, t: ms / 1000, ...v })).sort((a, b) => a.t - b.t));
    fc.assert(
      fc.property(pack, (records) => {
        assert.deepEqual(ulToRecords(recordsToUl(records, { deviceId: 'dev-1', map }), { deviceId: 'dev-1', map, now }), records);
      }),
      { numRuns: 400 },
    );
  });
});
