/**
 * The reference device client, HTTP part (docs/protocol-http.md): posts readings as a device
 * (its own key) or for a device (a tenant's API key), and asks for single-use UDP tokens. Uses
 * only Node's fetch; every answer comes back as data, errors included (a problem document), so a
 * caller can show the reason and honour Retry-After.
 */
import { encode as encodeCbor } from 'cbor-x';

export type HttpFormat = 'senml+json' | 'senml+cbor' | 'senml+xml' | 'ultralight' | 'json';

const CONTENT_TYPES: Record<HttpFormat, string> = {
  'senml+json': 'application/senml+json',
  'senml+cbor': 'application/senml+cbor',
  'senml+xml': 'application/senml+xml',
  ultralight: 'text/plain; charset=utf-8',
  json: 'application/json',
};

export interface DeviceCredentials {
  /** The device's serial number. */
  serial: string;
  /** The device's own key: sent as Authorization (Bearer <serial>:<key>, or Basic). */
  key?: string;
  /** Or a tenant's API key: sent as X-API-Key. */
  apiKey?: string;
  /** How the device key travels; default 'bearer'. */
  scheme?: 'bearer' | 'basic';
}

export interface PostReadingsOptions extends DeviceCredentials {
  /** The listener's base URL with its base path, e.g. http://127.0.0.1:1880/devices */
  base: string;
  format: HttpFormat;
  /**
   * The body: text or bytes as they are, or a value to encode — an array of SenML records or an
   * object of attribute values (JSON; CBOR for senml+cbor).
   */
  body: string | Uint8Array | unknown[] | Record<string, unknown>;
  /** Post to FIWARE's UltraLight route (the full URL, e.g. http://host:1880/iot/d) instead. */
  fiwareUrl?: string;
  signal?: AbortSignal;
}

/** RFC 9457 problem details, as Conflux sends them. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  [extension: string]: unknown;
}

export interface HttpResult {
  status: number;
  /** 202: the id of the accepted message (msg._msgid in the flow). */
  id?: string;
  /** Any error status: the problem document. */
  problem?: Problem;
  /** 429 and 503: seconds to wait before trying again. */
  retryAfter?: number;
}

export function authHeaders(c: DeviceCredentials): Record<string, string> {
  if (c.apiKey !== undefined) return { 'x-api-key': c.apiKey };
  if (c.key === undefined) return {};
  const token = `${c.serial}:${c.key}`;
  return { authorization: c.scheme === 'basic' ? `Basic ${Buffer.from(token, 'utf8').toString('base64')}` : `Bearer ${token}` };
}

export function encodeBody(format: HttpFormat, body: PostReadingsOptions['body']): string | Uint8Array {
  if (typeof body === 'string' || body instanceof Uint8Array) return body;
  if (format === 'senml+cbor') return encodeCbor(body);
  if (format === 'senml+json' || format === 'json') return JSON.stringify(body);
  throw new TypeError(`a ${format} body must be given as text or bytes`);
}

const trimBase = (base: string) => base.replace(/\/+$/, '');

async function result(res: Response): Promise<HttpResult> {
  const out: HttpResult = { status: res.status };
  const retry = res.headers.get('retry-after');
  if (retry !== null && /^\d+$/.test(retry)) out.retryAfter = Number(retry);
  const text = await res.text();
  const type = (res.headers.get('content-type') ?? '').split(';')[0].trim();
  if (res.status >= 400) {
    out.problem =
      type === 'application/problem+json' ? (JSON.parse(text) as Problem) : { type: 'about:blank', title: res.statusText, status: res.status, detail: text };
  } else if (type === 'application/json' && text !== '') {
    const value = JSON.parse(text) as { id?: unknown };
    if (typeof value.id === 'string') out.id = value.id;
  }
  return out;
}

/** Posts one body of readings; resolves with the answer (202 and its id, or the problem). */
export async function postReadings(options: PostReadingsOptions): Promise<HttpResult> {
  const body = encodeBody(options.format, options.body);
  let url: string;
  const headers: Record<string, string> = { 'content-type': CONTENT_TYPES[options.format] };
  if (options.fiwareUrl !== undefined) {
    const u = new URL(options.fiwareUrl);
    u.searchParams.set('i', options.serial);
    if (options.apiKey !== undefined) u.searchParams.set('k', options.apiKey);
    else Object.assign(headers, authHeaders(options));
    url = u.toString();
  } else {
    url = `${trimBase(options.base)}/${encodeURIComponent(options.serial)}/telemetry`;
    Object.assign(headers, authHeaders(options));
  }
  // A copy into a plain ArrayBuffer: what fetch's BodyInit accepts for bytes.
  const payload = typeof body === 'string' ? body : new Uint8Array(body).buffer;
  const res = await fetch(url, { method: 'POST', headers, body: payload, signal: options.signal });
  return result(res);
}

export interface UdpTokenGrant {
  /** Raw 16-byte tokens, each good for one datagram. */
  tokens: Buffer[];
  /** ms since the epoch */
  expiresAt: number;
}

export interface RequestTokensOptions extends DeviceCredentials {
  base: string;
  /** 1 to 100; default 1. */
  count?: number;
  signal?: AbortSignal;
}

/** Asks for single-use UDP tokens; rejects with the problem's detail when refused. */
export async function requestUdpTokens(options: RequestTokensOptions): Promise<UdpTokenGrant> {
  const url = `${trimBase(options.base)}/${encodeURIComponent(options.serial)}/tokens`;
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders(options) },
    body: JSON.stringify({ count: options.count ?? 1 }),
    signal: options.signal,
  });
  if (res.status !== 200) {
    const r = await result(res);
    const err = new Error(`tokens refused: ${r.status} ${r.problem?.detail ?? r.problem?.title ?? ''}`.trim()) as Error & { result: HttpResult };
    err.result = r;
    throw err;
  }
  const grant = (await res.json()) as { tokens: string[]; expiresAt: string };
  return { tokens: grant.tokens.map((t) => Buffer.from(t, 'base64')), expiresAt: Date.parse(grant.expiresAt) };
}
