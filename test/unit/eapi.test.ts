/** The cloud logger's AMQP messages (seed 004, section 4): every seed example, names, units, round trips. */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { CodecError } from '../../nodes/core/errors';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { decodeEapi, eapiToRecords, encodeEapi, formatEapi, parseEapi, recordsToEapi, type EapiMessage } from '../../nodes/core/codecs/eapi';

// The seed's examples verbatim, but for the curly quote in “temperature" (a typo).
const SEED = {
  measurement: `{
    "type": "eapi_measurement_new",
    "data": {
        "timeStamp": "2022-10-11T16:21:27+00:00",
        "value": 24.6,
        "unit": "°C",
        "unitType": "temperature",
        "deviceId": "951FF00000340",
        "sensorId": "5368"  
    }
}`,
  geodata: `{
    "type": "eapi_geodata_new",
    "data": {
        "timeStamp": "2022-10-11T15:21:24+00:00",
        "latitude": 47.19999075,
        "longitude": 9.50875282,
        "accuracy": 2316,
        "deviceId": "951FF00000340",
        "sensorId": "5369"
    }
}`,
  occurrence: `{
    "type": "eapi_occurrence_new",
    "data": {
        "timeStamp": "2022-10-11T15:21:24+00:00",
        "typeName": "LoggerStatusChange",
        "previousState": "Start",
        "newState": "LogDelayed",
        "deviceId": "951FF00000340",
        "sensorId": "5369"
    }
}`,
  enter: `{
    "type": "eapi_deviation_enter",
    "data": {
        "deviceId": "951FF00000340",
        "sensorId": 5763,
        "timeStamp": "2022-10-26T17:00:22+00:00",
        "historyType": "enter",
        "deviationType": "limit",
        "reason": "upper_limit_alarm"
    }
}`,
  leave: `{
    "type": "eapi_deviation_leave",
    "data": {
        "deviceId": "951FF00000340",
        "sensorId": 5763,
        "timeStamp": "2022-10-26T18:00:22+00:00",
        "historyType": "leave",
        "deviationType": "limit",
        "reason": "upper_limit_alarm"
    }
}`,
};

const at = (iso: string): number => Date.parse(iso) / 1000;

describe('eapi: the seed examples', () => {
  it('eapi_measurement_new', () => {
    assert.deepEqual(parseEapi(SEED.measurement), {
      type: 'eapi_measurement_new',
      data: { deviceId: '951FF00000340', sensorId: 5368, timeStamp: at('2022-10-11T16:21:27Z'), value: 24.6, unit: '°C', unitType: 'temperature' },
    });
    assert.deepEqual(decodeEapi(SEED.measurement), [{ n: '951FF00000340/5368/temperature', t: at('2022-10-11T16:21:27Z'), u: 'Cel', v: 24.6 }]);
  });

  it('eapi_geodata_new', () => {
    const t = at('2022-10-11T15:21:24Z');
    assert.deepEqual(decodeEapi(SEED.geodata), [
      { n: '951FF00000340/5369/latitude', t, u: 'lat', v: 47.19999075 },
      { n: '951FF00000340/5369/longitude', t, u: 'lon', v: 9.50875282 },
      { n: '951FF00000340/5369/accuracy', t, u: 'm', v: 2316 },
    ]);
  });

  it('eapi_occurrence_new', () => {
    const t = at('2022-10-11T15:21:24Z');
    assert.deepEqual(decodeEapi(SEED.occurrence), [
      { n: '951FF00000340/5369/LoggerStatusChange', t, vs: 'LogDelayed' },
      { n: '951FF00000340/5369/LoggerStatusChange/previous', t, vs: 'Start' },
    ]);
  });

  it('eapi_deviation_enter and eapi_deviation_leave', () => {
    assert.deepEqual(decodeEapi(SEED.enter), [
      { n: '951FF00000340/5763/deviation/limit', t: at('2022-10-26T17:00:22Z'), vb: true },
      { n: '951FF00000340/5763/deviation/limit/reason', t: at('2022-10-26T17:00:22Z'), vs: 'upper_limit_alarm' },
    ]);
    assert.deepEqual(decodeEapi(SEED.leave), [
      { n: '951FF00000340/5763/deviation/limit', t: at('2022-10-26T18:00:22Z'), vb: false },
      { n: '951FF00000340/5763/deviation/limit/reason', t: at('2022-10-26T18:00:22Z'), vs: 'upper_limit_alarm' },
    ]);
  });

  it('refuses the measurement example verbatim: its curly quote is not JSON', () => {
    assert.throws(() => parseEapi(SEED.measurement.replace('"temperature"', '“temperature"')), CodecError);
  });

  it('every example survives records and back to the seed form', () => {
    for (const text of Object.values(SEED)) {
      const msg = parseEapi(text);
      assert.deepEqual(recordsToEapi(eapiToRecords(msg)), [msg]);
      const [out] = encodeEapi(decodeEapi(text));
      const original = JSON.parse(text) as { type: string; data: Record<string, unknown> };
      assert.equal(out.type, original.type);
      assert.deepEqual({ ...out.data, sensorId: String(out.data.sensorId) }, { ...original.data, sensorId: String(original.data.sensorId) });
    }
  });
});

