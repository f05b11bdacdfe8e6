/**
 * Device telemetry over HTTP (docs/protocol-http.md), framework-free: a request already split
 * into route, serial, headers, query and a bounded body goes in, a response comes out. The
 * conflux-http-in node adapts Express to this; nothing here imports node-red or express.
 *
 * Routes
 *   telemetry   POST <base>/<serial>/telemetry       readings, answered 202 {"id"}
 *   tokens      POST <base>/<serial>/tokens          single-use UDP tokens, answered 200
 *   fiware      POST /iot/d?k=<apikey>&i=<serial>    FIWARE's UltraLight HTTP binding
 *
 * Credentials, the first one present wins:
 *   X-API-Key: <key>                   a tenant's API key (api_keys); the device must be one of
 *                                      the key's tenant's devices
 *   ?k=<key>                           the same, on the FIWARE route only
 *   Authorization: Bearer <serial>:<key>
 *   Authorization: Basic base64(<serial>:<key>)
 *                                      the device's own key (device_keys, either valid slot);
 *                                      the serial must be the URL's
 *
 * Body formats by Content-Type (charset, when given, must be UTF-8 or US-ASCII):
 *   application/senml+json, application/senml+cbor, application/senml+xml    SenML
 *   text/plain                                  UltraLight 2.0 (the FIWARE route's default)
 *   application/json                            SenML when the text is a JSON array, else an
 *                                               object of attribute values
 *
 * Checks, in order, each with its problem type: method (405), serial (400), Content-Encoding and
 * Content-Type (415), declared Content-Length (413, before any byte is read), in-flight bound
 * (503 Retry-After), body size (413), credentials (401/403/404), the tenant's rate (429
 * Retry-After), in-flight bound again, decoding (400 with the codec's reason). Then the reading
 * goes into the flow, and the answer waits for the flow: 202 once it has kept the reading, 503
 * 'not-stored' with the reason when it did not. The handler never throws: an unexpected failure
 * is a 500 problem, a database that cannot answer a 503.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { decodeSenmlCbor } from '../codecs/senml-cbor';
import { decodeSenmlJson } from '../codecs/senml-json';
import { decodeSenmlXml } from '../codecs/senml-xml';
import type { SqlClient } from '../db/sql';
import { authenticateDeviceKey, type DeviceDirectory, type DeviceIdentity } from '../devices/directory';
import { decodeDevicePayload, deviceMessage, scopeToDevice, type Decoded } from '../devices/ingest';
import type { TenantRate } from '../devices/tenant-rate';
import type { UdpTokens } from '../devices/udp-tokens';
import { CodecError } from '../errors';
import type { CanonicalMessage } from '../model/message';
import { validateResolved } from '../model/senml';
import { authorizeApiKey } from '../auth/api-key-store';
import { jsonResponse, problem, type HttpResponse } from './problem';

export type { HttpResponse } from './problem';

export type IngestRoute = 'telemetry' | 'tokens' | 'fiware';

export interface IngestRequest {
  route: IngestRoute;
  method: string;
  /** The serial from the path (telemetry, tokens); the FIWARE route takes it from ?i=. */
  serial?: string;
  /** Header names in lower case, as Node's http module gives them. */
  headers: Record<string, string | string[] | undefined>;
  query: Record<string, string | undefined>;
}

export interface IngestRequestWithBody extends IngestRequest {
  body: Buffer;
}

/** The canonical message with the id the device got in the 202 answer. */
export type IngestedMessage = CanonicalMessage & { _msgid: string };

/** The wire formats a body may be in, from its Content-Type. */
export type BodyKind = 'senml+json' | 'senml+cbor' | 'senml+xml' | 'ultralight' | 'json';

export const MEDIA_TYPES: Record<string, BodyKind> = {
  'application/senml+json': 'senml+json',
  'application/senml+cbor': 'senml+cbor',
  'application/senml+xml': 'senml+xml',
  'text/plain': 'ultralight',
  'application/json': 'json',
};
const ACCEPTED = Object.keys(MEDIA_TYPES);
const CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii']);

