/**
 * A third party's webhook, from request to inbox (docs/webhooks-in.md), framework-free: the
 * conflux-webhook-in node hands in a request (method, headers, then the bounded body) and writes
 * back the answer. Checks, in order, each with its problem type:
 *
 *   method POST (405), Content-Encoding identity and a Content-Type the codec takes (415),
 *   declared Content-Length (413, before any byte is read)           — precheck, no body
 *   body size (413), credentials (401/403), webhook-id (400), decoding (400 with the codec's
 *   reason), storing in the inbox (503 when the database cannot)     — handle
 *
 * The answer is 2xx only once the event is in the inbox: 202 {"id", "status": "stored"}, or
 * 200 {"id", "status": "duplicate"} for an id received before. Never a stack trace: a fault is a
 * 500 problem, and the operator's log has the details.
 */
import { CodecError } from '../errors';
import { declaredLength } from '../protocol/http-ingest';
import { jsonResponse, problem, type HttpResponse } from '../protocol/problem';
import { DatabaseUnavailable, header, type Authenticate, type Headers } from './in-auth';
import type { BodyDecoder } from './in-decode';
import { bodyId, keptHeaders, storedWebhook, validWebhookId, type StoreOutcome, type StoredWebhook } from './in-inbox';

export interface ReceiverRequest {
  method: string;
  /** Header names in lower case, as Node's http module gives them. */
  headers: Headers;
}

export interface ReceiverRequestWithBody extends ReceiverRequest {
  body: Buffer;
}

export interface ReceiverOptions {
  authenticate: Authenticate;
  decoder: BodyDecoder;
  maxBodyBytes: number;
  /** Stores the event once; throws when the database cannot (the sender gets 503 and retries). */
  store(tenant: string, messageId: string, stored: StoredWebhook): Promise<StoreOutcome>;
  /** A failure that is not the sender's: for the node's log. */
  onInternalError?(err: Error): void;
  /** A body that did not decode: for a Catch node. */
  onInvalidBody?(err: CodecError, tenant: string, messageId: string): void;
  now?: () => number;
}

export interface Receiver {
  /** The checks that need no body: the answer when there is one (then read nothing). */
  precheck(req: ReceiverRequest): HttpResponse | undefined;
  /** The whole request; never rejects. */
  handle(req: ReceiverRequestWithBody): Promise<HttpResponse>;
}

/** Seconds a sender should wait after a 503. */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

const CLOSE = { connection: 'close' };

export function createReceiver(options: ReceiverOptions): Receiver {
  const now = options.now ?? Date.now;
  const { decoder, maxBodyBytes } = options;
  const accept = { accept: decoder.accepts };
  const acceptPost = { 'accept-post': decoder.accepts.join(', ') };

  function tooLarge(detail: string): HttpResponse {
    return problem('body-too-large', detail, { limit: maxBodyBytes }, CLOSE);
  }

  function precheck(req: ReceiverRequest): HttpResponse | undefined {
    if (req.method.toUpperCase() !== 'POST') return problem('method-not-allowed', `${req.method} is not allowed here: use POST`, {}, { allow: 'POST' });
    const encoding = header(req.headers, 'content-encoding')?.trim().toLowerCase();
    if (encoding && encoding !== 'identity') {
      return problem('unsupported-media-type', `Content-Encoding ${encoding} is not accepted: send the body as it is`, accept, acceptPost);
    }
    const refusal = decoder.mediaRefusal(header(req.headers, 'content-type'));
    if (refusal) return problem('unsupported-media-type', refusal, accept, acceptPost);
    const declared = declaredLength(req.headers);
    if (declared !== undefined && Number.isNaN(declared)) return problem('invalid-request', 'Content-Length is not a number', {}, CLOSE);
    if (declared !== undefined && declared > maxBodyBytes) return tooLarge(`the body is declared as ${declared} bytes; at most ${maxBodyBytes} are accepted`);
    return undefined;
  }

  function unavailable(detail: string): HttpResponse {
    return problem('unavailable', detail, { retryAfter: UNAVAILABLE_RETRY_AFTER_S }, { 'retry-after': String(UNAVAILABLE_RETRY_AFTER_S) });
  }

  async function receive(req: ReceiverRequestWithBody): Promise<HttpResponse> {
    const receivedAt = now();
    const early = precheck(req);
    if (early) return early;
    if (req.body.length > maxBodyBytes) return tooLarge(`the body is more than ${maxBodyBytes} bytes`);
    const who = await options.authenticate({ headers: req.headers, body: req.body });
    if (!who.ok) return who.response;
    const given = header(req.headers, 'webhook-id');
    if (given !== undefined && !validWebhookId(given)) {
      return problem('invalid-request', 'webhook-id must be 1 to 256 visible ASCII characters', { field: 'webhook-id' });
    }
    const messageId = given ?? bodyId(req.body);
    let decoded;
    try {
      decoded = await decoder.decode(req.body, header(req.headers, 'content-type'), who.tenant, receivedAt);
    } catch (err) {
      if (!(err instanceof CodecError)) throw err; // a bug, not a bad body: 500
      options.onInvalidBody?.(err, who.tenant, messageId);
      return problem('invalid-body', err.message, { format: err.format, reason: err.reason, index: err.index, field: err.field, id: messageId });
    }
    const stamp = header(req.headers, 'webhook-timestamp');
    const timestamp = stamp !== undefined && /^\d{1,12}$/.test(stamp) ? Number(stamp) : undefined;
    const stored = storedWebhook(decoded, receivedAt, keptHeaders(req.headers), timestamp);
    let outcome: StoreOutcome;
    try {
      outcome = await options.store(who.tenant, messageId, stored);
    } catch (err) {
      options.onInternalError?.(err as Error);
      return unavailable('the event could not be stored: the inbox is unavailable; send it again later');
    }
    return outcome === 'stored' ? jsonResponse(202, { id: messageId, status: 'stored' }) : jsonResponse(200, { id: messageId, status: 'duplicate' });
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
    async handle(req) {
      try {
        return await receive(req);
      } catch (err) {
        if (err instanceof DatabaseUnavailable) {
          options.onInternalError?.(err);
          return unavailable('the credentials cannot be checked now: the database is unavailable');
        }
        options.onInternalError?.(err as Error);
        return problem('internal-error', 'the request could not be handled; the operator has the details');
      }
    },
  };
}
