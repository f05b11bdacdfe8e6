import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CodecError } from '../../nodes/core/errors';
import type { MalformedCorpus } from '../fixtures/malformed/types';

const dir = path.join(__dirname, '..', 'fixtures', 'malformed');
const corpora: MalformedCorpus[] = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.js') && f !== 'types.js')
  .map((f) => require(path.join(dir, f)).default as MalformedCorpus);

describe('malformed inputs', () => {
  it('the corpus holds at least 200 inputs', () => {
    const total = corpora.reduce((n, c) => n + c.cases.length, 0);
    assert.ok(total >= 200, `only ${total} malformed inputs`);
  });

  for (const corpus of corpora) {
    describe(corpus.codec, () => {
      corpus.cases.forEach(({ why, input }, i) => {
        it(`rejects #${i}: ${why}`, async () => {
          let thrown: unknown;
          try {
            await corpus.decode(input);
          } catch (err) {
            thrown = err;
          }
          assert.ok(thrown instanceof CodecError, `expected a CodecError, got ${thrown === undefined ? 'no error' : String(thrown)}`);
          assert.ok(thrown.reason.length > 5, 'the error names a reason');
        });
      });
    });
  }
});