/** Most UDP tokens one request may ask for. */
export const MAX_TOKENS_PER_REQUEST = 100;
/** Longest serial accepted in a URL. */
export const MAX_SERIAL_LENGTH = 256;
/** A device key verified once is trusted again without PBKDF2 for this long (ms). */
export const CREDENTIAL_CACHE_MS = 30_000;
const CREDENTIAL_CACHE_SIZE = 10_000;
/** Seconds a client should wait after a 503. */
export const OVERLOAD_RETRY_AFTER_S = 1;
/** Seconds a client should wait before sending again a reading the flow did not keep. */
export const NOT_STORED_RETRY_AFTER_S = 5;

export const REALM = 'conflux-devices';
const CHALLENGE = `Bearer realm="${REALM}", Basic realm="${REALM}", charset="UTF-8"`;

// ─── In-flight bound ────────────────────────────────────────────────────────────────────────

/** Readings the flow has not finished with, and how many may be: when full, new ones get 503. */
export interface InFlight {
  readonly size: number;
  readonly max: number;
}

// ─── Reading the body, bounded ──────────────────────────────────────────────────────────────

export type BodyResult = { ok: true; body: Buffer } | { ok: false; response: HttpResponse };

const CLOSE = { connection: 'close' };

function tooLarge(max: number, detail: string): HttpResponse {
  return problem('body-too-large', detail, { limit: max }, CLOSE);
}

/** The declared Content-Length: undefined when absent, NaN when not a valid number. */
export function declaredLength(headers: IngestRequest['headers']): number | undefined {
  const raw = header(headers, 'content-length');
  if (raw === undefined) return undefined;
  return /^\d{1,15}$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
}

/**
 * Reads a request body of at most `max` bytes. A declared Content-Length above `max` is refused
 * before any byte is read; a body that grows past `max` (chunked) is refused as soon as it does,
 * and the rest is not read (the 413 asks for the connection to close). No byte for `idleMs`: 408.
 */
export function readBody(stream: Readable, headers: IngestRequest['headers'], max: number, idleMs: number): Promise<BodyResult> {
  const declared = declaredLength(headers);
  if (declared !== undefined && Number.isNaN(declared)) {
    return Promise.resolve({ ok: false, response: problem('invalid-request', 'Content-Length is not a number', {}, CLOSE) });
  }
  if (declared !== undefined && declared > max) {
    return Promise.resolve({ ok: false, response: tooLarge(max, `the body is declared as ${declared} bytes; at most ${max} are accepted`) });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: BodyResult) => {
      if (timer) clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (!result.ok) stream.pause();
      resolve(result);
    };
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => finish({ ok: false, response: problem('request-timeout', `no byte of the body arrived for ${idleMs} ms`, {}, CLOSE) }), idleMs);
    };
    const onData = (chunk: Buffer | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buf.length;
      if (size > max) return finish({ ok: false, response: tooLarge(max, `the body is more than ${max} bytes`) });
      chunks.push(buf);
      arm();
    };
    const onEnd = () => finish({ ok: true, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size) });
    const onError = (err: Error) => finish({ ok: false, response: problem('invalid-request', `the body could not be read: ${err.message}`, {}, CLOSE) });
    const onClose = () => finish({ ok: false, response: problem('invalid-request', 'the connection closed before the body ended', {}, CLOSE) });
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
    arm();
    stream.resume();
  });
}

// ─── Headers and credentials ────────────────────────────────────────────────────────────────

function header(headers: IngestRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v[0] : String(v);
}

export interface MediaType {
  type: string;
  params: Record<string, string>;
}

/** Parses a Content-Type value (RFC 9110 section 8.3.1); undefined when malformed. */
export function parseContentType(value: string): MediaType | undefined {
  const [essence, ...rest] = value.split(';');
  const type = essence.trim().toLowerCase();
  if (!/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(type)) return undefined;
  const params: Record<string, string> = {};
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq < 0) {
      if (p.trim() === '') continue;
      return undefined;
    }
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    params[p.slice(0, eq).trim().toLowerCase()] = v;
  }
  return { type, params };
}

