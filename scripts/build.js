#!/usr/bin/env node
// Build: TypeScript to CommonJS in dist/, then the files Node-RED reads beside each node's .js
// (its .html and locales), and the shipped flows as the package's examples/.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tsc = require.resolve('typescript/bin/tsc');
// dist/nodes is what the palette package ships ("files"): start it empty, so code that moved
// elsewhere (the launcher, once under nodes/core/runtime) leaves no stale copy to be packed.
fs.rmSync(path.join(root, 'dist', 'nodes'), { recursive: true, force: true });
// tsconfig.test.json: the production files (tsconfig.json, no test types) plus tests and benchmarks.
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.test.json')], { stdio: 'inherit' });

// Texts every node uses (status words, common labels) are written once, in
// nodes/shared/locales/<lang>/common.json, and merged into each node's catalog here: Node-RED
// gives each node file its own catalog namespace, with no shared one.
const common = path.join(root, 'nodes', 'shared', 'locales');
function withCommon(src, lang) {
  const shared = path.join(common, lang, 'common.json');
  if (!fs.existsSync(shared)) throw new Error(`${src}: no ${shared} for its language`);
  return JSON.stringify({ ...JSON.parse(fs.readFileSync(shared, 'utf8')), ...JSON.parse(fs.readFileSync(src, 'utf8')) }, null, 2);
}

function copyTree(from, to, keep, lang) {
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, entry.name);
    const dst = path.join(to, entry.name);
    if (src === common) continue;
    if (entry.isDirectory()) {
      const inLocales = entry.name === 'locales' || lang !== undefined;
      copyTree(src, dst, inLocales ? () => true : keep, entry.name === 'locales' ? null : inLocales ? entry.name : undefined);
    } else if (keep(entry.name)) {
      fs.mkdirSync(to, { recursive: true });
      if (lang && entry.name.endsWith('.json')) fs.writeFileSync(dst, withCommon(src, lang));
      else fs.copyFileSync(src, dst);
    }
  }
}
copyTree(path.join(root, 'nodes'), path.join(root, 'dist', 'nodes'), (name) => name.endsWith('.html'));
// The self-service page's static files (nodes/core/api/self-service.ts serves them): plain
// browser JavaScript and CSS, no build step.
copyTree(path.join(root, 'nodes', 'core', 'api', 'self-service'), path.join(root, 'dist', 'nodes', 'core', 'api', 'self-service'), () => true);

// Node-RED looks for a node's icon in an icons/ folder beside its .js, so every family gets a copy.
for (const family of fs.readdirSync(path.join(root, 'dist', 'nodes'), { withFileTypes: true })) {
  if (family.isDirectory() && family.name !== 'core' && family.name !== 'shared') {
    copyTree(path.join(root, 'icons'), path.join(root, 'dist', 'nodes', family.name, 'icons'), () => true);
  }
}

// Node-RED offers <package>/examples/*.json under Import > Examples.
const examples = path.join(root, 'examples');
fs.rmSync(examples, { recursive: true, force: true });
fs.mkdirSync(examples);
for (const name of fs.readdirSync(path.join(root, 'flows'))) {
  if (name.endsWith('.json')) fs.copyFileSync(path.join(root, 'flows', name), path.join(examples, name));
}
