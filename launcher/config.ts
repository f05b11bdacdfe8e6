/**
 * The standalone platform's configuration: CONFLUX_* environment variables over embedded
 * defaults, and the Node-RED settings object built from them. Pure and framework-free: the
 * caller (settings.ts) supplies the credential secret and the password hash function.
 */
import * as path from 'node:path';
import type { Env } from './defaults';
import { parseHost } from './doors';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 1880;
export const DEFAULT_DATA_DIR = 'data';
export const DEFAULT_ADMIN_USER = 'admin';
export const FLOW_FILE = 'flows.json';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export interface RuntimeConfig {
  host: string;
  port: number;
  /** Absolute: Node-RED's userDir, holding flows.json, credentials and the secret file. */
  dataDir: string;
  /** Relative to dataDir, or absolute when CONFLUX_FLOWS_FILE names it. */
  flowFile: string;
  /** CONFLUX_FLOWS_FILE was set: the flows come from that file, never from the first start. */
  sharedFlows: boolean;
  /**
   * CONFLUX_EDITOR=off: an instance that runs the flows as the file has them, with no editor and
   * no admin API, so that several instances behind a load balancer cannot drift apart.
   */
  editor: boolean;
  /** Editor login; only when adminPassword is set. */
  adminUser: string;
  adminPassword?: string;
  /** From CONFLUX_CREDENTIAL_SECRET; otherwise one is generated and kept in dataDir. */
  credentialSecret?: string;
  logLevel: LogLevel;
  /** CONFLUX_ALLOWED_HOSTS: further names (or name:port) the editor answers to without a password. */
  allowedHosts: string[];
  /** CONFLUX_TRUSTED_PROXIES: addresses whose X-Forwarded-For names the client (express "trust proxy"). */
  trustedProxies: string[];
}

function value(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v;
}

export function parsePort(raw: string | undefined, name = 'CONFLUX_PORT'): number {
  if (raw === undefined) return DEFAULT_PORT;
  const text = raw.trim();
  if (!/^\d+$/.test(text)) throw new ConfigError(`${name} must be a port number (0-65535), got "${raw}"`);
  const port = Number(text);
  if (port > 65535) throw new ConfigError(`${name} must be a port number (0-65535), got "${raw}"`);
  return port;
}

function parseLogLevel(raw: string | undefined): LogLevel {
  if (raw === undefined) return 'info';
  const level = raw.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(`CONFLUX_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${raw}"`);
  }
  return level as LogLevel;
}

function list(raw: string | undefined): string[] {
  return raw === undefined ? [] : raw.split(/[\s,]+/).filter((x) => x !== '');
}

function parseAllowedHosts(raw: string | undefined): string[] {
  const hosts = list(raw);
  for (const h of hosts) {
    if (!parseHost(h)) throw new ConfigError(`CONFLUX_ALLOWED_HOSTS must list host names, addresses or name:port, separated by commas; "${h}" is none`);
  }
  return hosts;
}

function parseProxies(raw: string | undefined): string[] {
  const proxies = list(raw);
  for (const p of proxies) {
    if (!/^(loopback|linklocal|uniquelocal|[0-9a-fA-F:.]+(\/\d{1,3})?)$/.test(p)) {
      throw new ConfigError(`CONFLUX_TRUSTED_PROXIES must list addresses or subnets (or loopback), separated by commas; "${p}" is none`);
    }
  }
  return proxies;
}

function parseEditor(raw: string | undefined): boolean {
  if (raw === undefined) return true;
  const v = raw.trim().toLowerCase();
  if (v === 'on') return true;
  if (v === 'off') return false;
  throw new ConfigError(`CONFLUX_EDITOR must be on or off, got "${raw}"`);
}

/**
 * Reads CONFLUX_HOST, _PORT, _DATA_DIR and _FLOWS_FILE (relative to cwd), _EDITOR, _ADMIN_USER,
 * _ADMIN_PASSWORD, _CREDENTIAL_SECRET, _LOG_LEVEL, _ALLOWED_HOSTS, _TRUSTED_PROXIES.
 */
