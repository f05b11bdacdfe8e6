/**
 * A "local system" for the federation tests (seed 003's pre-existing application): a legacy app
 * on a loopback port with
 *
 *   GET  /api/readings?after=<id>&limit=<n>&object=<o>&name=<n>   the readings a user may see, ids ascending
 *   POST /api/ingest   {messageId, user, items: [{object, name, value, unit?, time}]}   stores them
 *
 * both with HTTP Basic auth against per-user credentials (401 otherwise). A reading with an owner
 * is seen only by that login. `failIngest` makes ingestion answer 503 (the system is down for
 * writes); `down()` closes the port and `up()` opens it again on the same port.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LegacyReading {
  id: number;
  object: string;
  name: string;
  value: number | string | boolean;
  unit?: string;
  time: string;
  /** Only this login sees it; absent: every login. */
  owner?: string;
}

export interface Ingested {
  login: string;
  messageId?: string;
  user?: string;
  items: Array<Record<string, unknown>>;
}

export class LocalSystem {
  readonly readings: LegacyReading[] = [];
  readonly ingested: Ingested[] = [];
  /** Readings requests answered, per login. */
  readonly reads = new Map<string, number>();
  failIngest = false;
  private nextId = 1;
  private server: http.Server;
  private port = 0;

  constructor(private readonly users: Record<string, string>) {
    this.server = this.create();
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(users: Record<string, string>): Promise<LocalSystem> {
    const s = new LocalSystem(users);
    await s.up();
    return s;
  }

  /** Adds a reading with the next id; returns it. */
  add(r: Omit<LegacyReading, 'id' | 'time'> & { time?: string }): LegacyReading {
    const reading: LegacyReading = { id: this.nextId++, time: r.time ?? new Date(Date.UTC(2026, 0, 1, 0, 0, this.nextId)).toISOString(), ...r };
    this.readings.push(reading);
    return reading;
  }

  async up(): Promise<void> {
    if (this.server.listening) return;
    this.server = this.create();
    await new Promise<void>((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async down(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private login(req: http.IncomingMessage): string | undefined {
    const m = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    if (!m) return undefined;
    const text = Buffer.from(m[1], 'base64').toString('utf8');
    const i = text.indexOf(':');
    const login = text.slice(0, i);
    return i > 0 && Object.hasOwn(this.users, login) && this.users[login] === text.slice(i + 1) ? login : undefined;
  }

  private create(): http.Server {
    return http.createServer((req, res) => {
      const answer = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      const login = this.login(req);
      if (!login) return answer(401, { error: 'bad credentials' });
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'GET' && url.pathname === '/api/readings') {
        this.reads.set(login, (this.reads.get(login) ?? 0) + 1);
        const after = Number(url.searchParams.get('after') ?? 0);
        const limit = Number(url.searchParams.get('limit') ?? 100);
        const objects = url.searchParams.getAll('object');
        const names = url.searchParams.getAll('name');
        const items = this.readings
          .filter((r) => (r.owner === undefined || r.owner === login) && r.id > after)
          .filter((r) => (objects.length === 0 || objects.includes(r.object)) && (names.length === 0 || names.includes(r.name)))
          .slice(0, limit)
          .map(({ owner: _owner, ...r }) => r);
        return answer(200, items);
      }
      if (req.method === 'POST' && url.pathname === '/api/ingest') {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          if (this.failIngest) return answer(503, { error: 'ingestion is down' });
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Omit<Ingested, 'login'>;
          this.ingested.push({ login, ...body });
          answer(201, { stored: body.items.length });
        });
        return;
      }
      answer(404, { error: 'no such resource' });
    });
  }
}