/** The body kind of a request, or the 415 problem. The FIWARE route reads a body without a type as UltraLight. */
export function bodyKind(route: IngestRoute, headers: IngestRequest['headers']): BodyKind | HttpResponse {
  const raw = header(headers, 'content-type');
  const accept = { accept: ACCEPTED };
  const acceptHeader = { 'accept-post': ACCEPTED.join(', ') };
  if (raw === undefined || raw.trim() === '') {
    if (route === 'fiware') return 'ultralight';
    return problem('unsupported-media-type', `a Content-Type is required: one of ${ACCEPTED.join(', ')}`, accept, acceptHeader);
  }
  const media = parseContentType(raw);
  if (!media) return problem('unsupported-media-type', `malformed Content-Type ${JSON.stringify(raw.slice(0, 100))}`, accept, acceptHeader);
  const kind = MEDIA_TYPES[media.type];
  if (!kind) return problem('unsupported-media-type', `${media.type} is not accepted: send one of ${ACCEPTED.join(', ')}`, accept, acceptHeader);
  const charset = media.params.charset?.toLowerCase();
  if (charset !== undefined && kind !== 'senml+cbor' && !CHARSETS.has(charset)) {
    return problem('unsupported-media-type', `charset ${media.params.charset} is not accepted: send UTF-8`, accept, acceptHeader);
  }
  return kind;
}

export type Credential =
  | { kind: 'api-key'; key: string }
  | { kind: 'device'; serial: string; key: string; scheme: 'Bearer' | 'Basic' }
  | { kind: 'none' }
  | { kind: 'malformed'; reason: string };

/** Splits "<serial>:<key>"; with the URL's serial known, a serial holding ':' still splits right. */
function splitDeviceToken(token: string, urlSerial: string | undefined): { serial: string; key: string } | undefined {
  if (urlSerial !== undefined && token.startsWith(`${urlSerial}:`)) return { serial: urlSerial, key: token.slice(urlSerial.length + 1) };
  const colon = token.indexOf(':');
  if (colon <= 0) return undefined;
  return { serial: token.slice(0, colon), key: token.slice(colon + 1) };
}

/** The credentials a request presents: X-API-Key, then ?k= (FIWARE route), then Authorization. */
export function credentialsOf(req: IngestRequest, urlSerial: string | undefined): Credential {
  const apiKey = header(req.headers, 'x-api-key');
  if (apiKey !== undefined && apiKey !== '') return { kind: 'api-key', key: apiKey.trim() };
  if (req.route === 'fiware' && req.query.k) return { kind: 'api-key', key: req.query.k };
  const auth = header(req.headers, 'authorization');
  if (auth === undefined || auth.trim() === '') return { kind: 'none' };
  const m = /^\s*([A-Za-z]+)\s+(.*?)\s*$/.exec(auth);
  if (!m) return { kind: 'malformed', reason: 'the Authorization header has no scheme and credentials' };
  const scheme = m[1].toLowerCase();
  let token: string;
  if (scheme === 'bearer') token = m[2];
  else if (scheme === 'basic') {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(m[2])) return { kind: 'malformed', reason: 'Basic credentials are not base64' };
    token = Buffer.from(m[2], 'base64').toString('utf8');
  } else return { kind: 'malformed', reason: `the ${m[1]} scheme is not accepted: use Bearer or Basic with <serial>:<key>, or X-API-Key` };
  const split = splitDeviceToken(token, urlSerial);
  if (!split || split.key === '') return { kind: 'malformed', reason: `${scheme === 'bearer' ? 'Bearer' : 'Basic'} credentials must be <serial>:<key>` };
  return { kind: 'device', ...split, scheme: scheme === 'bearer' ? 'Bearer' : 'Basic' };
}

function unauthorized(detail: string, bearerError?: string): HttpResponse {
  const challenge = bearerError ? CHALLENGE.replace(`realm="${REALM}",`, `realm="${REALM}", error="${bearerError}",`) : CHALLENGE;
  return problem('unauthorized', detail, {}, { 'www-authenticate': challenge });
}

// ─── Decoding ───────────────────────────────────────────────────────────────────────────────

function firstNonSpace(body: Buffer): number {
  let i = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
  while (i < body.length && (body[i] === 0x20 || body[i] === 0x09 || body[i] === 0x0a || body[i] === 0x0d)) i++;
  return body[i];
}