export function readConfig(env: Env, cwd: string): RuntimeConfig {
  const flows = value(env, 'CONFLUX_FLOWS_FILE');
  const config: RuntimeConfig = {
    host: value(env, 'CONFLUX_HOST')?.trim() ?? DEFAULT_HOST,
    port: parsePort(value(env, 'CONFLUX_PORT')),
    dataDir: path.resolve(cwd, value(env, 'CONFLUX_DATA_DIR') ?? DEFAULT_DATA_DIR),
    flowFile: flows === undefined ? FLOW_FILE : path.resolve(cwd, flows),
    sharedFlows: flows !== undefined,
    editor: parseEditor(value(env, 'CONFLUX_EDITOR')),
    adminUser: value(env, 'CONFLUX_ADMIN_USER')?.trim() ?? DEFAULT_ADMIN_USER,
    logLevel: parseLogLevel(value(env, 'CONFLUX_LOG_LEVEL')),
    allowedHosts: parseAllowedHosts(value(env, 'CONFLUX_ALLOWED_HOSTS')),
    trustedProxies: parseProxies(value(env, 'CONFLUX_TRUSTED_PROXIES')),
  };
  // Passwords and secrets are taken as given: leading or trailing spaces may be part of them.
  const password = value(env, 'CONFLUX_ADMIN_PASSWORD');
  if (password !== undefined) config.adminPassword = password;
  const secret = value(env, 'CONFLUX_CREDENTIAL_SECRET');
  if (secret !== undefined) config.credentialSecret = secret;
  return config;
}

export interface AdminAuth {
  type: 'credentials';
  users: { username: string; password: string; permissions: '*' }[];
}

/** Node-RED's adminAuth for the editor and admin API, or undefined when no password is set. */
export function adminAuthFor(config: RuntimeConfig, hash: (password: string) => string): AdminAuth | undefined {
  if (config.adminPassword === undefined) return undefined;
  return { type: 'credentials', users: [{ username: config.adminUser, password: hash(config.adminPassword), permissions: '*' }] };
}

/** The subset of Node-RED's settings this platform sets. */
export interface NodeRedSettings {
  uiHost: string;
  uiPort: number;
  httpAdminRoot: string;
  httpNodeRoot: string;
  userDir: string;
  flowFile: string;
  flowFilePretty: boolean;
  /** Set with CONFLUX_EDITOR=off: nothing writes the flows, credentials or settings files. */
  readOnly?: boolean;
  disableEditor?: boolean;
  credentialSecret: string;
  nodesDir: string[];
  adminAuth?: AdminAuth;
  /** Runs in the admin app before its body parsers and routes (see launcher/http.ts). */
  httpAdminMiddleware?: (req: unknown, res: { removeHeader(name: string): void }, next: () => void) => void;
  telemetry: { enabled: false; updateNotification: false };
  diagnostics: { enabled: boolean; ui: boolean };
  logging: { console: { level: LogLevel; metrics: false; audit: false } };
  editorTheme: {
    page: { title: string };
    header: { title: string };
    tours: false;
    projects: { enabled: false };
  };
  /** Read by Conflux nodes through RED.settings: where embedded stores keep their files. */
  conflux: { dataDir: string };
}

export interface SettingsInputs {
  /** Folder holding our package.json (with its node-red section): loaded as a module. */
  packageRoot: string;
  credentialSecret: string;
  hash: (password: string) => string;
  adminMiddleware?: NodeRedSettings['httpAdminMiddleware'];
}

export function buildSettings(config: RuntimeConfig, inputs: SettingsInputs): NodeRedSettings {
  const settings: NodeRedSettings = {
    uiHost: config.host,
    uiPort: config.port,
    httpAdminRoot: '/',
    httpNodeRoot: '/',
    userDir: config.dataDir,
    flowFile: config.flowFile,
    flowFilePretty: true,
    credentialSecret: inputs.credentialSecret,
    nodesDir: [inputs.packageRoot],
    telemetry: { enabled: false, updateNotification: false },
    diagnostics: { enabled: true, ui: true },
    logging: { console: { level: config.logLevel, metrics: false, audit: false } },
    editorTheme: {
      page: { title: 'Conflux' },
      header: { title: 'Conflux' },
      tours: false,
      projects: { enabled: false },
    },
    conflux: { dataDir: config.dataDir },
  };
  if (!config.editor) {
    settings.readOnly = true;
    settings.disableEditor = true;
  }
  const auth = adminAuthFor(config, inputs.hash);
  if (auth) settings.adminAuth = auth;
  // httpAdminCors and httpNodeCors stay unset: no endpoint answers Access-Control-Allow-Origin.
  if (inputs.adminMiddleware) settings.httpAdminMiddleware = inputs.adminMiddleware;
  return settings;
}

/** The address a person opens, e.g. http://127.0.0.1:1880/ (a wildcard host is shown as localhost). */
export function editorUrl(host: string, port: number): string {
  const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  return `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}/`;
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
