/** JSON through a JSONata mapping: compiling, decoding to resolved SenML, encoding, guardrails, round trips. */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { CodecError } from '../../nodes/core/errors';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { compileMapping, decodeWithMapping, encodeWithMapping } from '../../nodes/core/codecs/json-map';

const now = 1.7e9;

async function rejects(p: Promise<unknown>, check?: (e: CodecError) => boolean): Promise<CodecError> {
  let thrown: unknown;
  try {
    await p;
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof CodecError, `expected a CodecError, got ${String(thrown)}`);
  if (check) assert.ok(check(thrown), thrown.message);
  return thrown;
}

describe('json-map: compiling', () => {
  it('names the position of a syntax error', () => {
    assert.throws(
      () => compileMapping('readings.{"n": id'),
      (e: CodecError) => e instanceof CodecError && e.format === 'map' && /position \d+/.test(e.reason),
    );
    assert.throws(() => compileMapping(''), CodecError);
    assert.throws(() => compileMapping('x'.repeat(70000)), CodecError);
  });
});

describe('json-map: decoding', () => {
  const vendor = {
    device: 'pump-7',
    sampledAt: '2024-03-01T12:00:00Z',
    readings: [
      { kind: 'pressure', unit: 'Pa', value: 101325 },
      { kind: 'running', value: true },
      { kind: 'mode', value: 'auto' },
    ],
  };
  const expression = `(
    $t := $toMillis(sampledAt) / 1000;
    $dev := device;
    readings.(
      $base := { "n": $dev & "/pump/" & kind, "t": $t };
      $type(value) = "number" ? $merge([$base, { "u": unit, "v": value }]) :
      $type(value) = "boolean" ? $merge([$base, { "vb": value }]) :
      $merge([$base, { "vs": value }])
    )
  )`;

  it('maps a vendor document to resolved records', async () => {
    const t = Date.UTC(2024, 2, 1, 12) / 1000;
    assert.deepEqual(await decodeWithMapping(compileMapping(expression), JSON.stringify(vendor), { now }), [
      { n: 'pump-7/pump/pressure', t, u: 'Pa', v: 101325 },
      { n: 'pump-7/pump/running', t, vb: true },
      { n: 'pump-7/pump/mode', t, vs: 'auto' },
    ]);
  });

  it('accepts one record, base fields, relative times and bindings', async () => {
    assert.deepEqual(await decodeWithMapping(compileMapping('{"n": $prefix & id, "v": x}'), { id: 'a', x: 1 }, { now, bindings: { prefix: 'dev/' } }), [
      { n: 'dev/a', t: now, v: 1 },
    ]);
    assert.deepEqual(await decodeWithMapping(compileMapping('[{"bn": "dev/", "bt": 1.7e9, "n": "a", "v": 1}, {"n": "b", "t": 5, "v": 2}]'), {}, { now }), [
      { n: 'dev/a', t: 1.7e9, v: 1 },
      { n: 'dev/b', t: 1.7e9 + 5, v: 2 },
    ]);
  });

  it('refuses output that is not a valid SenML pack, naming the record and field', async () => {
    await rejects(decodeWithMapping(compileMapping('42'), {}), (e) => /not a SenML record/.test(e.reason));
    await rejects(decodeWithMapping(compileMapping('nothing.here'), {}), (e) => /yielded nothing/.test(e.reason));
    await rejects(
      decodeWithMapping(compileMapping('[{"n": "a", "v": 1}, {"n": "b c", "v": 2}]'), {}, { now }),
      (e) => e.format === 'map' && e.index === 1 && e.field === 'n',
    );
    await rejects(decodeWithMapping(compileMapping('{"n": "a", "v": "1"}'), {}, { now }), (e) => e.field === 'v');
    await rejects(decodeWithMapping(compileMapping('function($x) { $x }'), {}), (e) => /function/.test(e.reason));
  });

  it('stops runaway expressions: endless recursion, long loops, huge output', async function () {
    this.timeout(10000);
    // a tail call runs on until the time limit; a non-tail one hits the depth limit first
    await rejects(decodeWithMapping(compileMapping('($f := function($x) { $f($x + 1) }; $f(0))', { timeoutMs: 200 }), {}), (e) => /D1012/.test(e.reason));
    await rejects(decodeWithMapping(compileMapping('($f := function($x) { 1 + $f($x + 1) }; $f(0))'), {}), (e) => /D1011/.test(e.reason));
    const started = Date.now();
    await rejects(decodeWithMapping(compileMapping('($f := function($x) { $x > 0 ? $f($x - 1) : 0 }; [1..100000].$f(3))', { timeoutMs: 100 }), {}), (e) =>
      /D1012|timeout|D2015/i.test(e.reason),
    );
    assert.ok(Date.now() - started < 5000);
    await rejects(decodeWithMapping(compileMapping('[1..200000].{"n": "a", "v": $}', { maxSequence: 1000 }), {}), (e) => /D2015|sequence/i.test(e.reason));
    await rejects(decodeWithMapping(compileMapping('[1..5000].{"n": "a", "v": $}', { maxOutputValues: 1000 }), {}), (e) =>
      /more than 1000 values/.test(e.reason),
    );
  });

  it('refuses malformed JSON input', async () => {
    await rejects(decodeWithMapping(compileMapping('$'), '{"a": '), (e) => /malformed JSON/.test(e.reason));
  });
});

