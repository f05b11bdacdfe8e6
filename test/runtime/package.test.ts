/**
 * The palette package carries nodes, not the launcher: what `npm pack` would publish holds no
 * settings.js, no launcher/ and no scripts/, and no packed module loads one of them.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { root } from '../support/platform';

describe('the packed package', function () {
  this.timeout(60_000);

  it('holds no launcher code and loads none', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
    const files = (JSON.parse(out) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
    assert.ok(files.includes('dist/nodes/devices/http-in.js'), `the nodes are packed: ${files.length} files`);
    for (const name of ['index.html', 'app.js', 'style.css'])
      assert.ok(files.includes(`dist/nodes/core/api/self-service/${name}`), `the self-service page's ${name} is packed`);
    const launcher = files.filter((f) => /^dist\/(settings\.js|launcher\/|scripts\/)/.test(f) || f.startsWith('dist/nodes/core/runtime/'));
    assert.deepEqual(launcher, []);
    for (const file of files.filter((f) => f.endsWith('.js'))) {
      const text = fs.readFileSync(path.join(root, file), 'utf8');
      assert.doesNotMatch(text, /require\("[./]*(launcher|settings|scripts)\//, `${file} loads launcher code`);
    }
  });
});
