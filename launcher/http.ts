/**
 * The standalone runtime's HTTP server: which requests reach Node-RED's admin app (editor and
 * admin API), which reach the device routes, and what answers errors. In order:
 * 1. Conflux device routes go straight to RED.httpNode. The admin app, mounted at the same root,
 *    would otherwise run its CORS handler and its 5 MB JSON and form parsers on every body before
 *    the device is authenticated; our routes read the body themselves, bounded, after the key.
 * 2. The doors (doors.ts) for everything else: foreign origins and, without a password,
 *    unexpected Host headers get 403; preflights get no CORS grant; framing by other sites is off.
 * 3. With a password, POST /auth/token through the per-address login throttle.
 * 4. Node-RED's admin app, then RED.httpNode (the flows' own `http in` routes).
 * 5. problem+json for paths nothing serves and for every error, with one throttled log line.
 */
import type * as http from 'node:http';
import type { Express, NextFunction, Request, RequestHandler, Response } from 'express';
import { errorAnswer, LogThrottle, notFound } from '../nodes/core/protocol/http-errors';
import { problem } from '../nodes/core/protocol/problem';
import { isConfluxPath, reply } from '../nodes/shared/http-routes';
import type { RuntimeConfig } from './config';
import { AllowedHosts, type DoorRequest, refusal } from './doors';
import { addressKey, LoginThrottle } from './login-throttle';

export interface PlatformHttp {
  express: typeof import('express');
  httpAdmin: RequestHandler;
  httpNode: RequestHandler;
  config: RuntimeConfig;
  /** The port the server listens on (known once it listens; CONFLUX_PORT may be 0). */
  port: () => number;
  /** Checks an editor login (only when CONFLUX_ADMIN_PASSWORD is set). */
  checkLogin?: (username: string, password: string) => Promise<boolean>;
  warn: (line: string) => void;
}

/** For settings.httpAdminMiddleware: Node-RED's admin app grants `Access-Control-Allow-Origin: *` before it; take it back. */
export function noCorsGrant(_req: unknown, res: { removeHeader(name: string): void }, next: () => void): void {
  res.removeHeader('Access-Control-Allow-Origin');
  next();
}

export function platformApp(parts: PlatformHttp): { app: Express; guardUpgrades(server: http.Server, commsPath: string): void } {
  const { express, config } = parts;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustedProxies.length > 0 ? config.trustedProxies : false);
  const log = new LogThrottle(parts.warn);
  const hostCheck = config.adminPassword === undefined;
  let hosts: AllowedHosts | undefined;
  const allowed = (): AllowedHosts => (hosts ??= new AllowedHosts(config.host, parts.port(), config.allowedHosts));

  // 1. Device routes first, untouched by the admin app.
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (isConfluxPath(parts.httpNode, req.path)) parts.httpNode(req, res, next);
    else next();
  });

  // 2. The doors.
  app.use((req: Request, res: Response, next: NextFunction) => {
    const why = refusal(req as DoorRequest, allowed(), hostCheck);
    if (why !== undefined) {
      log.note(`door:${why.split(':')[0]}`, `refused ${req.method} to the editor: ${why}`);
      reply(res, problem('forbidden', why));
      return;
    }
    res.setHeader('X-Frame-Options', 'SAMEORIGIN');
    res.setHeader('Content-Security-Policy', "frame-ancestors 'self'");
    if (req.method === 'OPTIONS') {
      res.status(204).set('Allow', 'GET, HEAD, POST, PUT, DELETE').end();
      return;
    }
    next();
  });

  // 3. Failed logins throttled per address; Node-RED only sees logins that will succeed, so its
  //    own per-user-name lockout (any 6 attempts in 10 minutes) can never lock the admin out.
  if (parts.checkLogin) {
    const checkLogin = parts.checkLogin;
    const throttle = new LoginThrottle();
    const body = [express.json({ limit: '16kb' }), express.urlencoded({ limit: '16kb', extended: false })];
    app.post('/auth/token', ...body, (req: Request, res: Response, next: NextFunction) => {
      const fields = (req.body ?? {}) as Record<string, unknown>;
      if (fields.grant_type !== 'password') return next();
      const key = addressKey(req.ip ?? req.socket.remoteAddress);
      const wait = throttle.waitSeconds(key);
      if (wait > 0) {
        log.note('login:throttled', `refused a login from ${key}: too many failed logins, retry in ${wait} s`);
        reply(res, problem('too-many-logins', `retry in ${wait} s`, { retryAfter: wait }, { 'retry-after': String(wait) }));
        return;
      }
      const username = typeof fields.username === 'string' ? fields.username : '';
      const password = typeof fields.password === 'string' ? fields.password : '';
      checkLogin(username, password).then(
        (ok) => {
          if (!ok) {
            throttle.failed(key);
            log.note('login:failed', `failed editor login from ${key}`);
            // What Node-RED (oauth2orize) answers to wrong credentials; the editor shows "Login failed".
            res.status(403).json({ error: 'invalid_grant', error_description: 'Invalid resource owner credentials' });
            return;
          }
          throttle.succeeded(key);
          next();
        },
        (err: unknown) => next(err),
      );
    });
  }

  // 4. Node-RED.
  // With CONFLUX_EDITOR=off the admin API is not served either: no deploy can change one instance.
  if (config.editor) app.use('/', parts.httpAdmin);
  app.use('/', parts.httpNode);

  // 5. Nothing served here, and every error.
  app.use((_req: Request, res: Response) => reply(res, notFound()));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const answer = errorAnswer(err);
    const detail = answer.fault && err instanceof Error ? `: ${err.message.split('\n')[0].slice(0, 200)}` : '';
    log.note(`error:${answer.summary}`, `HTTP ${answer.response.status} on ${req.method}: ${answer.summary}${detail}`);
    reply(res, answer.response);
  });

  return {
    app,
    /** The editor's websocket (/comms) goes through the same doors; other upgrades (flows' websocket nodes) do not. */
    guardUpgrades(server, commsPath) {
      const emit = server.emit.bind(server) as (event: string, ...args: unknown[]) => boolean;
      server.emit = ((event: string, ...args: unknown[]) => {
        if (event === 'upgrade') {
          const req = args[0] as http.IncomingMessage;
          const socket = args[1] as import('node:net').Socket;
          const path = (req.url ?? '').split('?')[0];
          const why = path === commsPath ? refusal({ method: req.method ?? 'GET', headers: req.headers }, allowed(), hostCheck) : undefined;
          if (why !== undefined) {
            log.note(`door:ws:${why.split(':')[0]}`, `refused the editor's websocket: ${why}`);
            socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
            return true;
          }
        }
        return emit(event, ...args);
      }) as typeof server.emit;
    },
  };
}
