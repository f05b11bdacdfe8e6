/**
 * conflux-http-in: device telemetry over HTTP (docs/protocol-http.md). Adds its routes to
 * Node-RED's HTTP server (RED.httpNode, like the core `http in` node) and removes them on close:
 *
 *   POST <base>/:serial/telemetry    readings → the canonical message, answered 202 {"id"}
 *   POST <base>/:serial/tokens       single-use UDP tokens for the device
 *   POST <fiware path>?k=&i=         FIWARE's UltraLight HTTP binding (default /iot/d)
 *
 * The request handling is nodes/core/protocol/http-ingest.ts; this file reads the body (bounded
 * by the gateway's maxFrameBytes, refused with 413 as soon as it is too large), sends what the
 * core accepts and shows counts in the status.
 *
 * Acknowledgement: 202 only once the flow has finished with the reading (nodes/shared/completion.ts:
 * with the shipped flows, once it is stored); 503 with the reason when a node failed it or the
 * flow did not finish within the in-flight timeout. "Acknowledge on receipt" answers 202 as soon
 * as it is handed on. With Max in flight readings in the flow, the node answers 503 with
 * Retry-After instead of queueing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { createHttpIngest, readBody, type HttpResponse, type IngestRequest, type IngestRoute } from '../core/protocol/http-ingest';
import { problem } from '../core/protocol/problem';
import { gatewayOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { acknowledgement, trackCompletion } from '../shared/completion';
import { boolField, intField } from '../shared/fields';
import { cleanPath, nodeRoutes, preParsed, reply, type RouteRequest } from '../shared/http-routes';
import { deviceRefused } from '../core/metrics/metrics';
import { boundedReporter } from '../shared/reporter';

interface HttpInDef extends NodeDef {
  gateway?: string;
  basePath?: string;
  fiware?: boolean | string;
  fiwarePath?: string;
  maxInFlight?: string;
  inFlightTimeout?: string;
  ack?: string;
}

function queryOf(url: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const q = (url ?? '').indexOf('?');
  if (q < 0) return out;
  for (const [k, v] of new URLSearchParams(url!.slice(q + 1))) if (!(k in out)) out[k] = v;
  return out;
}

/** Whether a request announces a body (a Content-Length above 0, or a transfer coding). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function HttpInNode(this: Node, def: HttpInDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const gateway = gatewayOf(RED, t, node, def.gateway);
    if (!gateway) return;
    if ((RED.settings as { httpNodeRoot?: unknown }).httpNodeRoot === false) {
      node.status({ fill: 'red', shape: 'ring', text: 'http-in.status.disabled' });
      node.warn('conflux-http-in: httpNodeRoot is false in the settings: no HTTP endpoint can be served');
      return;
    }
    const base = cleanPath(def.basePath, '/devices');
    const fiware = boolField(def.fiware, true);
    const fiwarePath = cleanPath(def.fiwarePath, '/iot/d');
    if (!base || (fiware && !fiwarePath)) {
      node.status({ fill: 'red', shape: 'ring', text: 'http-in.status.invalidPath' });
      node.error('conflux-http-in: a path is made of /-separated parts of letters, digits and . _ ~ -');
      return;
    }

    const completion = trackCompletion(RED, node, intField(def.inFlightTimeout, 60, 1, 3600) * 1000, () => status.soon());
    const inFlight = {
      max: intField(def.maxInFlight, 1000, 1, 1_000_000),
      get size() {
        return completion.size;
      },
    };
    const ackOnReceipt = def.ack === 'receipt';

    // Counts for the status, and reports of refused bodies to a Catch node (bounded).
    let accepted = 0;
    const refused = new Map<number, number>();
    const report = boundedReporter(node);
    const status = throttledStatus(node, () => {
      const parts = [t('conflux.status.accepted', { n: accepted })];
      if (inFlight.size > 0) parts.push(t('conflux.status.inFlight', { n: inFlight.size }));
      for (const [code, n] of [...refused].sort((a, b) => a[0] - b[0])) parts.push(`${n}×${code}`);
      const busy = inFlight.size >= inFlight.max;
      return { fill: busy ? 'yellow' : 'green', shape: accepted > 0 ? 'dot' : 'ring', text: parts.join(', ') };
    });

    const limits = gateway.limits;
    const ingest = createHttpIngest({
      directory: () => gateway.directory(),
      sql: () => (gateway.database ? gateway.database.sql() : Promise.reject(new Error('the gateway names no conflux-postgres database'))),
      maxBodyBytes: limits.maxFrameBytes,
      rate: gateway.rate,
      tokens: gateway.tokens,
      inFlight,
      emit: (msg) => {
        accepted++;
        return acknowledgement(completion.send(msg as unknown as NodeMessage), ackOnReceipt);
      },
      onInternalError: (err) => {
        report(`conflux-http-in: ${err.message}`, { payload: err.message });
      },
      onInvalidBody: (err, device) => {
        report(`conflux-http-in: device ${device.serial} sent a body that cannot be decoded: ${err.message}`, {
          payload: err.message,
          device: { tenant: device.tenant, id: device.serial },
        });
      },
    });

    let closed = false;
    async function serve(route: IngestRoute, req: RouteRequest, res: ServerResponse): Promise<void> {
      let response: HttpResponse;
      try {
        const request: IngestRequest = { route, method: req.method ?? 'GET', serial: req.params?.serial, headers: req.headers, query: queryOf(req.url) };
        const early = closed ? problem('unavailable', 'the listener is stopping', { retryAfter: 5 }, { 'retry-after': '5' }) : ingest.precheck(request);
        // Answered before the body was read: close the connection rather than let Node read and discard any size of body.
        if (early && !req.readableEnded && hasBody(req)) response = { ...early, headers: { ...early.headers, connection: 'close' } };
        else response = early ?? (await withBody(request, req));
      } catch (err) {
        node.error(`conflux-http-in: ${(err as Error).message}`);
        response = problem('internal-error', 'the request could not be handled; the operator has the details');
      }
      if (response.status >= 400) {
        refused.set(response.status, (refused.get(response.status) ?? 0) + 1);
        deviceRefused('http', String(response.status));
      }
      status.soon();
      reply(res, response);
    }

    async function withBody(request: IngestRequest, req: IncomingMessage & { body?: unknown }): Promise<HttpResponse> {
      let body: Buffer;
      if (req.readableEnded) {
        // Another middleware read the body first: Node-RED's own JSON parser does when the admin
        // API and the nodes share a root (docs/operations.md says how to avoid it).
        const pre = preParsed(req.body);
        if (pre === undefined) return problem('internal-error', 'the body was consumed by another middleware before this endpoint');
        body = pre;
      } else {
        const read = await readBody(req, req.headers, limits.maxFrameBytes, limits.idleTimeoutMs);
        if (!read.ok) return read.response;
        body = read.body;
      }
      return ingest.handle({ ...request, body });
    }

    const routes = nodeRoutes(RED, node.id);
    function mount(path: string, kind: IngestRoute): void {
      try {
        routes.mount(path, (req, res) => void serve(kind, req, res));
      } catch (err) {
        node.error(`conflux-http-in: ${(err as Error).message}`);
        node.status({ fill: 'red', shape: 'ring', text: t('http-in.status.pathInUse', { path }) });
      }
    }
    mount(`${base}/:serial/telemetry`, 'telemetry');
    mount(`${base}/:serial/tokens`, 'tokens');
    if (fiware) mount(fiwarePath!, 'fiware');
    gateway.connection.add(node);
    status.now();

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      status.close();
      completion.close();
      routes.unmount();
      gateway.connection.remove(node);
      node.status({});
      done();
    });
  }
  RED.nodes.registerType('conflux-http-in', HttpInNode);
};
