/**
 * Who may push events to a conflux-webhook-in endpoint (docs/webhooks-in.md), framework-free. The
 * node chooses one mode:
 *
 *   basic       Authorization: Basic with the node's user and password; the node's tenant
 *   api-key     X-API-Key: <key> (or Authorization: Bearer <key>), a tenant's API key whose
 *               scopes grant `webhooks` (auth/scopes.ts); the key's tenant
 *   signature   Standard Webhooks: webhook-id, webhook-timestamp (within 5 minutes of our clock)
 *               and webhook-signature over the raw body, verified by the reference
 *               `standardwebhooks` library against one of the node's `whsec_` secrets (several
 *               while a secret rotates); the node's tenant
 *
 * Refusals are problem documents: 401 missing or wrong credentials, 403 an API key without the
 * scope. A database that cannot answer an API-key lookup throws DatabaseUnavailable (503).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { authorizeApiKey } from '../auth/api-key-store';
import type { SqlClient } from '../db/sql';
import { problem, type HttpResponse } from '../protocol/problem';

export type WebhookAuthMode = 'basic' | 'api-key' | 'signature';
export const AUTH_MODES: readonly WebhookAuthMode[] = ['basic', 'api-key', 'signature'];

/** Seconds a webhook-timestamp may differ from our clock (the Standard Webhooks tolerance). */
export const TIMESTAMP_TOLERANCE_S = 5 * 60;

export const REALM = 'conflux-webhooks';

export interface WebhookAuthConfig {
  mode: WebhookAuthMode;
  /** The tenant events are stored for in the basic and signature modes. */
  tenant: string;
  user?: string;
  password?: string;
  /** `whsec_<base64>` secrets, whitespace- or comma-separated; any one that verifies is enough. */
  secrets?: string;
}

export type Headers = Record<string, string | string[] | undefined>;

export interface AuthRequest {
  headers: Headers;
  body: Buffer;
}

export type AuthOutcome = { ok: true; tenant: string } | { ok: false; response: HttpResponse };

export type Authenticate = (req: AuthRequest) => Promise<AuthOutcome>;

/** The database behind API keys could not answer: the endpoint answers 503. */
export class DatabaseUnavailable extends Error {
  override readonly name = 'DatabaseUnavailable';
}

export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v[0] : String(v);
}

/** The node's secret list, each one checked; throws naming the bad one's position. */
export function parseSecrets(text: string | undefined): Webhook[] {
  const secrets = (text ?? '').split(/[\s,]+/).filter(Boolean);
  if (secrets.length === 0) throw new Error('the signature mode needs at least one whsec_ secret');
  return secrets.map((s, i) => {
    if (!s.startsWith('whsec_')) throw new Error(`secret ${i + 1} does not start with whsec_`);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s.slice(6))) throw new Error(`secret ${i + 1} is not whsec_ followed by base64`);
    return new Webhook(s);
  });
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
/** Equal texts, in a time that does not depend on where they differ. */
const sameText = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

function unauthorized(detail: string, challenge: string | undefined): HttpResponse {
  return problem('unauthorized', detail, {}, challenge ? { 'www-authenticate': challenge } : {});
}

function basicAuth(config: WebhookAuthConfig): Authenticate {
  const user = config.user ?? '';
  const password = config.password ?? '';
  if (user === '' || password === '') throw new Error('the basic mode needs a user and a password');
  const challenge = `Basic realm="${REALM}", charset="UTF-8"`;
  return (req) => {
    const auth = header(req.headers, 'authorization')?.trim() ?? '';
    const m = /^Basic\s+([A-Za-z0-9+/]+={0,2})$/i.exec(auth);
    if (!m) return Promise.resolve({ ok: false, response: unauthorized('send Authorization: Basic with the user and password you were given', challenge) });
    const token = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = token.indexOf(':');
    const ok = colon >= 0 && sameText(token.slice(0, colon), user) && sameText(token.slice(colon + 1), password);
    return Promise.resolve(ok ? { ok: true, tenant: config.tenant } : { ok: false, response: unauthorized('wrong user or password', challenge) });
  };
}

function apiKeyAuth(sql: () => Promise<SqlClient>): Authenticate {
  const challenge = `Bearer realm="${REALM}"`;
  return async (req) => {
    let key = header(req.headers, 'x-api-key')?.trim();
    if (!key) {
      const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(header(req.headers, 'authorization') ?? '');
      key = m?.[1];
    }
    if (!key) return { ok: false, response: unauthorized('send an X-API-Key header (or Authorization: Bearer) with an API key of the tenant', challenge) };
    let verdict;
    try {
      verdict = await authorizeApiKey(await sql(), key, 'webhooks');
    } catch (err) {
      throw new DatabaseUnavailable(`the API keys cannot be read: ${(err as Error).message}`);
    }
    if (verdict.ok) return { ok: true, tenant: verdict.identity.tenant };
    return { ok: false, response: verdict.refusal === 'unknown' ? unauthorized(verdict.detail, challenge) : problem('forbidden', verdict.detail) };
  };
}

/** What the reference library's refusals mean for the sender. */
function signatureReason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  switch (text) {
    case 'Missing required headers':
      return 'send the webhook-id, webhook-timestamp and webhook-signature headers';
    case 'Invalid Signature Headers':
      return 'webhook-timestamp must be the integer seconds since the epoch';
    case 'Message timestamp too old':
      return `webhook-timestamp is more than ${TIMESTAMP_TOLERANCE_S / 60} minutes old: sign again with the current time`;
    case 'Message timestamp too new':
      return `webhook-timestamp is more than ${TIMESTAMP_TOLERANCE_S / 60} minutes ahead of the receiver's clock`;
    case 'No matching signature found':
      return 'no v1 signature in webhook-signature matches the body with any current secret';
    default:
      return 'the signature could not be verified';
  }
}

function signatureAuth(config: WebhookAuthConfig): Authenticate {
  const hooks = parseSecrets(config.secrets);
  return (req) => {
    const headers: Record<string, string> = {};
    for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
      const v = header(req.headers, name);
      if (v !== undefined) headers[name] = v;
    }
    let last: unknown;
    for (const hook of hooks) {
      try {
        hook.verify(req.body, headers, { jsonParse: false });
        return Promise.resolve({ ok: true, tenant: config.tenant });
      } catch (err) {
        last = err;
        // A header or timestamp problem is the same for every secret: no need to try the others.
        if (!(err instanceof WebhookVerificationError) || err.message !== 'No matching signature found') break;
      }
    }
    return Promise.resolve({ ok: false, response: unauthorized(signatureReason(last), undefined) });
  };
}

/** The authenticator of a mode; throws on a configuration that cannot work (no secret, no password). */
export function createAuthenticator(config: WebhookAuthConfig, sql: () => Promise<SqlClient>): Authenticate {
  if (config.mode !== 'api-key' && (typeof config.tenant !== 'string' || config.tenant === '')) throw new Error('a tenant is required');
  switch (config.mode) {
    case 'basic':
      return basicAuth(config);
    case 'api-key':
      return apiKeyAuth(sql);
    case 'signature':
      return signatureAuth(config);
    default:
      throw new Error(`unknown authentication mode ${JSON.stringify(config.mode)}`);
  }
}
