/**
 * Requests, device → central system (issue 4, item 7): a device's REQUEST is forwarded to the
 * central system's URL as a webhook — HTTP POST of JSON {id, device: {tenant, id}, body} with the
 * API key in X-API-Key — and the central system's answer goes back to the device as a RESPONSE
 * carrying the same id: {id, result} with the reply's JSON (or text), or {id, error} with the
 * reason (timeout, unreachable, an HTTP error status). Framework-free.
 *
 * The target is checked before each request: a URL whose host is, or resolves to, a loopback,
 * private, link-local or otherwise non-public address is refused unless allowPrivate (DESIGN.md:
 * outbound URLs are checked against private ranges unless allowed). Redirects are not followed.
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import type { DeviceIdentity } from './directory';

export interface CentralConfig {
  /** The central system's webhook URL (http or https); '' when none is configured. */
  url: string;
  /** Sent as X-API-Key when set. */
  apiKey?: string;
  /** Default 10 s. */
  timeoutMs?: number;
  /** Allow loopback and private targets (tests, a central system on the same network). */
  allowPrivate?: boolean;
  /** Largest reply accepted, in bytes. Default 64 KiB. */
  maxReplyBytes?: number;
  /** Requests forwarded and not yet answered, at most. Default 1,000. */
  maxInFlight?: number;
}

/** What goes back to the device. */
export type RequestAnswer = { id: string; result: unknown } | { id: string; error: string };

export class RequestRefusedError extends Error {
  override readonly name = 'RequestRefusedError';
}

const BLOCKED = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv6');
}

/** Whether an IP address is loopback, private, link-local, multicast or reserved. */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return BLOCKED.check(mapped[1], 'ipv4');
  const family = isIP(address);
  if (family === 0) return true;
  return BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Throws RequestRefusedError when the URL is not http(s) or (unless allowed) points at a private address. */
export async function checkTarget(url: string, allowPrivate: boolean): Promise<URL> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new RequestRefusedError(`the central system's URL is not a URL: ${url}`);
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:')
    throw new RequestRefusedError(`the central system's URL must be http or https, not ${target.protocol}`);
  if (allowPrivate) return target;
  const host = target.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(host) ? [host] : (await lookup(host, { all: true }).catch(() => [])).map((a) => a.address);
  if (addresses.length === 0) throw new RequestRefusedError(`the central system's host ${host} does not resolve`);
  if (addresses.some(isPrivateAddress))
    throw new RequestRefusedError(`the central system's host ${host} is a private or loopback address (allow private addresses on the gateway to use it)`);
  return target;
}

async function readLimited(res: Response, max: number): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) throw new Error(`the reply is larger than ${max} bytes`);
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      throw new Error(`the reply is larger than ${max} bytes`);
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks);
}

export class RequestForwarder {
  private inFlight = 0;
  private readonly aborts = new Set<AbortController>();
  private closed = false;

  constructor(private readonly config: () => CentralConfig) {}

  get pending(): number {
    return this.inFlight;
  }

  /**
   * Forwards a device's request; `answer` sends the outcome to the device. Rejects at once (and
   * calls nothing) when the request cannot be taken: no central system configured, too many in
   * flight, the gateway stopping. Once taken, resolves; `answer` is called exactly once.
   */
  forward(device: DeviceIdentity, body: Record<string, unknown> & { id: string }, answer: (a: RequestAnswer) => Promise<void> | void): Promise<void> {
    const cfg = this.config();
    if (this.closed) return Promise.reject(new RequestRefusedError('the gateway is stopping'));
    if (!cfg.url) return Promise.reject(new RequestRefusedError('no central system is configured on this gateway'));
    const max = cfg.maxInFlight ?? 1_000;
    if (this.inFlight >= max) return Promise.reject(new RequestRefusedError(`too many requests waiting for the central system (${max}); send again later`));
    this.inFlight++;
    const id = String(body.id);
    const { id: _id, ...rest } = body;
    void this.call(cfg, { id, device: { tenant: device.tenant, id: device.serial }, body: rest })
      .then(
        (result): RequestAnswer => ({ id, result }),
        (err: Error): RequestAnswer => ({ id, error: err.message }),
      )
      .then((a) => answer(a))
      .catch(() => undefined) // the session is gone: nowhere to answer
      .finally(() => this.inFlight--);
    return Promise.resolve();
  }

  /** Aborts every request in flight; their devices get an error. */
  close(): void {
    this.closed = true;
    for (const a of this.aborts) a.abort(new Error('the gateway is stopping'));
  }

  private async call(cfg: CentralConfig, webhook: unknown): Promise<unknown> {
    const timeoutMs = cfg.timeoutMs ?? 10_000;
    const target = await checkTarget(cfg.url, cfg.allowPrivate === true);
    const abort = new AbortController();
    this.aborts.add(abort);
    const signal = AbortSignal.any([abort.signal, AbortSignal.timeout(timeoutMs)]);
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
      if (cfg.apiKey) headers['x-api-key'] = cfg.apiKey;
      let res: Response;
      try {
        res = await fetch(target, { method: 'POST', headers, body: JSON.stringify(webhook), redirect: 'error', signal });
      } catch (err) {
        throw new Error(describeFailure(err, timeoutMs), { cause: err });
      }
      let raw: Buffer;
      try {
        raw = await readLimited(res, cfg.maxReplyBytes ?? 65_536);
      } catch (err) {
        throw new Error(describeFailure(err, timeoutMs), { cause: err });
      }
      const text = raw.toString('utf8');
      if (!res.ok) throw new Error(`the central system answered HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
      if (text.trim() === '') return null;
      const type = (res.headers.get('content-type') ?? '').toLowerCase();
      if (type.includes('json')) {
        try {
          return JSON.parse(text);
        } catch {
          throw new Error('the central system answered invalid JSON');
        }
      }
      return text;
    } finally {
      this.aborts.delete(abort);
    }
  }
}

function describeFailure(err: unknown, timeoutMs: number): string {
  const e = err as Error & { name?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return `the central system did not answer within ${timeoutMs} ms`;
  if (e?.name === 'AbortError') return `the request to the central system was aborted${e.message ? `: ${e.message}` : ''}`;
  const cause = e?.cause?.code ?? e?.cause?.message;
  return `the central system is unreachable${cause ? ` (${cause})` : e?.message ? ` (${e.message})` : ''}`;
}
