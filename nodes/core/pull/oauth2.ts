/**
 * OAuth2 client credentials (RFC 6749 section 4.4): a token fetched from the token endpoint,
 * cached until shortly before it expires, fetched again then or when the API answers 401
 * (invalidate()). Concurrent callers share one token request.
 */

export interface OAuth2Config {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  scope?: string;
  audience?: string;
  /** basic: client_secret_basic (the RFC's default); body: client_id and client_secret in the form. */
  clientAuth?: 'basic' | 'body';
  timeoutMs: number;
  /** A token is renewed this long before its expiry. */
  skewMs?: number;
}

export class OAuth2Error extends Error {
  override readonly name = 'OAuth2Error';
}

interface Cached {
  token: string;
  type: string;
  /** Renewed from then on: shortly before it expires. */
  renewAt: number;
}

export class TokenSource {
  private cached: Cached | undefined;
  private pending: Promise<Cached> | undefined;
  /** Token requests made, for the status and tests. */
  requests = 0;

  constructor(
    private readonly config: OAuth2Config,
    private readonly now: () => number = Date.now,
  ) {}

  /** The Authorization header value. */
  async authorization(signal?: AbortSignal): Promise<string> {
    const c = this.cached;
    if (c && c.renewAt > this.now()) return `${c.type} ${c.token}`;
    this.pending ??= this.fetchToken(signal).finally(() => (this.pending = undefined));
    const fresh = await this.pending;
    return `${fresh.type} ${fresh.token}`;
  }

  /** Forgets the token the API refused, unless another caller has replaced it already. */
  invalidate(authorization: string): void {
    if (this.cached && `${this.cached.type} ${this.cached.token}` === authorization) this.cached = undefined;
  }

  private async fetchToken(signal?: AbortSignal): Promise<Cached> {
    const { tokenUrl, clientId, clientSecret, scope, audience, clientAuth = 'basic' } = this.config;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (scope) form.set('scope', scope);
    if (audience) form.set('audience', audience);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (clientAuth === 'body') {
      form.set('client_id', clientId);
      form.set('client_secret', clientSecret);
    } else {
      // RFC 6749 2.3.1: the id and secret are form-encoded before the Basic encoding.
      const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
    }
    this.requests++;
    const timeout = AbortSignal.timeout(this.config.timeoutMs);
    let res: Response;
    try {
      res = await fetch(tokenUrl, { method: 'POST', headers, body: form.toString(), signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    } catch (err) {
      throw new OAuth2Error(`token endpoint ${tokenUrl}: ${(err as Error).message}`);
    }
    const text = await res.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // reported below
    }
    if (!res.ok) {
      const reason =
        typeof body.error === 'string' ? `${body.error}${typeof body.error_description === 'string' ? `: ${body.error_description}` : ''}` : text.slice(0, 200);
      throw new OAuth2Error(`token endpoint answered ${res.status}: ${reason}`);
    }
    if (typeof body.access_token !== 'string' || body.access_token === '') throw new OAuth2Error('the token endpoint answered without an access_token');
    const type = typeof body.token_type === 'string' && body.token_type.toLowerCase() !== 'bearer' ? body.token_type : 'Bearer';
    const lifetime = typeof body.expires_in === 'number' ? body.expires_in : Number(body.expires_in ?? NaN);
    // Without expires_in the token is kept until the API refuses it.
    const ms = lifetime * 1000;
    const renewAt = Number.isFinite(ms) && ms > 0 ? this.now() + ms - Math.min(this.config.skewMs ?? 30_000, ms / 2) : Number.MAX_SAFE_INTEGER;
    this.cached = { token: body.access_token, type, renewAt };
    return this.cached;
  }
}
