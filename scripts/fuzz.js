#!/usr/bin/env node
// The fuzz run (docs/fuzz.md): mocha on dist/test/fuzz/ with --expose-gc (the memory checks run a
// full gc), 10,000 inputs per target with seed 14 unless told otherwise:
//
//   npm run fuzz -- --runs 200000 --seed 7             a longer run, another seed
//   npm run fuzz -- --seed 7 --path 42:3 --grep 'TCP'  replay one failure (seed and path as printed)
//
// or the same as CONFLUX_FUZZ_RUNS, CONFLUX_FUZZ_SEED, CONFLUX_FUZZ_PATH. Other arguments go to mocha.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const env = { ...process.env };
const mochaArgs = [];
const args = process.argv.slice(2);
const named = { '--runs': 'CONFLUX_FUZZ_RUNS', '--seed': 'CONFLUX_FUZZ_SEED', '--path': 'CONFLUX_FUZZ_PATH' };
for (let i = 0; i < args.length; i++) {
  const [flag, inline] = args[i].split(/=(.*)/s);
  if (named[flag]) {
    const value = inline ?? args[++i];
    if (value === undefined || value === '') {
      console.error(`${flag} needs a value`);
      process.exit(2);
    }
    env[named[flag]] = value;
  } else mochaArgs.push(args[i]);
}
for (const name of ['CONFLUX_FUZZ_RUNS', 'CONFLUX_FUZZ_SEED']) {
  if (env[name] !== undefined && !/^-?\d+$/.test(env[name])) {
    console.error(`${name} must be an integer, got ${JSON.stringify(env[name])}`);
    process.exit(2);
  }
}

const mocha = require.resolve('mocha/bin/mocha.js');
const result = spawnSync(
  process.execPath,
  ['--expose-gc', mocha, '--require', 'dist/test/support/servers.js', '--require', 'dist/test/fuzz/fuzz.js', ...mochaArgs, 'dist/test/fuzz/**/*.fuzz.js'],
  { cwd: root, env, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
