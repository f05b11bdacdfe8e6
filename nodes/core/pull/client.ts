/**
 * The HTTP side of a pull: one GET with the source's auth, a bounded time and body, retried
 * with exponential backoff on what may pass (network errors, timeouts, 408, 425, 429, 5xx),
 * honouring Retry-After up to a bound, and once with a fresh token when an OAuth2 token is
 * refused (401). Other answers fail at once with the status and the start of the body.
 */
import { backoffDelay, type RetryPolicy } from '../mailbox/backoff';
import { TokenSource, type OAuth2Config } from './oauth2';

export type AuthMode = 'none' | 'basic' | 'bearer' | 'apikey' | 'oauth2';
export const AUTH_MODES: readonly AuthMode[] = ['none', 'basic', 'bearer', 'apikey', 'oauth2'];

export interface AuthConfig {
  mode: AuthMode;
  user?: string;
  password?: string;
  token?: string;
  /** apikey: the header or query parameter name, and where it goes. */
  apiKeyName?: string;
  apiKeyIn?: 'header' | 'query';
  apiKey?: string;
  oauth2?: Omit<OAuth2Config, 'timeoutMs'>;
}

export interface ClientConfig {
  auth: AuthConfig;
  /** Extra request headers (Accept defaults to JSON). */
  headers?: Record<string, string>;
  timeoutMs: number;
  /** Tries of one request, the first included. */
  maxAttempts: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** A Retry-After longer than this fails the request instead of waiting (the next run retries). */
  maxRetryAfterMs?: number;
  maxBodyBytes: number;
  /** Told before each wait for a retry. */
  onRetry?(reason: string, delayMs: number): void;
}

export interface Fetched {
  url: string;
  status: number;
  headers: Headers;
  body: unknown;
}

export class PullError extends Error {
  override readonly name = 'PullError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

const RETRIED = new Set([408, 425, 429, 500, 502, 503, 504]);

/** Retry-After as milliseconds (delta-seconds or an HTTP date); undefined when absent or malformed. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/** Resolves after ms, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function readBounded(res: Response, max: number): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > max) {
    await res.body?.cancel();
    throw new PullError(`the response of ${declared} bytes exceeds the limit of ${max}`, res.status);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  if (!res.body) return Buffer.alloc(0);
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw new PullError(`the response exceeds the limit of ${max} bytes`, res.status);
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks);
}

export interface PullClient {
  get(url: string, signal: AbortSignal): Promise<Fetched>;
  /** The OAuth2 token source, when the auth is oauth2. */
  readonly tokens?: TokenSource;
}

export function createClient(config: ClientConfig): PullClient {
  const { auth } = config;
  const tokens = auth.mode === 'oauth2' && auth.oauth2 ? new TokenSource({ ...auth.oauth2, timeoutMs: config.timeoutMs }) : undefined;
  if (auth.mode === 'oauth2' && !tokens) throw new Error('oauth2 needs a token URL, a client id and a client secret');
  const policy: RetryPolicy = { baseDelayMs: config.baseDelayMs ?? 500, maxDelayMs: config.maxDelayMs ?? 30_000, maxAttempts: config.maxAttempts, jitter: 0.2 };
  const maxRetryAfter = config.maxRetryAfterMs ?? 300_000;

  async function prepare(url: string, signal: AbortSignal): Promise<{ url: string; headers: Record<string, string> }> {
    const headers: Record<string, string> = { accept: 'application/json', ...config.headers };
    const target = new URL(url);
    switch (auth.mode) {
      case 'basic':
        headers.authorization = `Basic ${Buffer.from(`${auth.user ?? ''}:${auth.password ?? ''}`).toString('base64')}`;
        break;
      case 'bearer':
        headers.authorization = `Bearer ${auth.token ?? ''}`;
        break;
      case 'apikey':
        if (auth.apiKeyIn === 'query') target.searchParams.set(auth.apiKeyName || 'api_key', auth.apiKey ?? '');
        else headers[(auth.apiKeyName || 'x-api-key').toLowerCase()] = auth.apiKey ?? '';
        break;
      case 'oauth2':
        headers.authorization = await tokens!.authorization(signal);
        break;
    }
    return { url: target.toString(), headers };
  }

  async function once(url: string, signal: AbortSignal): Promise<Fetched | { retry: string; after?: number; status?: number }> {
    const req = await prepare(url, signal);
    let res: Response;
    try {
      res = await fetch(req.url, { headers: req.headers, signal: AbortSignal.any([signal, AbortSignal.timeout(config.timeoutMs)]), redirect: 'follow' });
    } catch (err) {
      if (signal.aborted) throw signal.reason as Error;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return {
        retry: `${(err as Error).name === 'TimeoutError' ? `no answer within ${config.timeoutMs} ms` : (cause?.code ?? cause?.message ?? (err as Error).message)}`,
      };
    }
    if (res.status === 401 && tokens) {
      await res.body?.cancel();
      tokens.invalidate(req.headers.authorization);
      return { retry: 'the token was refused (401)', after: 0, status: 401 };
    }
    if (RETRIED.has(res.status)) {
      const text = (await readBounded(res, 4096).catch(() => Buffer.alloc(0))).toString('utf8');
      return { retry: `${res.status}${text ? ` ${text.slice(0, 200)}` : ''}`, after: retryAfterMs(res.headers.get('retry-after')), status: res.status };
    }
    const raw = await readBounded(res, config.maxBodyBytes);
    if (!res.ok) throw new PullError(`${req.url.replace(/\?.*/, '')} answered ${res.status}: ${raw.toString('utf8').slice(0, 200)}`, res.status);
    let body: unknown;
    try {
      body = raw.length === 0 ? null : JSON.parse(raw.toString('utf8').replace(/^\uFEFF/, ''));
    } catch (err) {
      throw new PullError(`the answer of ${req.url.replace(/\?.*/, '')} is not JSON: ${(err as Error).message}`, res.status);
    }
    return { url: res.url || req.url, status: res.status, headers: res.headers, body };
  }

  async function get(url: string, signal: AbortSignal): Promise<Fetched> {
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      const outcome = await once(url, signal);
      if (!('retry' in outcome)) return outcome;
      if (outcome.status === 401) {
        // One fresh token per request; a second 401 means the credentials are wrong.
        if (refreshed) throw new PullError('the API refused a freshly fetched OAuth2 token (401)', 401);
        refreshed = true;
        attempt--;
        continue;
      }
      if (attempt >= config.maxAttempts) throw new PullError(`gave up after ${attempt} tries: ${outcome.retry}`, outcome.status);
      if (outcome.after !== undefined && outcome.after > maxRetryAfter) {
        throw new PullError(
          `${outcome.retry.slice(0, 3)}: the source asks to wait ${Math.ceil(outcome.after / 1000)} s, more than the ${maxRetryAfter / 1000} s allowed`,
          outcome.status,
        );
      }
      const delay = Math.max(backoffDelay(attempt, policy), outcome.after ?? 0);
      config.onRetry?.(outcome.retry, delay);
      await sleep(delay, signal);
    }
  }

  return { get, tokens };
}
