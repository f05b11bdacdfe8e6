/**
 * Real PostgreSQL, Redis, RabbitMQ and Prosody (XMPP) for the integration tests, as a mocha root-hook plugin:
 *
 *   mocha --require dist/test/support/servers.js dist/test/**\/*.test.js
 *
 * starts both once (test/servers/servers.sh) before the first test when any loaded spec lives
 * under test/integration/, and stops them after the last. A spec that asks for a URL without
 * the plugin starts them on first use and they stop when the process exits. If
 * CONFLUX_TEST_POSTGRES_URL, CONFLUX_TEST_REDIS_URL and CONFLUX_TEST_AMQP_URL are all set, those
 * servers are used and nothing is started (then stopRabbitMQ/startRabbitMQ and the other
 * stop/start pairs, which restart our own servers, are refused). A server that cannot start fails the run: tests never skip.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';

interface Servers {
  postgresUrl: string;
  redisUrl: string;
  amqpUrl: string;
  /** pure-ftpd with explicit TLS required: ftp://user:password@127.0.0.1:port; its files; the test CA (PEM file). */
  ftp?: { url: string; root: string; ca: string };
  /** The test Prosody (XMPP), when the script started one or CONFLUX_TEST_PROSODY_PORT names one. */
  prosody?: ProsodyInfo;
  /** Set when we started them and must stop them. */
  envFile?: string;
}

/** The test Prosody: users alice, bob and carol with password "secret" on `domain`. */
export interface ProsodyInfo {
  host: string;
  /** Plain c2s (STARTTLS offered, not required). */
  port: number;
  /** Direct TLS (xmpps). */
  tlsPort: number;
  domain: string;
  /** PEM of the test CA that signed the server's certificate for "localhost". */
  caFile: string;
  password: string;
}

function prosodyOf(env: Record<string, string | undefined>): ProsodyInfo | undefined {
  if (!env.CONFLUX_TEST_PROSODY_PORT) return undefined;
  return {
    host: '127.0.0.1',
    port: Number(env.CONFLUX_TEST_PROSODY_PORT),
    tlsPort: Number(env.CONFLUX_TEST_PROSODY_TLS_PORT),
    domain: env.CONFLUX_TEST_PROSODY_DOMAIN ?? 'localhost',
    caFile: env.CONFLUX_TEST_PROSODY_CA ?? '',
    password: 'secret',
  };
}

let servers: Servers | undefined;

function script(): string {
  // Compiled to dist/test/support/, sourced from test/support/: look upward for the script.
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'test', 'servers', 'servers.sh');
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error('test/servers/servers.sh not found above ' + __dirname);
  }
}

function readEnv(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** Starts the servers (once); throws with the script's reason if one cannot start. */
export function startServers(): Servers {
  if (servers) return servers;
  const { CONFLUX_TEST_POSTGRES_URL: pgUrl, CONFLUX_TEST_REDIS_URL: redis, CONFLUX_TEST_AMQP_URL: amqp } = process.env;
  if (pgUrl && redis && amqp) return (servers = { postgresUrl: pgUrl, redisUrl: redis, amqpUrl: amqp, prosody: prosodyOf(process.env) });
  const envFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-test-')), 'servers.env');
  try {
    // stdio: the script's progress and errors go to the test output; apt-get may take a while.
    execFileSync('bash', [script(), 'start', envFile], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 300_000 });
  } catch (err) {
    fs.rmSync(path.dirname(envFile), { recursive: true, force: true });
    throw new Error(`test servers did not start (test/servers/servers.sh start): ${(err as Error).message}`, { cause: err });
  }
  const env = readEnv(envFile);
  servers = {
    postgresUrl: env.CONFLUX_TEST_POSTGRES_URL,
    redisUrl: env.CONFLUX_TEST_REDIS_URL,
    amqpUrl: env.CONFLUX_TEST_AMQP_URL,
    ftp: { url: env.CONFLUX_TEST_FTP_URL, root: env.CONFLUX_TEST_FTP_ROOT, ca: env.CONFLUX_TEST_FTP_CA },
    prosody: prosodyOf(env),
    envFile,
  };
  process.once('exit', stopServers);
  return servers;
}

/** Stops what startServers started and removes its directories. Synchronous: safe in 'exit'. */
export function stopServers(): void {
  const envFile = servers?.envFile;
  servers = undefined;
  if (!envFile) return;
  try {
    execFileSync('bash', [script(), 'stop', envFile], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 60_000 });
  } finally {
    fs.rmSync(path.dirname(envFile), { recursive: true, force: true });
  }
}

export function postgresUrl(): string {
  return startServers().postgresUrl;
}

export function redisUrl(): string {
  return startServers().redisUrl;
}

/** amqp://guest:guest@127.0.0.1:<port> of the test RabbitMQ (vhost /). */
export function amqpUrl(): string {
  return startServers().amqpUrl;
}

/** The test pure-ftpd (FTPS, explicit TLS required): its URL with the login, the folder its user's files land in, the test CA's PEM file. */
export function ftpsServer(): { url: string; root: string; ca: string } {
  const { CONFLUX_TEST_FTP_URL: url, CONFLUX_TEST_FTP_ROOT: root, CONFLUX_TEST_FTP_CA: ca } = process.env;
  if (url && root && ca) return { url, root, ca };
  const ftp = startServers().ftp;
  if (!ftp?.url) throw new Error('no test FTP server: set CONFLUX_TEST_FTP_URL, _ROOT and _CA, or let test/servers/servers.sh start one');
  return ftp;
}