describe('json-map: encoding', () => {
  it('applies the expression to the canonical records', async () => {
    const records: ResolvedRecord[] = [
      { n: 'dev/temp', t: 1.7e9, u: 'Cel', v: 21.5 },
      { n: 'dev/on', t: 1.7e9, vb: true },
    ];
    const out = await encodeWithMapping(compileMapping('{"items": $.{"id": n, "at": $fromMillis(t * 1000), "value": v ? v : vb}}'), records);
    assert.deepEqual(out, {
      items: [
        { id: 'dev/temp', at: '2023-11-14T22:13:20.000Z', value: 21.5 },
        { id: 'dev/on', at: '2023-11-14T22:13:20.000Z', value: true },
      ],
    });
    await assert.rejects(encodeWithMapping(compileMapping('$'), [{ n: 'bad name', t: 1.7e9, v: 1 }]), CodecError);
  });
});

// ---- properties -------------------------------------------------------------------------------

const name = fc.stringMatching(/^[A-Za-z0-9][-:./A-Za-z0-9_]{0,20}$/);
const value = fc.oneof(
  fc
    .double({ noNaN: true, noDefaultInfinity: true })
    .filter((v) => !Object.is(v, -0))
    .map((v) => ({ v })),
  fc
    .string({ unit: 'binary', maxLength: 10 })
    .filter((vs) => !vs.includes('\u0000'))
    .map((vs) => ({ vs })), // no store holds U+0000
  fc.boolean().map((vb) => ({ vb })),
);
const records = fc
  .array(
    fc
      .tuple(name, fc.integer({ min: 2 ** 28 * 1000, max: Date.UTC(2200, 0, 1) }), fc.option(fc.constantFrom('Cel', 'Pa', '%RH'), { nil: undefined }), value)
      .map(([n, ms, u, v]): ResolvedRecord => ({ n, t: ms / 1000, ...(u === undefined ? {} : { u }), ...v })),
    { minLength: 1, maxLength: 6 },
  )
  .map((rs) => rs.sort((a, b) => a.t - b.t));

describe('json-map: properties', () => {
  it('the identity mapping round-trips any records', async () => {
    const identity = compileMapping('$');
    await fc.assert(
      fc.asyncProperty(records, async (rs) => {
        assert.deepEqual(await decodeWithMapping(identity, await encodeWithMapping(identity, rs), { now }), rs);
      }),
      { numRuns: 200 },
    );
  });

  it('a vendor mapping and its inverse round-trip any records', async () => {
    const out = compileMapping(
      '{"readings": [$.$merge([{"id": n, "at": t}, $exists(u) ? {"unit": u} : {}, {"value": $exists(v) ? v : ($exists(vs) ? vs : vb), "kind": $exists(v) ? "number" : ($exists(vb) ? "boolean" : "text")}])]}',
    );
    const back = compileMapping(`readings.$merge([{"n": id, "t": at}, $exists(unit) ? {"u": unit} : {},
      kind = "number" ? {"v": value} : kind = "boolean" ? {"vb": value} : {"vs": value}])`);
    await fc.assert(
      fc.asyncProperty(records, async (rs) => {
        assert.deepEqual(await decodeWithMapping(back, await encodeWithMapping(out, rs), { now }), rs);
      }),
      { numRuns: 200 },
    );
  });
});
