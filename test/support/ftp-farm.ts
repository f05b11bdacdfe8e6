/**
 * Many real FTP servers in this process (ftp-srv), each on its own loopback port with its own
 * login, folder and passive port range: the targets of the FTP tests and of `npm run bench -- ftp`.
 * The farm counts, on the servers' side, the control connections open at any moment and the most
 * ever open at once; a server can be stopped (its port refuses connections) and started again on
 * the same port and folder. Optionally FTPS (explicit, or implicit with ftps://) with a given key
 * and certificate, or a file system that misbehaves (a hook on every write).
 */
import type { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { FtpSrv, FileSystem, type FtpConnection } from 'ftp-srv';

export interface FarmServer {
  index: number;
  port: number;
  user: string;
  password: string;
  /** Where its user's files land. */
  root: string;
  running: boolean;
}

export interface FarmOptions {
  /** TLS key and certificate (PEM): explicit TLS (AUTH TLS) on the port, or implicit when implicit is set. */
  tls?: { key: string; cert: string };
  implicit?: boolean;
  /** Called for every file the server starts writing: may replace its stream (a server that fails mid-upload). */
  onWrite?: (server: FarmServer, fileName: string, stream: Writable) => Writable;
}

const quiet = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  fatal() {},
  child() {
    return quiet;
  },
};

/** Passive port ranges, disjoint per server and below Linux's ephemeral range (32768+). */
const PASV_PER_SERVER = 16;
let pasvNext = 10_000 + Math.floor(Math.random() * 400) * PASV_PER_SERVER;

export class FtpFarm {
  readonly servers: FarmServer[] = [];
  /** Control connections open now, all servers together. */
  open = 0;
  /** The most control connections ever open at once. */
  peak = 0;
  logins = 0;
  /** Files that arrived under their final name: stored directly (not a .part), or renamed to it. */
  arrivals = 0;
  onArrival?: () => void;
  private readonly instances = new Map<number, FtpSrv>();
  private readonly pasv = new Map<number, number>();
  private readonly base: string;

  private constructor(private readonly options: FarmOptions) {
    this.base = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-ftp-farm-'));
  }

  /** n servers, each with a distinct login (user<i> / a random password) and folder. */
  static async start(n: number, options: FarmOptions = {}): Promise<FtpFarm> {
    process.setMaxListeners(Math.max(process.getMaxListeners(), 3 * n + 20)); // ftp-srv listens for SIGTERM per server
    const farm = new FtpFarm(options);
    for (let i = 0; i < n; i++) {
      const root = path.join(farm.base, `s${i}`);
      fs.mkdirSync(root);
      farm.servers.push({ index: i, port: 0, user: `user${i}`, password: `pw-${i}-${Math.random().toString(36).slice(2)}`, root, running: false });
      farm.pasv.set(i, pasvNext);
      pasvNext += PASV_PER_SERVER;
      if (pasvNext > 32_000) pasvNext = 10_000;
    }
    await Promise.all(farm.servers.map((s) => farm.startOne(s.index)));
    return farm;
  }

  async startOne(i: number): Promise<void> {
    const s = this.servers[i];
    const pasvMin = this.pasv.get(i)!;
    const scheme = this.options.tls && this.options.implicit ? 'ftps' : 'ftp';
    const server = new FtpSrv({
      url: `${scheme}://127.0.0.1:${s.port}`,
      pasv_url: '127.0.0.1',
      pasv_min: pasvMin,
      pasv_max: pasvMin + PASV_PER_SERVER - 1,
      tls: this.options.tls ?? false,
      anonymous: false,
      log: quiet,
      greeting: `conflux test server ${i}`,
    });
    const events = server as unknown as EventEmitter; // ftp-srv's types leave out connect
    events.on('connect', () => {
      this.open++;
      this.peak = Math.max(this.peak, this.open);
    });
    events.on('disconnect', () => this.open--);
    server.on('client-error', () => undefined);
    server.on('login', ({ connection, username, password }, resolve, reject) => {
      if (username !== s.user || password !== s.password) return reject(new Error('wrong login'));
      this.logins++;
      const arrived = (err: unknown, to: unknown) => {
        if (err || String(to).endsWith('.part')) return;
        this.arrivals++;
        this.onArrival?.();
      };
      connection.on('STOR', arrived);
      connection.on('RNTO', arrived);
      const onWrite = this.options.onWrite;
      resolve({
        fs: onWrite ? new HookedFs(connection, s.root, (name, stream) => onWrite(s, name, stream)) : new FileSystem(connection, { root: s.root, cwd: '/' }),
      });
    });
    await server.listen();
    // Port 0 the first time: the kernel picks one no other listener has; a restart takes it again.
    s.port = (server as unknown as { server: { address(): { port: number } } }).server.address().port;
    this.instances.set(i, server);
    s.running = true;
  }

  /** Stops one server: its clients are cut off and its port refuses connections until startOne. */
  async stopOne(i: number): Promise<void> {
    const server = this.instances.get(i);
    this.instances.delete(i);
    this.servers[i].running = false;
    await server?.close();
  }

  /** Files under a server's folder (relative paths, sorted), without temporaries unless asked. */
  files(i: number, withTemporaries = false): string[] {
    const out: string[] = [];
    const walk = (dir: string, rel: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) walk(path.join(dir, e.name), r);
        else if (withTemporaries || !e.name.endsWith('.part')) out.push(r);
      }
    };
    walk(this.servers[i].root, '');
    return out.sort();
  }

  read(i: number, name: string): Buffer {
    return fs.readFileSync(path.join(this.servers[i].root, name));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.instances.keys()].map((i) => this.stopOne(i)));
    fs.rmSync(this.base, { recursive: true, force: true });
  }
}

/** ftp-srv's file system with a hook on every write stream. */
class HookedFs extends FileSystem {
  constructor(
    connection: FtpConnection,
    root: string,
    private readonly hook: (fileName: string, stream: Writable) => Writable,
  ) {
    super(connection, { root, cwd: '/' });
  }

  override write(fileName: string, options?: { append?: boolean; start?: unknown }): unknown {
    const result = super.write(fileName, options) as { stream: Writable; clientPath: string };
    return { ...result, stream: this.hook(fileName, result.stream) };
  }
}

export { Writable };
