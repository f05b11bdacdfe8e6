/**
 * Conflux standalone platform: Node-RED with this package's nodes, embedded defaults and
 * CONFLUX_* overrides (see launcher/). `npm start` builds, then runs dist/settings.js.
 * This file only wires Node-RED, HTTP and signals; the decisions live in launcher/.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import RED = require('node-red');
import { startupBanner } from './launcher/banner';
import { buildSettings, ConfigError, readConfig, type RuntimeConfig } from './launcher/config';
import { OWNER_ONLY_UMASK, ownerOnlyTree } from './nodes/core/db/owner-only';
import { FIRST_FLOWS, installFirstFlow } from './launcher/first-start';
import { noCorsGrant, platformApp } from './launcher/http';
import { claimPlatformPidFile } from './launcher/pid-file';
import { resolveCredentialSecret } from './launcher/secret';

/** dist/settings.js sits one level below the package root (package.json, flows/, examples/). */
const packageRoot = path.resolve(__dirname, '..');

/** express and bcryptjs come with node-red: take the copies it uses rather than our own. */
const nodeRedDir = path.dirname(require.resolve('node-red/package.json'));
function fromNodeRed<T>(name: string): T {
  return require(require.resolve(name, { paths: [nodeRedDir] })) as T;
}
const express = fromNodeRed<typeof import('express')>('express');
const bcrypt = fromNodeRed<{ hashSync(password: string, rounds: number): string; compare(password: string, hash: string): Promise<boolean> }>('bcryptjs');

async function main(): Promise<void> {
  let config: RuntimeConfig;
  try {
    config = readConfig(process.env, process.cwd());
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`conflux: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }

  // Everything this process creates (PGlite's files, flows, credentials) is its owner's only, and
  // so becomes what an earlier start or another tool left readable to others.
  process.umask(OWNER_ONLY_UMASK);
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  // npm run backup / restore refuse while this file names a live process.
  process.on('exit', claimPlatformPidFile(config.dataDir));
  if (config.sharedFlows && !fs.existsSync(config.flowFile)) {
    console.error(`conflux: CONFLUX_FLOWS_FILE names ${config.flowFile}, which does not exist`);
    process.exit(2);
  }
  const firstFlow = config.sharedFlows
    ? 'kept'
    : installFirstFlow(
        config.dataDir,
        config.flowFile,
        FIRST_FLOWS.map((name) => path.join(packageRoot, 'flows', name)),
      );
  const secret = resolveCredentialSecret(config.dataDir, config.credentialSecret);
  const modesFixed = ownerOnlyTree(config.dataDir); // also flows.json, which a copy gives the shipped file's mode
  const settings = buildSettings(config, {
    packageRoot,
    credentialSecret: secret.secret,
    hash: (password) => bcrypt.hashSync(password, 10),
    adminMiddleware: noCorsGrant,
  });

  let handle: http.RequestListener = (_req, res) => res.writeHead(503).end();
  const server = http.createServer((req, res) => handle(req, res));
  // Opening PGlite at a first start can hold the event loop for seconds; with Node's 5 s keep-alive
  // timeout, a request sent meanwhile on a kept-alive connection was reset when the loop came back
  // (the timer runs before the socket is read). 65 s, as load balancers expect of a backend.
  server.keepAliveTimeout = 65_000;
  RED.init(server, settings as unknown as Parameters<typeof RED.init>[1]);
  const hash = settings.adminAuth?.users[0].password;
  const platform = platformApp({
    express,
    httpAdmin: RED.httpAdmin,
    httpNode: RED.httpNode,
    config,
    port: () => config.port,
    checkLogin: hash === undefined ? undefined : async (user, password) => user === config.adminUser && (await bcrypt.compare(password, hash)),
    warn: (line) => RED.log.warn(line),
  });
  handle = platform.app;
  platform.guardUpgrades(server, '/comms');

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) process.exit(1); // a second signal: do not wait any longer
    stopping = true;
    RED.log.info(`${signal}: stopping Conflux`);
    setTimeout(() => {
      console.error('conflux: Node-RED did not stop within 20 s; exiting');
      process.exit(1);
    }, 20_000).unref();
    try {
      await RED.stop();
    } catch (err) {
      RED.log.error(`stopping Node-RED: ${(err as Error).message}`);
    }
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      console.error(`conflux: cannot listen on ${config.host}:${config.port} (${code}): set CONFLUX_HOST / CONFLUX_PORT`);
      process.exit(1);
    }
    throw err;
  }
  const address = server.address();
  if (address && typeof address === 'object') config.port = address.port; // CONFLUX_PORT=0 picks a free port

  await RED.start();
  const banner = startupBanner(config, process.env, secret, firstFlow);
  for (const line of banner.info) RED.log.info(line);
  for (const line of banner.warn) RED.log.warn(line);
  if (modesFixed > 0) RED.log.warn(`data dir: ${modesFixed} files and folders were readable by others; made them owner-only`);
}

main().catch((err: unknown) => {
  console.error(`conflux: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
