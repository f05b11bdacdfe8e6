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

/** Every case in test/fixtures/malformed: a case lost (a file not loaded, a list cut short) fails here; add one, count it. */
const CORPUS_SIZE = 470;

describe('malformed inputs', () => {
  it(`the corpus holds exactly ${CORPUS_SIZE} inputs, each with the field or reason it is refused for`, () => {
    assert.equal(corpora.length, 7, 'seven codecs have a corpus');
    const total = corpora.reduce((n, c) => n + c.cases.length, 0);
    assert.equal(total, CORPUS_SIZE);
    for (const corpus of corpora)
      for (const c of corpus.cases) assert.ok(c.field !== undefined || c.reason !== undefined, `${corpus.codec}: "${c.why}" expects nothing`);
  });

  for (const corpus of corpora) {
    describe(corpus.codec, () => {
      corpus.cases.forEach(({ why, input, field, reason }, i) => {
        it(`rejects #${i}: ${why}`, async () => {
          let thrown: unknown;
          try {
            await corpus.decode(input);
          } catch (err) {
            thrown = err;
          }
          assert.ok(thrown instanceof CodecError, `expected a CodecError, got ${thrown === undefined ? 'no error' : String(thrown)}`);
          if (field !== undefined) assert.equal(thrown.field, field, `the field named by: ${thrown.message}`);
          if (reason !== undefined) assert.match(thrown.reason, reason);
        });
      });
    });
  }
});
