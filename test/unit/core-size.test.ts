/** Modules that do one thing: no source file under nodes/core/ is over 600 lines (docs/architecture.md). */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

const core = path.resolve(__dirname, '..', '..', '..', 'nodes', 'core');
const MAX_LINES = 600;

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

describe('nodes/core module size', () => {
  it(`has no file over ${MAX_LINES} lines`, () => {
    const files = tsFiles(core);
    assert.ok(files.length > 50, `found only ${files.length} sources under ${core}`);
    const over = files
      .map((f) => ({ file: path.relative(core, f), lines: fs.readFileSync(f, 'utf8').split('\n').length - 1 }))
      .filter((f) => f.lines > MAX_LINES);
    assert.deepEqual(over, [], 'split these along a seam');
  });
});
