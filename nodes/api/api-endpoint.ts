/**
 * conflux-api-endpoint: an integrator's own endpoint in the REST API (docs/api.md), like an
 * `http in` but on the API's key auth, versions, errors, quotas and OpenAPI document, with the
 * request and response schemas given here. A request that passes the API's checks (and the
 * request schema) leaves as a message; the flow answers it with the core `http response` node.
 *
 * msg.payload   the body, property names lower-cased     msg.req.params / msg.req.query
 * msg.api       { version, tenant, keyId, scopes, correlationId }
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { customOperation, parseEndpoint, responseCollector, type EndpointFields } from '../core/api/endpoint';
import { ApiError } from '../core/api/operation';
import { intField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import type { ApiConfigNode } from './api-config';

interface ApiEndpointDef extends NodeDef, EndpointFields {
  api?: string;
  timeout?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function ApiEndpointNode(this: Node, def: ApiEndpointDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const api = def.api ? (RED.nodes.getNode(def.api) as ApiConfigNode | null) : null;
    const fail = (text: string, reason: string) => {
      node.status({ fill: 'red', shape: 'ring', text: text.slice(0, 120) });
      node.error(`conflux-api-endpoint: ${reason}`);
    };
    if (!api) return fail(t('conflux.status.noConfig', { type: 'conflux-api' }), 'no conflux-api configured');
    const timeoutMs = intField(def.timeout, 30, 1, 3600) * 1000;
    let answered = 0;
    let failed = 0;
    let inFlight = 0;
    const status = throttledStatus(node, () => ({
      fill: failed > 0 ? 'yellow' : 'green',
      shape: answered > 0 ? 'dot' : 'ring',
      text: [
        t('api-endpoint.status.answered', { n: answered }),
        ...(inFlight > 0 ? [t('conflux.status.inFlight', { n: inFlight })] : []),
        ...(failed > 0 ? [t('conflux.status.failed', { n: failed })] : []),
      ].join(', '),
    }));
    try {
      const spec = parseEndpoint(def);
      api.serve(node, [
        customOperation(node.id, spec, async (ctx) => {
          const { res, answer } = responseCollector();
          const msg = {
            payload: ctx.body ?? {},
            req: { method: spec.method.toUpperCase(), params: ctx.params, query: ctx.query },
            res,
            api: {
              version: ctx.version,
              tenant: ctx.identity.tenant,
              keyId: String(ctx.identity.id),
              scopes: ctx.identity.scopes,
              correlationId: ctx.correlationId,
            },
          };
          inFlight++;
          status.soon();
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new ApiError('unavailable', `the endpoint's flow did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
          });
          try {
            node.send(msg as unknown as NodeMessage);
            const result = await Promise.race([answer, timeout]);
            answered++;
            return result;
          } catch (err) {
            failed++;
            throw err;
          } finally {
            clearTimeout(timer);
            inFlight--;
            status.soon();
          }
        }),
      ]);
    } catch (err) {
      return fail(t('conflux.status.invalidConfig', { reason: (err as Error).message }), (err as Error).message);
    }
    status.now();
    node.on('close', () => {
      api.unserve(node);
      status.close();
    });
  }
  RED.nodes.registerType('conflux-api-endpoint', ApiEndpointNode);
};
