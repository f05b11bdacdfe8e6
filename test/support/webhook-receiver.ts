/**
 * A real HTTP webhook receiver on 127.0.0.1 for the webhook tests: records every request (headers,
 * raw body, time) and answers through a replaceable handler. It can stop (closing its kept-alive
 * connections, so the sender sees refused connections) and start again on the same port.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
  path: string;
}

export type Handler = (req: Received, res: http.ServerResponse, index: number) => void;

export const answer =
  (status: number, headers: Record<string, string> = {}, body: string | Buffer = ''): Handler =>
  (_req, res) => {
    res.writeHead(status, headers);
    res.end(body);
  };

export class Receiver {
  readonly received: Received[] = [];
  handler: Handler = answer(204);
  port = 0;
  private server: http.Server | undefined;

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async start(): Promise<this> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const r: Received = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now(), path: req.url ?? '' };
        const index = this.received.push(r) - 1;
        this.handler(r, res, index);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  /** Stops listening and drops every open connection. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