/** The test Prosody (started with the others). */
export function prosody(): ProsodyInfo {
  const p = startServers().prosody;
  if (!p) throw new Error('no test Prosody: the servers were given by CONFLUX_TEST_* variables without CONFLUX_TEST_PROSODY_PORT');
  return p;
}

/** Stops the test Prosody (resolves once its process has exited); users and offline messages stay on disk. */
export function stopProsody(): Promise<void> {
  return serversScript('prosody-stop');
}

/** Starts the same Prosody again on the same ports (resolves once it accepts connections). */
export function startProsody(): Promise<void> {
  return serversScript('prosody-start');
}

/** Runs the script's rabbitmq-stop or -start asynchronously: the clients in this process see the outage as it happens. */
function rabbitmq(command: 'rabbitmq-stop' | 'rabbitmq-start'): Promise<void> {
  return serversScript(command);
}

type ServerCommand = `${'rabbitmq' | 'prosody' | 'postgres' | 'redis'}-${'stop' | 'start'}`;

function serversScript(command: ServerCommand): Promise<void> {
  const envFile = startServers().envFile;
  if (!envFile)
    return Promise.reject(
      new Error(`${command}: the test servers were given by CONFLUX_TEST_* variables, not started here; only our own servers can be restarted`),
    );
  return new Promise((resolve, reject) => {
    const child = execFile('bash', [script(), command, envFile], { timeout: 120_000 }, (err, _stdout, stderr) =>
      err ? reject(new Error(`servers.sh ${command} failed: ${err.message} ${stderr}`)) : resolve(),
    );
    child.stdin?.end();
  });
}

/** Stops the test RabbitMQ node (resolves once its VM has exited); its queues and persistent messages stay on disk. */
export function stopRabbitMQ(): Promise<void> {
  return rabbitmq('rabbitmq-stop');
}

/** Starts the same node again on the same port and data (resolves once it is up). */
export function startRabbitMQ(): Promise<void> {
  return rabbitmq('rabbitmq-start');
}

/**
 * Stops the test PostgreSQL (fast shutdown: open sessions are cut; resolves once it is down). Its
 * databases stay on disk; clients in this process and in children see the outage as it happens.
 */
export function stopPostgres(): Promise<void> {
  return serversScript('postgres-stop');
}

/** Starts the same PostgreSQL again on the same port and data (resolves once it accepts connections). */
export function startPostgres(): Promise<void> {
  return serversScript('postgres-start');
}

/** Stops the test Redis (resolves once its process has exited). */
export function stopRedis(): Promise<void> {
  return serversScript('redis-stop');
}

/** Starts a Redis again on the same port (resolves once it answers PING); it starts empty: the test server saves nothing. */
export function startRedis(): Promise<void> {
  return serversScript('redis-start');
}

/**
 * `rabbitmqctl <args>` against the test node, e.g. ['list_queues', 'name', 'messages']: its
 * output, tab-separated rows without the header (-q --no-table-headers).
 */
export function rabbitmqctl(...args: string[]): string {
  const envFile = startServers().envFile;
  if (!envFile) throw new Error('rabbitmqctl: the test RabbitMQ was given by CONFLUX_TEST_AMQP_URL, not started here');
  const env = readEnv(envFile);
  const dir = env.CONFLUX_TEST_RABBITMQ_DIR;
  return execFileSync('/usr/lib/rabbitmq/bin/rabbitmqctl', ['-q', ...args, ...(args[0]?.startsWith('list_') ? ['--no-table-headers'] : [])], {
    env: {
      ...process.env,
      HOME: dir,
      RABBITMQ_NODENAME: `rabbit-${env.CONFLUX_TEST_RABBITMQ_PORT}@localhost`,
      ERL_EPMD_PORT: env.CONFLUX_TEST_RABBITMQ_EPMD_PORT,
      ERL_EPMD_ADDRESS: '127.0.0.1',
    },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

/** Creates an empty database on the test server and returns its URL: one per test keeps them independent. */
export async function freshDatabase(): Promise<string> {
  const admin = new Client({ connectionString: postgresUrl() });
  const name = `test_${randomBytes(6).toString('hex')}`;
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(postgresUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

interface SuiteLike {
  file?: string;
  suites: SuiteLike[];
}

function needsServers(suite: SuiteLike | undefined): boolean {
  if (!suite) return true;
  if (suite.file && /[\\/]integration[\\/]/.test(suite.file)) return true;
  return suite.suites.some(needsServers);
}

/** Mocha root hooks: loaded with --require, they bracket the whole run. */
export const mochaHooks = {
  beforeAll(this: Mocha.Context): void {
    this.timeout(300_000);
    const root = this.test?.parent as SuiteLike | undefined;
    if (process.env.CONFLUX_TEST_SERVERS === 'always' || needsServers(root)) {
      const t0 = Date.now();
      startServers();
      if (process.env.CONFLUX_TEST_VERBOSE) console.log(`test servers ready in ${Date.now() - t0} ms`);
    }
  },
  afterAll(this: Mocha.Context): void {
    this.timeout(60_000);
    stopServers();
  },
};
