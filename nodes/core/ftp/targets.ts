/**
 * FTP targets: a server, its login, TLS mode, folder and naming rules. A target comes from a
 * conflux-ftp config node, or from the business store (ftp_targets, migration 011), where it
 * belongs to a client (all of the client's users deliver there) or to one user (his own server):
 * a delivery for a user goes to the user's own target when he has one, else to his client's.
 *
 * The password is the row's password column (write-only in the API), else its secret_ref, which
 * names an environment variable: `env:CONFLUX_FTP_<NAME>`. Only variables with that prefix can be
 * named, so whoever may edit targets cannot have another secret of the process sent to a server
 * of his choice. Framework-free.
 */
import { createHash } from 'node:crypto';
import type { SqlClient } from '../db/sql';
import { checkRule, remoteFolder } from './naming';
import type { NamingRules } from './package';

export type TlsMode = 'none' | 'explicit' | 'implicit';
export const TLS_MODES: readonly TlsMode[] = ['none', 'explicit', 'implicit'];
/** ftp_targets.protocol → TLS mode: ftp none, ftpes explicit (AUTH TLS), ftps implicit. */
export const TLS_OF_PROTOCOL: Record<string, TlsMode> = { ftp: 'none', ftpes: 'explicit', ftps: 'implicit' };

export interface FtpTarget {
  /** Connections are pooled per key: one server, login and TLS setting. */
  key: string;
  /** For errors and logs: the target's name, or user@host:port. */
  label: string;
  host: string;
  port: number;
  user: string;
  password: string;
  tls: TlsMode;
  /** PEM the server's certificate must chain to; absent: the system's CAs. */
  ca?: string;
  /** Whether the server's certificate is checked (always, unless a test or an operator turns it off). */
  rejectUnauthorized: boolean;
  /** Absolute, normalised (nodes/core/ftp/naming.ts remoteFolder). */
  folder: string;
  /** Connections to this target at most (the pool also has its own per-target bound). */
  maxConnections: number;
  /** A store target's own naming rules (the client's); absent: the node's. */
  rules?: NamingRules;
}

export interface TargetSpec {
  name?: string;
  host: string;
  port?: number;
  user: string;
  password?: string;
  tls?: TlsMode;
  ca?: string;
  rejectUnauthorized?: boolean;
  folder?: string;
  maxConnections?: number;
  rules?: NamingRules;
}

export class TargetError extends Error {
  override name = 'TargetError';
}

/** A checked target from a spec; throws TargetError with the reason. */
export function makeTarget(spec: TargetSpec): FtpTarget {
  const host = (spec.host ?? '').trim();
  if (host === '') throw new TargetError('no host');
  const tls = spec.tls ?? 'none';
  if (!TLS_MODES.includes(tls)) throw new TargetError(`TLS mode must be one of ${TLS_MODES.join(', ')}, got ${String(tls)}`);
  const port = spec.port ?? (tls === 'implicit' ? 990 : 21);
  if (!(Number.isInteger(port) && port >= 1 && port <= 65_535)) throw new TargetError(`port must be 1..65535, got ${port}`);
  const user = (spec.user ?? '').trim();
  if (user === '') throw new TargetError('no user');
  const maxConnections = spec.maxConnections ?? 2;
  if (!(Number.isInteger(maxConnections) && maxConnections >= 1)) throw new TargetError(`maxConnections must be an integer >= 1, got ${maxConnections}`);
  let folder: string;
  try {
    folder = remoteFolder(spec.folder);
    if (spec.rules) for (const r of [spec.rules.naming, spec.rules.archive, spec.rules.metadata]) if (r) checkRule(r);
  } catch (err) {
    throw new TargetError((err as Error).message);
  }
  const ca = spec.ca?.trim() ? spec.ca : undefined;
  const caTag = ca ? createHash('sha256').update(ca).digest('hex').slice(0, 12) : '';
  return {
    key: `${tls}|${host}|${port}|${user}|${caTag}|${spec.rejectUnauthorized === false ? 'insecure' : ''}`,
    label: spec.name || `${user}@${host}:${port}`,
    host,
    port,
    user,
    password: spec.password ?? '',
    tls,
    ca,
    rejectUnauthorized: spec.rejectUnauthorized !== false,
    folder,
    maxConnections,
    rules: spec.rules,
  };
}

