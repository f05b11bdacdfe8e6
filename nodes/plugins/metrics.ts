/**
 * conflux-metrics, a Node-RED plugin: GET /metrics on the admin API (Prometheus text, prom-client),
 * behind the same authentication as the rest of the admin API (permission `conflux.metrics.read`,
 * which any user with "read" holds; open when the runtime has no adminAuth, as the admin API is).
 * Messages in, out and errored per Conflux node are counted with the runtime's message hooks, so
 * no node counts for itself. The series: nodes/core/metrics/metrics.ts.
 */
import type { NodeAPI } from 'node-red';
import { countNodeMessage, exposition, keepNodes } from '../core/metrics/metrics';

interface HookNode {
  id: string;
  type: string;
  name?: string;
}
interface ExpressLike {
  get(path: string, ...handlers: Array<(req: unknown, res: ResponseLike, next: () => void) => unknown>): unknown;
}
interface ResponseLike {
  writeHead(status: number, headers: Record<string, string>): ResponseLike;
  end(body: string): void;
}
type Hooks = { add(name: string, hook: (event: never) => void): void; remove(name: string): void };

const conflux = (n: HookNode | undefined): n is HookNode => n !== undefined && n.type.startsWith('conflux-');

export = function (RED: NodeAPI): void {
  const hooks = (RED as unknown as { hooks: Hooks }).hooks;
  hooks.add('onReceive.conflux-metrics', (e: { destination: { node?: HookNode } }) => {
    if (conflux(e.destination.node)) countNodeMessage(e.destination.node.id, e.destination.node.type, e.destination.node.name, 'in');
  });
  hooks.add('onSend.conflux-metrics', (events: Array<{ source: { node?: HookNode } }>) => {
    for (const e of events) if (conflux(e.source.node)) countNodeMessage(e.source.node.id, e.source.node.type, e.source.node.name, 'out');
  });
  hooks.add('onComplete.conflux-metrics', (e: { node: { node?: HookNode }; error?: unknown }) => {
    if (e.error !== undefined && conflux(e.node.node)) countNodeMessage(e.node.node.id, e.node.node.type, e.node.node.name, 'error');
  });
  // A redeploy: the series of removed nodes end.
  RED.events.on('flows:started', () => {
    const ids = new Set<string>();
    RED.nodes.eachNode((n) => void ids.add(n.id));
    keepNodes(ids);
  });

  const auth = (RED as unknown as { auth?: { needsPermission(p: string): (req: unknown, res: unknown, next: () => void) => void } }).auth;
  const guard = auth ? [auth.needsPermission('conflux.metrics.read')] : [];
  (RED.httpAdmin as unknown as ExpressLike).get('/metrics', ...guard, (_req, res) => {
    exposition().then(
      ({ contentType, text }) => res.writeHead(200, { 'content-type': contentType }).end(text),
      (err: Error) => {
        RED.log.warn(`conflux-metrics: ${err.message}`);
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('the metrics could not be collected; the log has why\n');
      },
    );
  });

  (RED as unknown as { plugins: { registerPlugin(id: string, def: object): void } }).plugins.registerPlugin('conflux-metrics', { type: 'conflux-metrics' });
};
