/**
 * Routes a node serves on Node-RED's HTTP server (RED.httpNode, an express app), and removes on
 * close — as the core `http in` node does, for express 4 and 5. A path already served by another
 * Conflux node is refused, not silently shadowed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeAPI } from 'node-red';
import type { HttpResponse } from '../core/protocol/problem';
import { textField } from './fields';

export type RouteRequest = IncomingMessage & { params?: Record<string, string>; body?: unknown };
type Handler = (req: RouteRequest, res: ServerResponse) => void;

interface ExpressApp {
  route(path: string): { all(handler: Handler): unknown };
  _router?: { stack: Array<{ route?: unknown }> };
  router?: { stack: Array<{ route?: unknown }> };
}

const PATH = /^(\/[A-Za-z0-9._~-]+)+$/;

/** Paths served by Conflux nodes, with the node serving each. */
const mounted = new Map<string, string>();

/** '/devices/' → '/devices'; undefined when not a plain path of letters, digits and . _ ~ -. */
export function cleanPath(value: unknown, fallback: string): string | undefined {
  let p = textField(value) || fallback;
  if (p === '') return '';
  if (!p.startsWith('/')) p = `/${p}`;
  p = p.replace(/\/+$/, '');
  return PATH.test(p) ? p : undefined;
}

export function reply(res: ServerResponse, response: HttpResponse): void {
  if (res.headersSent || res.writableEnded) return;
  res.writeHead(response.status, response.headers);
  res.end(response.body);
}

export interface NodeRoutes {
  /** Serves path (every method: the handler answers 405 itself where it must); throws when another node has it. */
  mount(path: string, handler: Handler): void;
  /** Removes every route this node mounted. */
  unmount(): void;
}

export function nodeRoutes(RED: NodeAPI, nodeId: string): NodeRoutes {
  const app = RED.httpNode as unknown as ExpressApp | undefined;
  const routes: unknown[] = [];
  const paths: string[] = [];
  return {
    mount(path, handler) {
      if (!app) throw new Error('Node-RED serves no HTTP nodes here (httpNodeRoot is off)');
      const key = path.toLowerCase();
      const owner = mounted.get(key);
      if (owner !== undefined && owner !== nodeId) throw new Error(`${path} is already served by node ${owner}`);
      mounted.set(key, nodeId);
      paths.push(key);
      const route = app.route(path);
      route.all(handler);
      routes.push(route);
    },
    unmount() {
      const stack = app ? ((app._router ?? app.router)?.stack ?? []) : [];
      for (let i = stack.length - 1; i >= 0; i--) if (stack[i].route !== undefined && routes.includes(stack[i].route)) stack.splice(i, 1);
      for (const p of paths) if (mounted.get(p) === nodeId) mounted.delete(p);
      routes.length = 0;
      paths.length = 0;
    },
  };
}
