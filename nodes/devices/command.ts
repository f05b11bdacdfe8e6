/**
 * conflux-command: a command from the central system to a device (docs/protocol.md, "Commands"),
 * over the gateway's CommandRouter (nodes/core/devices/commands.ts): sent to the device's live
 * TCP or MQTT session and answered with the same correlation id, or queued (bounded, persisted,
 * with an expiry) while the device is offline and sent when it connects again.
 *
 * From a flow: an input message names the device and the command; the device's answer leaves on
 * the output (msg.payload); a timeout, a refusal, a full queue or an expiry goes to done(err) for
 * a Catch node, with msg.reason and msg.commandId.
 *
 * Over HTTP (optional Path): POST <path>/:serial/commands with a tenant API key (X-API-Key) and
 * {name, params, timeoutMs?}; the request is held until the answer (200 {id, result}) or the
 * timeout (504); 202 {id, status: 'queued', expiresAt} when the device is offline and the command
 * was queued; 404 unknown device; 400 bad body; 401 no or wrong key. Errors as problem+json.
 */
import type { ServerResponse } from 'node:http';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { CommandError, commandFromMessage, deviceFromMessage, type CommandSpec } from '../core/devices/commands';
import { readBody } from '../core/protocol/http-ingest';
import { jsonResponse, problem, type HttpResponse, type ProblemSlug } from '../core/protocol/problem';
import { authenticateApiKey } from '../core/stores/business';
import { gatewayOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { boolField, intField } from '../shared/fields';
import { cleanPath, nodeRoutes, reply, type RouteRequest } from '../shared/http-routes';

interface CommandDef extends NodeDef {
  gateway?: string;
  /** Seconds to wait for the device's answer. */
  timeout?: string;
  /** Queue commands for an offline device. */
  queue?: boolean | string;
  /** Seconds a queued command waits for its device. */
  expiry?: string;
  /** Optional HTTP path for the central system: POST <path>/:serial/commands. */
  path?: string;
}

type CommandMessage = NodeMessage & {
  command?: unknown;
  device?: { tenant?: unknown; id?: unknown };
  tenant?: unknown;
  serial?: unknown;
  timeout?: unknown;
  reason?: string;
  commandId?: string;
};

/** The longest a caller may ask to wait, HTTP or flow. */
const MAX_TIMEOUT_MS = 600_000;
/** An API key with scopes needs one of these to command devices (none: any). */
const COMMAND_SCOPES = ['commands', 'devices:write', 'write', '*'];

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

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function CommandNode(this: Node, def: CommandDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const gateway = gatewayOf(RED, t, node, def.gateway);
    if (!gateway) return;
    const router = gateway.commands;
    const timeoutMs = intField(def.timeout, 30, 1, MAX_TIMEOUT_MS / 1000) * 1000;
    const queueIfOffline = boolField(def.queue, true);
    const expiresInMs = intField(def.expiry, 86_400, 1, 30 * 86_400) * 1000;
    const mine = new Set<string>();
    let answered = 0;
    let failed = 0;
    let closed = false;

    const status = throttledStatus(node, () => {
      const parts = [t('conflux.status.waiting', { n: mine.size }), t('command.status.answered', { n: answered })];
      if (failed > 0) parts.push(t('conflux.status.failed', { n: failed }));
      return { fill: failed > 0 ? 'yellow' : 'green', shape: mine.size > 0 ? 'dot' : 'ring', text: parts.join(', ') };
    });
    const statusSoon = () => status.soon();

    node.on('input', (input, send, done) => {
      const msg = input as CommandMessage;
      let command: CommandSpec;
      let target: { tenant: string; serial: string };
      let wait = timeoutMs;
      try {
        command = commandFromMessage(msg);
        target = deviceFromMessage(msg);
        if (msg.timeout !== undefined) {
          const t = Number(msg.timeout);
          if (!Number.isFinite(t) || t <= 0) throw new CommandError('invalid', 'msg.timeout must be a positive number of milliseconds');
          wait = Math.min(MAX_TIMEOUT_MS, Math.round(t));
        }
      } catch (err) {
        msg.reason = (err as CommandError).code ?? 'invalid';
        return done(err as Error);
      }
      const fail = (err: Error) => {
        if (closed) return done();
        failed++;
        statusSoon();
        msg.reason = err instanceof CommandError ? err.code : 'refused';
        done(new Error(`conflux-command: ${err.message}`));
      };
      router.send(target.tenant, target.serial, command, { timeoutMs: wait, queueIfOffline, expiresInMs }).then((ticket) => {
        msg.commandId = ticket.id;
        mine.add(ticket.id);
        statusSoon();
        ticket.answer.then(
          (result) => {
            mine.delete(ticket.id);
            if (closed) return done();
            answered++;
            statusSoon();
            send({ ...msg, payload: result, command: { id: ticket.id, ...command }, device: { tenant: target.tenant, id: target.serial } } as NodeMessage);
            done();
          },
          (err: Error) => {
            mine.delete(ticket.id);
            fail(err);
          },
        );
      }, fail);
    });

    // ── The HTTP endpoint for the central system ──
    const routes = nodeRoutes(RED, node.id);
    const held = new Set<string>();
    let base = cleanPath(def.path, '');
    if (base === undefined) {
      node.error(`conflux-command: "${def.path}" is not a plain path like /api/devices`);
      base = '';
    }

    async function serve(req: RouteRequest, res: ServerResponse): Promise<HttpResponse> {
      if (closed) return problem('unavailable', 'the endpoint is stopping', { retryAfter: 5 }, { 'retry-after': '5' });
      const key = req.headers['x-api-key'];
      if (typeof key !== 'string' || key === '') return problem('unauthorized', 'send the tenant API key in X-API-Key', {}, { 'www-authenticate': 'ApiKey header="X-API-Key"' });
      const sql = await gateway!.database.sql();
      const identity = await authenticateApiKey(sql, key);
      if (!identity) return problem('unauthorized', 'the API key is unknown, revoked or expired', {}, { 'www-authenticate': 'ApiKey header="X-API-Key"' });
      if (identity.scopes.length > 0 && !identity.scopes.some((s) => COMMAND_SCOPES.includes(s))) {
        return problem('forbidden', `the API key's scopes (${identity.scopes.join(', ')}) include none of ${COMMAND_SCOPES.join(', ')}`);
      }
      const serial = req.params?.serial ?? '';
      let body: unknown;
      if (req.readableEnded) body = typeof req.body === 'string' || Buffer.isBuffer(req.body) ? JSON.parse(String(req.body)) : req.body;
      else {
        const read = await readBody(req, req.headers, gateway!.limits.maxFrameBytes, gateway!.limits.idleTimeoutMs);
        if (!read.ok) return read.response;
        try {
          body = JSON.parse(read.body.toString('utf8'));
        } catch (err) {
          return problem('invalid-body', `the body is not JSON: ${(err as Error).message}`);
        }
      }
      const b = body as { name?: unknown; params?: unknown; timeoutMs?: unknown } | null;
      if (b === null || typeof b !== 'object' || Array.isArray(b) || typeof b.name !== 'string' || b.name === '') {
        return problem('invalid-request', 'the body is a JSON object {name, params, timeoutMs?} with the command name');
      }
      let wait = timeoutMs;
      if (b.timeoutMs !== undefined) {
        if (typeof b.timeoutMs !== 'number' || !Number.isFinite(b.timeoutMs) || b.timeoutMs <= 0) return problem('invalid-request', 'timeoutMs must be a positive number');
        wait = Math.min(MAX_TIMEOUT_MS, Math.round(b.timeoutMs));
      }
      try {
        const ticket = await router.send(identity.tenant, serial, { name: b.name, params: b.params }, { timeoutMs: wait, queueIfOffline, expiresInMs });
        if (ticket.queued) {
          router.abandon(ticket.id); // no one holds an HTTP request for it; the store records its outcome
          return jsonResponse(202, { id: ticket.id, status: 'queued', expiresAt: new Date(ticket.expiresAt!).toISOString() });
        }
        held.add(ticket.id);
        // The caller hung up: stop waiting (the device's answer, if any, is then refused).
        res.once('close', () => {
          if (!res.writableEnded) router.abandon(ticket.id);
        });
        try {
          const result = await ticket.answer;
          answered++;
          return jsonResponse(200, { id: ticket.id, result });
        } finally {
          held.delete(ticket.id);
        }
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        if (err.code !== 'unknown-device' && err.code !== 'invalid') failed++;
        return problem(SLUGS[err.code] ?? 'internal-error', err.message, { commandId: err.commandId });
      }
    }

    if (base !== '') {
      const handler = (req: RouteRequest, res: ServerResponse) => {
        if (req.method !== 'POST') return reply(res, problem('method-not-allowed', 'only POST', {}, { allow: 'POST' }));
        serve(req, res).then(
          (response) => {
            statusSoon();
            reply(res, response);
          },
          (err: Error) => {
            node.error(`conflux-command: ${err.message}`);
            reply(res, problem('internal-error', 'the request could not be handled; the operator has the details'));
          },
        );
      };
      try {
        routes.mount(`${base}/:serial/commands`, handler);
      } catch (err) {
        node.error(`conflux-command: ${(err as Error).message}`);
        base = '';
      }
    }

    node.status({ fill: 'green', shape: 'ring', text: base ? `POST ${base}/:serial/commands` : 'command.status.ready' });

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      status.close();
      for (const id of [...mine, ...held]) router.abandon(id, 'the command node is stopping');
      mine.clear();
      routes.unmount();
      node.status({});
      done();
    });
  }
  RED.nodes.registerType('conflux-command', CommandNode);
};
