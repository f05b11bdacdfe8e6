/**
 * The palette package loads only what it declares: every module the compiled nodes require is a
 * Node.js built-in or a package in package.json's dependencies (a devDependency, such as
 * node-red or @node-red/util, is absent from a palette install).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { isBuiltin } from 'node:module';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..', '..');
const nodesDir = path.join(root, 'dist', 'nodes');

function jsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? jsFiles(p) : e.name.endsWith('.js') ? [p] : [];
  });
}

/** '@scope/name/sub' → '@scope/name'; 'name/sub' → 'name'. */
const packageOf = (specifier: string): string =>
  specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/');

describe('declared dependencies', () => {
  it('every require in dist/nodes is a built-in or a declared dependency', () => {
    const declared = new Set(Object.keys((JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies: object }).dependencies));
    const files = jsFiles(nodesDir);
    assert.ok(files.length > 50, `compiled nodes found in ${nodesDir}`);
    const undeclared: string[] = [];
    for (const file of files) {
      for (const m of fs.readFileSync(file, 'utf8').matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)) {
        const spec = m[1];
        if (spec.startsWith('.') || isBuiltin(spec)) continue;
        if (!declared.has(packageOf(spec))) undeclared.push(`${path.relative(root, file)}: ${spec}`);
      }
    }
    assert.deepEqual(undeclared, []);
  });
});
