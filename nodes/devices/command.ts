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
 * Over HTTP (optional Path): POST <path>/:serial/commands for the central system, handled by
 * nodes/core/protocol/http-commands.ts; this file mounts the route and reads the body.
 */
import type { ServerResponse } from 'node:http';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { commandFromMessage, deviceFromMessage } from '../core/devices/command-message';
import { CommandError, type CommandSpec } from '../core/devices/commands';
import { createCommandEndpoint, MAX_COMMAND_TIMEOUT_MS } from '../core/protocol/http-commands';
import { readBody } from '../core/protocol/http-ingest';
import { problem } from '../core/protocol/problem';
import { gatewayOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { boolField, intField } from '../shared/fields';
import { cleanPath, nodeRoutes, preParsed, reply, type RouteRequest } from '../shared/http-routes';

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

const MAX_TIMEOUT_MS = MAX_COMMAND_TIMEOUT_MS;

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
        status.soon();
        msg.reason = err instanceof CommandError ? err.code : 'refused';
        done(new Error(`conflux-command: ${err.message}`));
      };
      router.send(target.tenant, target.serial, command, { timeoutMs: wait, queueIfOffline, expiresInMs }).then((ticket) => {
        msg.commandId = ticket.id;
        mine.add(ticket.id);
        status.soon();
        ticket.answer.then(
          (result) => {
            mine.delete(ticket.id);
            if (closed) return done();
            answered++;
            status.soon();
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
    let base = cleanPath(def.path, '');
    if (base === undefined) {
      node.error(`conflux-command: "${def.path}" is not a plain path like /api/devices`);
      base = '';
    }

    const endpoint = createCommandEndpoint({
      router,
      sql: () => gateway.database.sql(),
      timeoutMs,
      queueIfOffline,
      expiresInMs,
      onAnswered: () => answered++,
      onFailed: () => failed++,
    });

    if (base !== '') {
      const handler = (req: RouteRequest, res: ServerResponse) => {
        const request = {
          method: req.method ?? 'GET',
          serial: req.params?.serial ?? '',
          headers: req.headers,
          // A body another middleware already read is taken as it is; an empty one is not JSON (400).
          body: async () =>
            req.readableEnded
              ? (preParsed(req.body) ?? Buffer.alloc(0))
              : readBody(req, req.headers, gateway.limits.maxFrameBytes, gateway.limits.idleTimeoutMs).then((r) => (r.ok ? r.body : r.response)),
          onHangUp: (listener: () => void) =>
            res.once('close', () => {
              if (!res.writableEnded) listener();
            }),
        };
        endpoint.handle(request).then(
          (response) => {
            status.soon();
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
      endpoint.close('the command node is stopping');
      for (const id of mine) router.abandon(id, 'the command node is stopping');
      mine.clear();
      routes.unmount();
      node.status({});
      done();
    });
  }
  RED.nodes.registerType('conflux-command', CommandNode);
};