/** Decodes a body of the given kind for `serial`; throws CodecError with the reason. `now` in seconds. */
export function decodeBody(kind: BodyKind, body: Buffer, serial: string, now: number): Decoded {
  if (body.length === 0) throw new CodecError(kind, 'the body is empty');
  let decoded: Decoded;
  switch (kind) {
    case 'senml+json':
      decoded = { records: scopeToDevice(decodeSenmlJson(body, { now }), serial), format: 'senml+json' };
      break;
    case 'senml+cbor':
      decoded = { records: scopeToDevice(decodeSenmlCbor(body, { now }), serial), format: 'senml+cbor' };
      break;
    case 'senml+xml':
      decoded = { records: scopeToDevice(decodeSenmlXml(body, { now }), serial), format: 'senml+xml' };
      break;
    case 'ultralight':
      decoded = decodeDevicePayload('ultralight', body, serial, now);
      break;
    case 'json':
      decoded =
        firstNonSpace(body) === 0x5b /* [ */
          ? { records: scopeToDevice(decodeSenmlJson(body, { now }), serial), format: 'senml+json' }
          : decodeDevicePayload('attributes', body, serial, now);
      break;
  }
  if (decoded.records.length === 0) throw new CodecError(decoded.format, 'the body holds no readings');
  validateResolved(decoded.records, decoded.format); // the device's prefix may push a name past its limit
  return decoded;
}

// ─── The handler ────────────────────────────────────────────────────────────────────────────

export interface HttpIngestOptions {
  directory(): Promise<DeviceDirectory>;
  /** The business database, for API keys. */
  sql(): Promise<SqlClient>;
  /** Largest body accepted (the gateway's maxFrameBytes). */
  maxBodyBytes: number;
  rate: TenantRate;
  tokens: Pick<UdpTokens, 'issue'>;
  inFlight: InFlight;
  /**
   * Sends an accepted message on. A promise returned resolves when the flow has kept it (the
   * device then gets 202) and rejects with the reason it was not (503, to send again).
   */
  emit(message: IngestedMessage): Promise<void> | void;
  /** A failure that is not the client's (database down, a bug): for the node's log. */
  onInternalError?(err: Error): void;
  /** A device's body was refused as undecodable: for a Catch node. */
  onInvalidBody?(err: CodecError, device: DeviceIdentity): void;
  /** ms; 0 turns the device-key cache off. */
  credentialCacheMs?: number;
  now?: () => number;
}

export interface HttpIngest {
  /** The checks that need no body: answer with the result, when there is one, and read nothing. */
  precheck(req: IngestRequest): HttpResponse | undefined;
  /** The whole request; never rejects. */
  handle(req: IngestRequestWithBody): Promise<HttpResponse>;
}

/** The serial a request addresses, or undefined when it names none (the FIWARE route's ?i=). */
function serialOf(req: IngestRequest): string | undefined {
  const s = req.route === 'fiware' ? req.query.i : req.serial;
  return s === undefined || s === '' ? undefined : s;
}

class Unavailable extends Error {}