describe('eapi: reading', () => {
  it('property names are case-insensitive, also type and data', () => {
    const msg = parseEapi({
      TYPE: 'eapi_measurement_new',
      Data: { TIMESTAMP: '2022-10-11T16:21:27Z', VALUE: 50, Unit: '%', unittype: 'relative_humidity', DeviceID: 'd1', SensorId: 7 },
    });
    assert.deepEqual(eapiToRecords(msg), [{ n: 'd1/7/relative_humidity', t: at('2022-10-11T16:21:27Z'), u: '%RH', v: 50 }]);
  });

  it('refuses two spellings of one property', () => {
    assert.throws(
      () =>
        parseEapi(
          '{"type":"eapi_geodata_new","data":{"timeStamp":"2022-10-11T15:21:24Z","timestamp":"2022-10-11T15:21:24Z","latitude":1,"longitude":2,"deviceId":"d","sensorId":1}}',
        ),
      CodecError,
    );
  });

  it('maps every unit', () => {
    const unit = (u: string, unitType = 'temperature'): string | undefined =>
      decodeEapi({ type: 'eapi_measurement_new', data: { timeStamp: '2022-10-11T16:21:27Z', value: 1, unit: u, unitType, deviceId: 'd', sensorId: 1 } })[0].u;
    assert.equal(unit('°C'), 'Cel');
    assert.equal(unit('K'), 'K');
    assert.equal(unit('°F'), 'degF');
    assert.equal(unit('%', 'relative_Luftfeuchtigkeit'), '%RH');
    assert.equal(unit('%', 'battery'), '%');
  });

  it('keeps an Int64 sensorId beyond 2^53 as a decimal string, from JSON text too', () => {
    const text =
      '{"type":"eapi_occurrence_new","data":{"timeStamp":"2022-10-11T15:21:24Z","typeName":"LoggerStatusChange","newState":"Start","deviceId":"d","sensorId":9223372036854775807}}';
    const msg = parseEapi(text);
    assert.equal(msg.data.sensorId, '9223372036854775807');
    assert.equal(eapiToRecords(msg)[0].n, 'd/9223372036854775807/LoggerStatusChange');
    assert.deepEqual(recordsToEapi(eapiToRecords(msg)), [msg]);
    assert.equal(parseEapi(text.replace('9223372036854775807', '"9007199254740993"')).data.sensorId, '9007199254740993');
  });

  it('reads offsets, fractions and a missing offset as UTC', () => {
    const t = (ts: string): number =>
      parseEapi({ type: 'eapi_geodata_new', data: { timeStamp: ts, latitude: 1, longitude: 2, deviceId: 'd', sensorId: 1 } }).data.timeStamp;
    assert.equal(t('2022-10-11T18:21:27+02:00'), at('2022-10-11T16:21:27Z'));
    assert.equal(t('2022-10-11T11:21:27-0500'), at('2022-10-11T16:21:27Z'));
    assert.equal(t('2022-10-11T16:21:27.1234567+00:00'), at('2022-10-11T16:21:27.123Z'));
    assert.equal(t('2022-10-11T16:21:27'), at('2022-10-11T16:21:27Z'));
  });

  it('writes the seed time form, and milliseconds when there are some', () => {
    const out = formatEapi({
      type: 'eapi_geodata_new',
      data: { deviceId: 'd', sensorId: 1, timeStamp: at('2022-10-11T16:21:27.5Z'), latitude: 1, longitude: 2 },
    });
    assert.equal((out.data as { timeStamp: string }).timeStamp, '2022-10-11T16:21:27.500+00:00');
  });

  it('keeps a limitzone, and reads eapi_Ereignis_neu (the seed table) as an occurrence', () => {
    const records = decodeEapi({
      type: 'eapi_deviation_enter',
      data: { deviceId: 'd', sensorId: 1, timeStamp: '2022-10-26T17:00:22Z', deviationType: 'limit', reason: 'upper', limitzone: 'H2' },
    });
    assert.deepEqual(records[2], { n: 'd/1/deviation/limit/limitzone', t: at('2022-10-26T17:00:22Z'), vs: 'H2' });
    assert.equal(
      parseEapi({ type: 'eapi_Ereignis_neu', data: { deviceId: 'd', sensorId: 1, timeStamp: '2022-10-26T17:00:22Z', typeName: 'X', newState: 'Y' } }).type,
      'eapi_occurrence_new',
    );
  });

  it('refuses records that are not its own shape, naming the record', () => {
    const t = 1.7e9;
    assert.throws(
      () => recordsToEapi([{ n: 'd/1', t, v: 1, u: 'Cel' }]),
      (e: CodecError) => e.index === 0,
    );
    assert.throws(
      () => recordsToEapi([{ n: 'd/x/temperature', t, v: 1, u: 'Cel' }]),
      (e: CodecError) => e.index === 0,
    );
    assert.throws(
      () => recordsToEapi([{ n: 'd/1/temperature', t, v: 1, u: 'Pa' }]),
      (e: CodecError) => e.index === 0 && e.field === 'u',
    );
    assert.throws(() => recordsToEapi([{ n: 'd/1/latitude', t, v: 1, u: 'lat' }]), CodecError); // no longitude
    assert.throws(() => recordsToEapi([{ n: 'd/1/deviation/limit', t, vb: true }]), CodecError); // no reason
    assert.throws(
      () => recordsToEapi([{ n: 'd/1/deviation/flood', t, vb: true }]),
      (e: CodecError) => e.index === 0,
    );
  });
});

