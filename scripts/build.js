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
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });

function copyTree(from, to, keep) {
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, entry.name);
    const dst = path.join(to, entry.name);
    if (entry.isDirectory()) copyTree(src, dst, entry.name === 'locales' ? () => true : keep);
    else if (keep(entry.name)) {
      fs.mkdirSync(to, { recursive: true });
      fs.copyFileSync(src, dst);
    }
  }
}
copyTree(path.join(root, 'nodes'), path.join(root, 'dist', 'nodes'), (name) => name.endsWith('.html'));

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