export function createHttpIngest(options: HttpIngestOptions): HttpIngest {
  const now = options.now ?? Date.now;
  const cacheMs = options.credentialCacheMs ?? CREDENTIAL_CACHE_MS;
  const cache = new Map<string, { device: DeviceIdentity; until: number }>();
  const cacheKey = (serial: string, key: string) => createHash('sha256').update(serial).update('\u0000').update(key).digest('base64');

  async function database<T>(what: string, fn: () => Promise<T>, who = 'the device registry'): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      options.onInternalError?.(err as Error);
      throw new Unavailable(`${who} cannot answer (${what})`);
    }
  }

  /** The tenant's rate, kept in the gateway's database with the UDP tokens. */
  const underRate = (tenant: string) => database('rate limit', () => options.rate.take(tenant), 'the gateway database');

  async function deviceByKey(serial: string, key: string): Promise<DeviceIdentity | undefined> {
    const k = cacheMs > 0 ? cacheKey(serial, key) : '';
    const hit = cacheMs > 0 ? cache.get(k) : undefined;
    if (hit && hit.until > now()) return hit.device;
    if (hit) cache.delete(k);
    const device = await database('device key', async () => authenticateDeviceKey(await options.directory(), serial, key));
    if (device && cacheMs > 0) {
      if (cache.size >= CREDENTIAL_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      cache.set(k, { device, until: now() + cacheMs });
    }
    return device;
  }

  /** The device the request may speak for, or the problem. */
  async function authenticate(req: IngestRequest, serial: string): Promise<DeviceIdentity | HttpResponse> {
    const cred = credentialsOf(req, serial);
    switch (cred.kind) {
      case 'none':
        return unauthorized(`send an X-API-Key header, or Authorization: Bearer <serial>:<key> (or Basic) with the device's key`);
      case 'malformed':
        return unauthorized(cred.reason, 'invalid_request');
      case 'api-key': {
        const verdict = await database('API key', async () => authorizeApiKey(await options.sql(), cred.key, 'telemetry'));
        if (!verdict.ok) return verdict.refusal === 'unknown' ? unauthorized(verdict.detail) : problem('forbidden', verdict.detail);
        const identity = verdict.identity;
        const found = await database('device', async () => (await options.directory()).credentials(serial));
        // A device of another tenant is answered as unknown: a tenant learns nothing of another's devices.
        if (!found || found.device.tenant !== identity.tenant) {
          return problem('unknown-device', `the API key's tenant has no device ${JSON.stringify(serial)}`, { serial });
        }
        return found.device;
      }
      case 'device': {
        if (cred.serial !== serial) {
          return problem('forbidden', `the credentials are device ${JSON.stringify(cred.serial)}'s; this request is for device ${JSON.stringify(serial)}`);
        }
        const device = await deviceByKey(serial, cred.key);
        // An unknown device and a wrong key get the same answer: no probing for serials.
        return device ?? unauthorized('unknown device or wrong key', cred.scheme === 'Bearer' ? 'invalid_token' : undefined);
      }
    }
  }

  const full = () => options.inFlight.size >= options.inFlight.max;

  function overloaded(): HttpResponse {
    return problem(
      'overloaded',
      `${options.inFlight.size} readings are waiting for the flow to complete them; try again later`,
      { retryAfter: OVERLOAD_RETRY_AFTER_S },
      { 'retry-after': String(OVERLOAD_RETRY_AFTER_S) },
    );
  }

  function precheck(req: IngestRequest): HttpResponse | undefined {
    if (req.method.toUpperCase() !== 'POST') return problem('method-not-allowed', `${req.method} is not allowed here: use POST`, {}, { allow: 'POST' });
    const serial = serialOf(req);
    if (serial === undefined) {
      return problem('invalid-request', req.route === 'fiware' ? 'the query parameter i (the device id) is required' : 'the URL names no device');
    }
    if (serial.length > MAX_SERIAL_LENGTH || /[\u0000-\u001f\u007f]/.test(serial)) {
      return problem('invalid-request', `a serial has 1 to ${MAX_SERIAL_LENGTH} characters and no control characters`);
    }
    const encoding = header(req.headers, 'content-encoding')?.trim().toLowerCase();
    if (encoding && encoding !== 'identity') {
      return problem('unsupported-media-type', `Content-Encoding ${encoding} is not accepted: send the body as it is`, { accept: ACCEPTED });
    }
    if (req.route !== 'tokens') {
      const kind = bodyKind(req.route, req.headers);
      if (typeof kind !== 'string') return kind;
    }
    const declared = declaredLength(req.headers);
    if (declared !== undefined && Number.isNaN(declared)) return problem('invalid-request', 'Content-Length is not a number', {}, CLOSE);
    if (declared !== undefined && declared > options.maxBodyBytes) {
      return tooLarge(options.maxBodyBytes, `the body is declared as ${declared} bytes; at most ${options.maxBodyBytes} are accepted`);
    }
    if (req.route !== 'tokens' && full()) return overloaded();
    return undefined;
  }

  function rateLimited(tenant: string): HttpResponse {
    const wait = Math.max(1, options.rate.retryAfter(tenant));
    return problem('rate-limited', `tenant ${JSON.stringify(tenant)} sent more than its rate allows`, { retryAfter: wait }, { 'retry-after': String(wait) });
  }

  async function telemetry(req: IngestRequestWithBody, device: DeviceIdentity, receivedAt: number): Promise<HttpResponse> {
    if (full()) return overloaded();
    if (!(await underRate(device.tenant))) return rateLimited(device.tenant);
    if (full()) return overloaded(); // filled while the rate was checked
    const kind = bodyKind(req.route, req.headers) as BodyKind; // checked by precheck
    let decoded: Decoded;
    try {
      decoded = decodeBody(kind, req.body, device.serial, receivedAt / 1000);
    } catch (err) {
      if (!(err instanceof CodecError)) throw err; // a bug, not a bad body: 500
      const e = err;
      options.onInvalidBody?.(e, device);
      return problem('invalid-body', e.message, { format: e.format, reason: e.reason, index: e.index, field: e.field });
    }
    const id = randomUUID();
    const message = deviceMessage(device, decoded, 'http', receivedAt) as IngestedMessage;
    message._msgid = id;
    const kept = options.emit(message); // a throw here is a bug: the handler answers 500
    try {
      await kept;
    } catch (err) {
      // Not kept (a node failed it, the flow took too long): nothing was promised, send it again.
      const reason = err instanceof Error ? err.message : String(err);
      return problem(
        'not-stored',
        `the reading was not stored: ${reason}`,
        { id, retryAfter: NOT_STORED_RETRY_AFTER_S },
        { 'retry-after': String(NOT_STORED_RETRY_AFTER_S) },
      );
    }
    return jsonResponse(202, { id });
  }

  function tokenCount(req: IngestRequestWithBody): number | HttpResponse {
    let raw: unknown = req.query.count;
    if (req.body.length > 0) {
      const media = parseContentType(header(req.headers, 'content-type') ?? '');
      if (media?.type !== 'application/json') {
        return problem('unsupported-media-type', 'a tokens request has no body, or a JSON object {"count": n}', { accept: ['application/json'] });
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(req.body.toString('utf8'));
      } catch (err) {
        return problem('invalid-body', `not JSON: ${(err as Error).message}`, { format: 'json' });
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        return problem('invalid-body', 'expected a JSON object {"count": n}', { format: 'json' });
      if ('count' in parsed) raw = (parsed as { count: unknown }).count;
    }
    if (raw === undefined) return 1;
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{1,4}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > MAX_TOKENS_PER_REQUEST) {
      return problem('invalid-request', `count must be an integer from 1 to ${MAX_TOKENS_PER_REQUEST}`, { field: 'count' });
    }
    return n;
  }

  async function tokens(req: IngestRequestWithBody, device: DeviceIdentity): Promise<HttpResponse> {
    const count = tokenCount(req);
    if (typeof count !== 'number') return count;
    if (!(await underRate(device.tenant))) return rateLimited(device.tenant);
    const issued = await database('UDP tokens', () => options.tokens.issue(device, count), 'the gateway database');
    const expiresAt = issued[0].expiresAt;
    return jsonResponse(
      200,
      {
        tokens: issued.map((t) => t.token.toString('base64')),
        expiresAt: new Date(expiresAt).toISOString(),
        expiresIn: Math.max(0, Math.floor((expiresAt - now()) / 1000)),
      },
      { 'cache-control': 'no-store' },
    );
  }

  async function handle(req: IngestRequestWithBody): Promise<HttpResponse> {
    try {
      const receivedAt = now();
      const early = precheck(req);
      if (early) return early;
      if (req.body.length > options.maxBodyBytes) return tooLarge(options.maxBodyBytes, `the body is more than ${options.maxBodyBytes} bytes`);
      const serial = serialOf(req)!;
      const device = await authenticate(req, serial);
      if (!('tenant' in device)) return device;
      return req.route === 'tokens' ? await tokens(req, device) : await telemetry(req, device, receivedAt);
    } catch (err) {
      if (err instanceof Unavailable) {
        return problem('unavailable', err.message, { retryAfter: 5 }, { 'retry-after': '5' });
      }
      options.onInternalError?.(err as Error);
      return problem('internal-error', 'the request could not be handled; the operator has the details');
    }
  }

  return {
    precheck(req) {
      try {
        return precheck(req);
      } catch (err) {
        options.onInternalError?.(err as Error);
        return problem('internal-error', 'the request could not be handled; the operator has the details');
      }
    },
    handle,
  };
}
