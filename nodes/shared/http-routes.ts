/**
 * Routes a node serves on Node-RED's HTTP server (RED.httpNode, an express app), and removes on
 * close — as the core `http in` node does, for express 4 and 5. A path already served by another
 * Conflux node is refused, not silently shadowed.
 *
 * Errors the framework raises on our paths (a malformed percent-encoding in `:serial`, a fault)
 * never reach a route handler: one error layer, kept last in RED.httpNode's stack, answers them
 * with a problem document, in any Node-RED that loads the package (the standalone runtime has the
 * same answer for every other path).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeAPI } from 'node-red';
import { errorAnswer, LogThrottle } from '../core/protocol/http-errors';
import type { HttpResponse } from '../core/protocol/problem';
import { textField } from './fields';

export type RouteRequest = IncomingMessage & { params?: Record<string, string>; body?: unknown; path?: string };
type Handler = (req: RouteRequest, res: ServerResponse) => void;
type ErrorHandler = (err: unknown, req: RouteRequest, res: ServerResponse, next: (err?: unknown) => void) => void;

interface Layer {
  route?: unknown;
  handle?: unknown;
  regexp?: RegExp;
  matchers?: Array<(path: string) => unknown>;
}

interface ExpressApp {
  route(path: string): { all(handler: Handler): unknown };
  use(handler: ErrorHandler): unknown;
  _router?: { stack: Layer[] };
  router?: { stack: Layer[] };
}

/** Marks the express routes Conflux serves (Symbol.for: the launcher looks for it without importing this module's state). */
export const CONFLUX_ROUTE = Symbol.for('conflux.http-route');

function stackOf(app: ExpressApp | undefined): Layer[] {
  if (!app) return [];
  if (app._router) return app._router.stack;
  try {
    return app.router?.stack ?? []; // express 5
  } catch {
    return []; // express 4 before its first route: no _router yet, and app.router throws
  }
}

/** Whether a layer's path pattern matches, without decoding parameters (a malformed one still matches). */
function layerMatches(layer: Layer, path: string): boolean {
  if (layer.regexp) return layer.regexp.test(path);
  for (const m of layer.matchers ?? []) {
    try {
      if (m(path)) return true;
    } catch {
      return true; // express 5 decodes while matching: the pattern matched, a parameter did not decode
    }
  }
  return false;
}

/** True when path is one of the routes Conflux nodes serve on app (RED.httpNode). */
export function isConfluxPath(app: unknown, path: string): boolean {
  return stackOf(app as ExpressApp).some((l) => (l.route as { [CONFLUX_ROUTE]?: boolean } | undefined)?.[CONFLUX_ROUTE] === true && layerMatches(l, path));
}

/** The error layer of each express app we mounted routes on, and the throttle of its log lines. */
const errorLayers = new WeakMap<object, ErrorHandler>();

function errorLayerFor(RED: NodeAPI, app: ExpressApp): ErrorHandler {
  let handler = errorLayers.get(app);
  if (!handler) {
    const log = new LogThrottle((line) => RED.log.warn(line));
    handler = (err, req, res, next) => {
      const path = (req.path ?? req.url ?? '').split('?')[0];
      if (!isConfluxPath(app, path)) return next(err);
      const answer = errorAnswer(err);
      log.note(answer.summary, `HTTP ${answer.response.status} on ${req.method ?? '?'} for a device route: ${answer.summary}`);
      reply(res, answer.response);
    };
    errorLayers.set(app, handler);
  }
  return handler;
}

/** Puts the error layer last in app's stack (routes mounted later come after it otherwise). */
function keepErrorLayerLast(RED: NodeAPI, app: ExpressApp): void {
  const handler = errorLayerFor(RED, app);
  const stack = stackOf(app);
  const at = stack.findIndex((l) => l.handle === handler);
  if (at >= 0) {
    if (at === stack.length - 1) return;
    stack.push(...stack.splice(at, 1));
    return;
  }
  app.use(handler);
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

/** Writes the response; one already under way (its headers sent) is cut off instead, never left hanging. */
export function reply(res: ServerResponse, response: HttpResponse): void {
  if (res.writableEnded) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(response.status, response.headers);
  res.end(response.body);
}

/** A body another middleware already read, as bytes again: a Buffer, a text, or parsed JSON (re-serialised). */
export function preParsed(body: unknown): Buffer | undefined {
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  if (body !== undefined && body !== null && typeof body === 'object') return Buffer.from(JSON.stringify(body));
  return undefined;
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
      const route = app.route(path) as { all(handler: Handler): unknown; [CONFLUX_ROUTE]?: boolean };
      route[CONFLUX_ROUTE] = true;
      route.all(handler);
      routes.push(route);
      keepErrorLayerLast(RED, app);
    },
    unmount() {
      const stack = stackOf(app);
      for (let i = stack.length - 1; i >= 0; i--) if (stack[i].route !== undefined && routes.includes(stack[i].route)) stack.splice(i, 1);
      for (const p of paths) if (mounted.get(p) === nodeId) mounted.delete(p);
      routes.length = 0;
      paths.length = 0;
    },
  };
}