/** The password of a store target: its password column, else the env:CONFLUX_FTP_* variable its secret_ref names. */
export function targetSecret(row: { password?: unknown; secret_ref?: unknown }, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof row.password === 'string') return row.password;
  const ref = typeof row.secret_ref === 'string' ? row.secret_ref : '';
  if (ref === '') return '';
  const m = /^env:(CONFLUX_FTP_[A-Z0-9_]+)$/.exec(ref);
  if (!m) throw new TargetError(`secret_ref ${JSON.stringify(ref)} is not env:CONFLUX_FTP_<NAME>`);
  const value = env[m[1]];
  if (value === undefined) throw new TargetError(`secret_ref names ${m[1]}, which is not set`);
  return value;
}

export interface TargetRow {
  id: number | string;
  tenant_id: string;
  name: string;
  client: string | null;
  user_ref: string | null;
  host: string;
  port: number;
  protocol: string;
  username: string;
  password: string | null;
  secret_ref: string | null;
  ca: string | null;
  directory: string;
  naming: string;
  archive: string | null;
  metadata: string | null;
  max_connections: number;
  enabled: boolean;
}

export function targetOfRow(row: TargetRow, env?: NodeJS.ProcessEnv): FtpTarget {
  return makeTarget({
    name: row.name,
    host: row.host,
    port: row.port,
    user: row.username,
    password: targetSecret(row, env),
    tls: TLS_OF_PROTOCOL[row.protocol] ?? 'implicit',
    ca: row.ca ?? undefined,
    folder: row.directory,
    maxConnections: row.max_connections,
    rules: { naming: row.naming, archive: row.archive, metadata: row.metadata },
  });
}

const COLUMNS = `id, tenant_id, name, client, user_ref, host, port, protocol, username, password, secret_ref, ca, directory, naming, archive, metadata, max_connections, enabled`;

/** Who a delivery is for: the message's user and client as the source system names them. */
export interface Owner {
  user?: string;
  client?: string;
}

/** Store targets, read with their secrets and cached for cacheMs (a changed password applies within that). */
export class TargetStore {
  private readonly cache = new Map<string, { at: number; row: Promise<TargetRow | undefined> }>();

  constructor(
    private readonly db: SqlClient,
    private readonly cacheMs: number,
  ) {}

  private cached(key: string, load: () => Promise<TargetRow | undefined>): Promise<TargetRow | undefined> {
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && now - hit.at < this.cacheMs) return hit.row;
    const row = load();
    this.cache.set(key, { at: now, row });
    row.catch(() => this.cache.delete(key));
    if (this.cache.size > 10_000) for (const [k, v] of this.cache) if (now - v.at >= this.cacheMs) this.cache.delete(k);
    return row;
  }

  /** The enabled target a delivery for this owner goes to: the user's own, else the client's. */
  forOwner(tenant: string, owner: Owner): Promise<TargetRow | undefined> {
    const user = owner.user ?? '';
    const client = owner.client ?? '';
    if (user === '' && client === '') return Promise.reject(new TargetError('no user or client to find an FTP target for (msg.user, msg.client)'));
    return this.cached(`o|${tenant}|${user}|${client}`, async () => {
      const { rows } = await this.db.query<TargetRow>(
        `SELECT ${COLUMNS} FROM ftp_targets
         WHERE tenant_id = $1 AND enabled AND ((user_ref = $2 AND $2 <> '') OR (user_ref IS NULL AND client = $3 AND $3 <> ''))
         ORDER BY (user_ref IS NULL) LIMIT 1`,
        [tenant, user, client],
      );
      return rows[0];
    });
  }

  /** A target by id or by name. */
  byRef(tenant: string, ref: number | string): Promise<TargetRow | undefined> {
    return this.cached(`r|${tenant}|${ref}`, async () => {
      const byId = typeof ref === 'number' || /^\d+$/.test(ref);
      const { rows } = await this.db.query<TargetRow>(`SELECT ${COLUMNS} FROM ftp_targets WHERE tenant_id = $1 AND ${byId ? 'id = $2::bigint' : 'name = $2'}`, [
        tenant,
        String(ref),
      ]);
      return rows[0];
    });
  }
}
