import { strict as assert } from 'node:assert';
import { CodecError } from '../../nodes/core/errors';
import { MAX_TIME, resolve, validateResolved } from '../../nodes/core/model/senml';

const now = 1.7e9;

function rejects(pack: unknown, pattern: RegExp): void {
  assert.throws(
    () => resolve(pack, { now }),
    (err: unknown) => err instanceof CodecError && pattern.test(err.message),
  );
}

describe('SenML model: resolution and validation', () => {
  it('orders resolved records by time, keeping equal times in pack order', () => {
    const out = resolve(
      [
        { bn: 'd/', n: 'b', t: 1.7e9 + 5, v: 2 },
        { n: 'a', t: 1.7e9, v: 1 },
        { n: 'c', t: 1.7e9, v: 3 },
      ],
      { now },
    );
    assert.deepEqual(
      out.map((r) => r.n),
      ['d/a', 'd/c', 'd/b'],
    );
  });

  it('adds the base value to v and the base sum to s, and uses the base unit only where u is absent', () => {
    const out = resolve(
      [
        { bn: 'm', bv: 100, bs: 10, bu: 'W', v: 5, s: 1 },
        { n: 'x', u: 'V', v: 1 },
        { n: 'y', vs: 'on' },
      ],
      { now },
    );
    assert.deepEqual(out, [
      { n: 'm', t: now, u: 'W', v: 105, s: 11 },
      { n: 'mx', t: now, u: 'V', v: 101, s: 10 },
      { n: 'my', t: now, u: 'W', vs: 'on', s: 10 },
    ]);
  });

  it('keeps a record holding only a sum', () => {
    assert.deepEqual(resolve([{ n: 'meter', u: 'J', s: 42, t: 1.7e9 }], { now }), [{ n: 'meter', u: 'J', t: 1.7e9, s: 42 }]);
  });

  it('resolves times below 2**28 against now, and keeps absolute times as they are', () => {
    const out = resolve(
      [
        { n: 'a', t: -10, v: 1 },
        { n: 'b', t: 2 ** 28, v: 1 },
      ],
      { now },
    );
    assert.deepEqual(
      out.map((r) => r.t),
      [2 ** 28, now - 10],
    );
  });

  it('names the record index and the field of the first problem', () => {
    rejects(
      [
        { n: 'a', v: 1 },
        { n: 'b', v: '1' },
      ],
      /record 1: field "v": expected a finite number/,
    );
    rejects([{ n: 'a', v: 1, vs: 'x' }], /record 0: .*exactly one/);
    rejects([{ n: 'a' }], /record 0: .*needs one of/);
    rejects([{ n: '-a', v: 1 }], /record 0: field "n": .*not a valid SenML name/);
    rejects([{ n: 'a', v: 1, x_: 1 }], /record 0: field "x_": unknown field that must be understood/);
    rejects([{ bver: 11, n: 'a', v: 1 }], /newer than 10/);
    rejects(
      [
        { bver: 5, n: 'a', v: 1 },
        { bver: 6, n: 'b', v: 1 },
      ],
      /record 1: field "bver": version 6 disagrees with version 5/,
    );
    rejects([], /at least one record/);
    rejects({ n: 'a' }, /must be an array/);
    rejects([{ bn: 'a' }], /base fields but no reading/);
  });

  it('refuses what no store can hold, naming the field: times out of range, overlong names, U+0000 in texts', () => {
    const cases: Array<[unknown[], string, RegExp]> = [
      [[{ n: 'a', v: 1, t: 1e20 }], 't', /outside what is stored/],
      [[{ n: 'a', v: 1, t: -1e15 }], 't', /outside what is stored/],
      [[{ bt: 1e300, n: 'a', v: 1 }], 't', /outside what is stored/],
      [[{ n: 'a', v: 1, t: MAX_TIME }], 't', /outside what is stored/],
      [[{ n: 'a'.repeat(60_000), v: 1 }], 'n', /at most 1024 characters/],
      [[{ n: 'a', vs: 'x\u0000y' }], 'vs', /U\+0000/],
      [[{ n: 'a', v: 1, u: 'x'.repeat(300) }], 'u', /at most 256/],
    ];
    for (const [pack, field, reason] of cases) {
      assert.throws(
        () => resolve(pack, { now }),
        (err: CodecError) => err.field === field && reason.test(err.message),
        JSON.stringify(pack).slice(0, 80),
      );
    }
    assert.equal(resolve([{ n: 'a', v: 1, t: MAX_TIME - 1 }], { now })[0].t, MAX_TIME - 1, 'the last second of 9999 is stored');
    assert.throws(() => validateResolved([{ n: 'a', v: 1, t: 1e20 }]), /outside what is stored/, 'tiers check the same limits');
  });

  it('ignores unknown fields that do not end in an underscore', () => {
    assert.deepEqual(resolve([{ n: 'a', v: 1, t: 1.7e9, foo: 'bar' }], { now }), [{ n: 'a', t: 1.7e9, v: 1 }]);
  });

  it('validateResolved accepts canonical records and refuses base fields and relative times', () => {
    assert.doesNotThrow(() => validateResolved([{ n: 'a', t: 1.7e9, v: 1 }]));
    assert.throws(() => validateResolved([{ n: 'a', bn: 'x', t: 1.7e9, v: 1 }]), /base fields/);
    assert.throws(() => validateResolved([{ n: 'a', t: 5, v: 1 }]), /absolute time/);
  });
});
