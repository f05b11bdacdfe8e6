/**
 * The command endpoint for the central system (docs/protocol.md, "Commands"), framework-free like
 * http-ingest.ts: POST <path>/:serial/commands with a tenant API key (X-API-Key, scope
 * `commands`) and the JSON body {name, params, timeoutMs?}. The request is held until the device
 * answers (200 {id, result}) or the timeout (504); 202 {id, status: 'queued', expiresAt} when the
 * device is offline and the command was queued; 400 for a body that is not JSON or not such an
 * object; 401 no or wrong key; 403 a key without the scope; 404 unknown device. Errors as
 * problem+json. The node file (nodes/devices/command.ts) mounts it and reads the body.
 */
import type { SqlClient } from '../db/sql';
import { authorizeApiKey } from '../auth/api-key-store';
import { CommandError, type CommandRouter } from '../devices/commands';
import { jsonResponse, problem, type HttpResponse, type ProblemSlug } from './problem';

/** The longest a caller may ask to wait, HTTP or flow. */
export const MAX_COMMAND_TIMEOUT_MS = 600_000;

const SLUGS: Record<string, ProblemSlug> = {
  timeout: 'command-timeout',
  refused: 'command-refused',
  'queue-full': 'command-queue-full',
  expired: 'command-timeout',
  offline: 'device-offline',
  'unknown-device': 'unknown-device',
  invalid: 'invalid-request',
  closed: 'unavailable',
};

/** The problem answering a CommandError. */
export function commandProblem(err: CommandError): HttpResponse {
  return problem(SLUGS[err.code] ?? 'internal-error', err.message, { commandId: err.commandId });
}

export interface CommandRequest {
  method: string;
  serial: string;
  /** Header names in lower case, as Node's http module gives them. */
  headers: Record<string, string | string[] | undefined>;
  /** Reads the body (bounded), or gives the answer refusing it; called only once the key is accepted. */
  body(): Promise<Buffer | HttpResponse>;
  /** Calls listener when the caller hangs up before the answer. */
  onHangUp(listener: () => void): void;
}

export interface CommandEndpointOptions {
  router: Pick<CommandRouter, 'send' | 'abandon'>;
  sql(): Promise<SqlClient>;
  /** The wait for an answer when the body names none. */
  timeoutMs: number;
  queueIfOffline: boolean;
  expiresInMs: number;
  /** A command was answered. */
  onAnswered?(): void;
  /** A command failed after it was sent (timeout, refusal, full queue...). */
  onFailed?(): void;
}

export interface CommandEndpoint {
  /** Rejects only on an internal error (the database cannot answer): the caller answers 500. */
  handle(req: CommandRequest): Promise<HttpResponse>;
  /** Answers held requests and later ones 503. */
  close(reason: string): void;
}

const API_KEY_CHALLENGE = { 'www-authenticate': 'ApiKey header="X-API-Key"' };

/** The command a body asks for, or the 400 answer. */
export function parseCommandBody(body: Buffer, defaultTimeoutMs: number): { name: string; params: unknown; timeoutMs: number } | HttpResponse {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return problem('invalid-body', `the body is not JSON: ${(err as Error).message}`);
  }
  const b = parsed as { name?: unknown; params?: unknown; timeoutMs?: unknown } | null;
  if (b === null || typeof b !== 'object' || Array.isArray(b) || typeof b.name !== 'string' || b.name === '') {
    return problem('invalid-request', 'the body is a JSON object {name, params, timeoutMs?} with the command name');
  }
  let timeoutMs = defaultTimeoutMs;
  if (b.timeoutMs !== undefined) {
    if (typeof b.timeoutMs !== 'number' || !Number.isFinite(b.timeoutMs) || b.timeoutMs <= 0)
      return problem('invalid-request', 'timeoutMs must be a positive number');
    timeoutMs = Math.min(MAX_COMMAND_TIMEOUT_MS, Math.round(b.timeoutMs));
  }
  return { name: b.name, params: b.params, timeoutMs };
}

export function createCommandEndpoint(options: CommandEndpointOptions): CommandEndpoint {
  const { router } = options;
  const held = new Set<string>();
  let closed = false;

  async function handle(req: CommandRequest): Promise<HttpResponse> {
    if (req.method !== 'POST') return problem('method-not-allowed', 'only POST', {}, { allow: 'POST' });
    if (closed) return problem('unavailable', 'the endpoint is stopping', { retryAfter: 5 }, { 'retry-after': '5' });
    const key = req.headers['x-api-key'];
    if (typeof key !== 'string' || key === '') return problem('unauthorized', 'send the tenant API key in X-API-Key', {}, API_KEY_CHALLENGE);
    const verdict = await authorizeApiKey(await options.sql(), key, 'commands');
    if (!verdict.ok)
      return verdict.refusal === 'unknown' ? problem('unauthorized', verdict.detail, {}, API_KEY_CHALLENGE) : problem('forbidden', verdict.detail);
    const body = await req.body();
    if (!Buffer.isBuffer(body)) return body;
    const command = parseCommandBody(body, options.timeoutMs);
    if ('status' in command) return command;
    try {
      const ticket = await router.send(
        verdict.identity.tenant,
        req.serial,
        { name: command.name, params: command.params },
        { timeoutMs: command.timeoutMs, queueIfOffline: options.queueIfOffline, expiresInMs: options.expiresInMs },
      );
      if (ticket.queued) {
        router.abandon(ticket.id); // no one holds an HTTP request for it; the store records its outcome
        return jsonResponse(202, { id: ticket.id, status: 'queued', expiresAt: new Date(ticket.expiresAt!).toISOString() });
      }
      held.add(ticket.id);
      // The caller hung up: stop waiting (the device's answer, if any, is then refused).
      req.onHangUp(() => router.abandon(ticket.id));
      try {
        const result = await ticket.answer;
        options.onAnswered?.();
        return jsonResponse(200, { id: ticket.id, result });
      } finally {
        held.delete(ticket.id);
      }
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      if (err.code !== 'unknown-device' && err.code !== 'invalid') options.onFailed?.();
      return commandProblem(err);
    }
  }

  return {
    handle,
    close(reason) {
      closed = true;
      for (const id of held) router.abandon(id, reason);
      held.clear();
    },
  };
}
