/**
 * What an HTTP endpoint answers when the framework under it fails before or around our handler:
 * a malformed percent-encoding in the path, a body parser's refusal, or a fault. Always a problem
 * document (problem.ts) that names no file, stack or internal message, and one short log line
 * at most, however often the same bad request comes. Framework-free.
 */
import { type HttpResponse, problem } from './problem';

/** The parts of an error express, body-parser and our handlers set. */
interface HttpishError {
  name?: unknown;
  message?: unknown;
  status?: unknown;
  statusCode?: unknown;
  type?: unknown;
}

export interface ErrorAnswer {
  response: HttpResponse;
  /** One short line for the log: the kind of failure, never a stack or a path. */
  summary: string;
  /** True for faults (5xx) the operator must look at; false for a client's bad request. */
  fault: boolean;
}

function statusOf(e: HttpishError): number | undefined {
  const s = typeof e.status === 'number' ? e.status : e.statusCode;
  return typeof s === 'number' && Number.isInteger(s) && s >= 400 && s <= 599 ? s : undefined;
}

/** The problem document for an error that reached an endpoint's error handler. */
export function errorAnswer(err: unknown): ErrorAnswer {
  const e = (typeof err === 'object' && err !== null ? err : {}) as HttpishError;
  const status = statusOf(e);
  if (e.name === 'URIError' || (typeof e.message === 'string' && e.message.startsWith('Failed to decode param'))) {
    return client(problem('invalid-request', 'the URL holds a malformed percent-encoding'), 'malformed percent-encoding in the URL');
  }
  switch (e.type) {
    case 'entity.too.large':
      return client(problem('body-too-large', 'the body is larger than this endpoint accepts'), 'body too large');
    case 'entity.parse.failed':
      return client(problem('invalid-body', 'the body cannot be parsed'), 'unparsable body');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return client(problem('unsupported-media-type', 'the body has an unsupported encoding or charset'), 'unsupported body encoding');
    case 'request.aborted':
      return client(problem('invalid-request', 'the body was cut short'), 'request aborted');
  }
  if (status !== undefined && status < 500) {
    const slug =
      status === 404
        ? 'not-found'
        : status === 405
          ? 'method-not-allowed'
          : status === 413
            ? 'body-too-large'
            : status === 415
              ? 'unsupported-media-type'
              : 'invalid-request';
    return client(problem(slug), `client error ${status}`);
  }
  const name = typeof e.name === 'string' && /^[A-Za-z]{1,40}$/.test(e.name) ? e.name : 'error';
  return { response: problem('internal-error'), summary: `internal error (${name})`, fault: true };
}

function client(response: HttpResponse, summary: string): ErrorAnswer {
  return { response, summary, fault: false };
}

/** The answer for a path nothing serves. */
export function notFound(): HttpResponse {
  return problem('not-found', 'nothing is served at this path');
}

/**
 * At most one log line per interval for each kind of line; the next one says how many were left
 * out. A flood of bad requests costs a few lines a minute, not one (or fifteen) per request.
 */
export class LogThrottle {
  private readonly last = new Map<string, { at: number; skipped: number }>();

  constructor(
    private readonly log: (line: string) => void,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  note(kind: string, line: string): void {
    const t = this.now();
    const entry = this.last.get(kind);
    if (entry && t - entry.at < this.intervalMs) {
      entry.skipped++;
      return;
    }
    const skipped = entry?.skipped ?? 0;
    this.last.set(kind, { at: t, skipped: 0 });
    if (this.last.size > 1000) this.last.delete(this.last.keys().next().value as string); // bounded
    this.log(skipped > 0 ? `${line} (and ${skipped} more like it since the last report)` : line);
  }
}