// ---- properties -------------------------------------------------------------------------------

const time = fc.integer({ min: 2 ** 28 * 1000, max: Date.UTC(2200, 0, 1) }).map((ms) => ms / 1000);
const common = fc.record({
  deviceId: fc.stringMatching(/^[A-Za-z0-9][-:.A-Za-z0-9_]{0,15}$/),
  sensorId: fc.oneof(fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }), fc.bigInt({ min: 2n ** 53n, max: 2n ** 63n - 1n }).map(String)),
  timeStamp: time,
});
const part = fc.stringMatching(/^[-:.A-Za-z0-9_]{1,16}$/);
// Any text a store can hold: PostgreSQL text has no U+0000, so no canonical record does.
const state = fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }).filter((x) => !x.includes('\u0000'));
const num = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Object.is(x, -0));
const message: fc.Arbitrary<EapiMessage> = fc.oneof(
  fc
    .tuple(
      common,
      num,
      fc.constantFrom('K', '°C', '°F', '%') as fc.Arbitrary<'K' | '°C' | '°F' | '%'>,
      fc.oneof(part, fc.constantFrom('temperature', 'relative_humidity')),
    )
    .map(([c, value, unit, unitType]): EapiMessage => ({ type: 'eapi_measurement_new', data: { ...c, value, unit, unitType } })),
  fc
    .tuple(
      common,
      fc.double({ min: -90, max: 90, noNaN: true }),
      fc.double({ min: -180, max: 180, noNaN: true }),
      fc.option(fc.double({ min: 0, max: 1e6, noNaN: true }), { nil: undefined }),
    )
    .filter(([, a, b, c]) => !Object.is(a, -0) && !Object.is(b, -0) && !Object.is(c, -0))
    .map(([c, latitude, longitude, accuracy]): EapiMessage => ({
      type: 'eapi_geodata_new',
      data: { ...c, latitude, longitude, ...(accuracy === undefined ? {} : { accuracy }) },
    })),
  fc.tuple(common, part, fc.option(state, { nil: undefined }), state).map(([c, typeName, previousState, newState]): EapiMessage => ({
    type: 'eapi_occurrence_new',
    data: { ...c, typeName, ...(previousState === undefined ? {} : { previousState }), newState },
  })),
  fc
    .tuple(
      common,
      fc.boolean(),
      fc.constantFrom('battery', 'failure', 'missing', 'radio', 'limit') as fc.Arbitrary<'limit'>,
      state,
      fc.option(state, { nil: undefined }),
    )
    .map(([c, enter, deviationType, reason, limitzone]): EapiMessage => ({
      type: enter ? 'eapi_deviation_enter' : 'eapi_deviation_leave',
      data: { ...c, historyType: enter ? 'enter' : 'leave', deviationType, reason, ...(limitzone === undefined ? {} : { limitzone }) },
    })),
);

describe('eapi: properties', () => {
  it('parseEapi(formatEapi(m)) equals m, as an object and through JSON text', () => {
    fc.assert(
      fc.property(message, (m) => {
        assert.deepEqual(parseEapi(formatEapi(m)), m);
        assert.deepEqual(parseEapi(JSON.stringify(formatEapi(m))), m);
      }),
      { numRuns: 500 },
    );
  });

  it('recordsToEapi(eapiToRecords(m)) gives m back, also for several messages at once', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 5 }), (ms) => {
        for (const m of ms) assert.deepEqual(recordsToEapi(eapiToRecords(m)), [m]);
        const records: ResolvedRecord[] = ms.flatMap(eapiToRecords);
        const keys = new Set(ms.map((m) => `${m.data.deviceId}/${m.data.sensorId}@${m.data.timeStamp}`));
        if (keys.size === ms.length) assert.deepEqual(recordsToEapi(records), ms);
      }),
      { numRuns: 300 },
    );
  });
});
