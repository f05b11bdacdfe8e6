/**
 * Many idle TCP device sessions held open at once, for load tests: each device logs in with SCRAM
 * through the reference client (tools/device-client/tcp.ts), answers the server's PINGs, and
 * stays connected until told to close. One process holds a share of the sessions; a load test
 * runs several of these processes (forked, with their open-files limit raised) and drives them
 * over IPC, so the test's own process holds no sockets:
 *
 *   const holder = HolderProcess.fork({ openFiles: 6_000 });
 *   await holder.open({ port, first: 0, count: 5_000, serial, key });  // { opened, failed, errors }
 *   await holder.ping();                        // a PING on every session, each PONG awaited
 *   await holder.send({ every: 100, ... });     // a reading on every 100th session, each ACK awaited
 *   await holder.serverPings(sinceMs, timeout); // resolves once the server PINGed every session
 *   await holder.status();                      // open sessions, and why the others closed
 *   await holder.stop();
 *
 * Serials and keys are `${prefix}${index}` and `${keyPrefix}${index}`: the provisioning side
 * derives the same from the same index, so nothing long crosses the IPC channel.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { FrameType } from '../../nodes/core/protocol/frames';
import { connect, type TcpDeviceClient } from '../device-client/tcp';

export interface OpenRequest {
  host?: string;
  port: number;
  /** Device indexes first .. first + count - 1. */
  first: number;
  count: number;
  serialPrefix: string;
  keyPrefix: string;
  /** Logins under way at once; default 100. */
  concurrency?: number;
  /** Per connection and login; default 60 s. */
  timeoutMs?: number;
}

export interface OpenResult {
  opened: number;
  failed: number;
  /** The first few reasons, with their device. */
  errors: string[];
  ms: number;
}

export interface SendRequest {
  /** A reading on the sessions whose index is a multiple of this. */
  every: number;
  /** The stored name is `<serial>/<sensor>`; the value is the device's index. */
  sensor: string;
  timeoutMs?: number;
}

export interface Outcome {
  /** Sessions that answered (a PONG, an ACK). */
  ok: number;
  failed: number;
  errors: string[];
  ms: number;
  /** For send(): the indexes whose reading was ACKed. */
  acked?: number[];
}

export interface HolderStatus {
  /** Sessions logged in and still connected. */
  open: number;
  /** Sessions that closed, by the reason the server gave (or 'connection closed'). */
  closed: Record<string, number>;
  /** VmRSS of this process, KiB. */
  rssKiB: number;
}

type Command =
  | { op: 'open'; req: OpenRequest }
  | { op: 'ping'; timeoutMs: number }
  | { op: 'send'; req: SendRequest }
  | { op: 'serverPings'; sinceMs: number; timeoutMs: number }
  | { op: 'status' }
  | { op: 'close' };

const MAX_ERRORS = 10;

interface Held {
  index: number;
  client: TcpDeviceClient;
  /** When the server last sent this session a PING (ms since the epoch); 0: never. */
  serverPingAt: number;
}

/** The sessions of one process, and what a test asks of them. */
export class SessionHolder {
  private readonly held: Held[] = [];
  private readonly closed = new Map<string, number>();
  private readonly pingWaiters = new Set<() => void>();

  async open(req: OpenRequest): Promise<OpenResult> {
    const t0 = Date.now();
    const errors: string[] = [];
    let opened = 0;
    let failed = 0;
    let next = req.first;
    const end = req.first + req.count;
    const worker = async () => {
      while (next < end) {
        const index = next++;
        const serial = `${req.serialPrefix}${index}`;
        try {
          const client = await connect({
            host: req.host,
            port: req.port,
            serial,
            key: `${req.keyPrefix}${index}`,
            timeoutMs: req.timeoutMs ?? 60_000,
          });
          this.hold(index, client);
          opened++;
        } catch (err) {
          failed++;
          if (errors.length < MAX_ERRORS) errors.push(`${serial}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(req.concurrency ?? 100, req.count) }, worker));
    return { opened, failed, errors, ms: Date.now() - t0 };
  }

  private hold(index: number, client: TcpDeviceClient): void {
    const h: Held = { index, client, serverPingAt: 0 };
    this.held.push(h);
    client.on('frame', (f: { type: number }) => {
      if (f.type !== FrameType.PING) return;
      h.serverPingAt = Date.now();
      for (const wake of [...this.pingWaiters]) wake();
    });
    client.once('close', (reason?: string) => {
      const why = reason ?? 'connection closed';
      this.closed.set(why, (this.closed.get(why) ?? 0) + 1);
      for (const wake of [...this.pingWaiters]) wake();
    });
  }

  private get live(): Held[] {
    return this.held.filter((h) => h.client.open);
  }

  /** A PING on every open session; counts the PONGs that came within timeoutMs. */
  async ping(timeoutMs: number): Promise<Outcome> {
    return this.each(this.live, timeoutMs, (h) => h.client.ping());
  }

  /** A SenML reading `<sensor>` = index on every `every`th session; counts the ACKs. */
  async send(req: SendRequest): Promise<Outcome> {
    const chosen = this.live.filter((h) => h.index % req.every === 0);
    const acked: number[] = [];
    const outcome = await this.each(chosen, req.timeoutMs ?? 30_000, async (h) => {
      await h.client.sendReadings('senml-json', [{ n: req.sensor, v: h.index }]);
      acked.push(h.index);
    });
    return { ...outcome, acked: acked.sort((a, b) => a - b) };
  }

  private async each(sessions: Held[], timeoutMs: number, act: (h: Held) => Promise<unknown>): Promise<Outcome> {
    const t0 = Date.now();
    const errors: string[] = [];
    let ok = 0;
    let failed = 0;
    await Promise.all(
      sessions.map(async (h) => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)));
        try {
          await Promise.race([act(h), late]);
          ok++;
        } catch (err) {
          failed++;
          if (errors.length < MAX_ERRORS) errors.push(`${h.client.serial}: ${(err as Error).message}`);
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    return { ok, failed, errors, ms: Date.now() - t0 };
  }

  /**
   * Resolves once the server has sent a PING to every open session since `sinceMs` (its
   * keepalive after half the idle timeout of silence), or after timeoutMs; tells how many had.
   */
  serverPings(sinceMs: number, timeoutMs: number): Promise<Outcome> {
    const t0 = Date.now();
    const count = () => {
      const live = this.live;
      const ok = live.filter((h) => h.serverPingAt >= sinceMs).length;
      return { ok, failed: live.length - ok };
    };
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.pingWaiters.delete(check);
        const { ok, failed } = count();
        resolve({ ok, failed, errors: failed ? [`${failed} open sessions had no PING from the server within ${timeoutMs} ms`] : [], ms: Date.now() - t0 });
      };
      const check = () => {
        if (count().failed === 0) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.pingWaiters.add(check);
      check();
    });
  }

  status(): HolderStatus {
    return { open: this.live.length, closed: Object.fromEntries(this.closed), rssKiB: Math.round(process.memoryUsage().rss / 1024) };
  }

  async close(): Promise<void> {
    await Promise.all(this.held.map((h) => h.client.close()));
  }
}

/** The child side: runs the commands of its parent, one answer per command. */
function serve(): void {
  const holder = new SessionHolder();
  process.on('message', (m: { id: number; cmd: Command }) => {
    const { id, cmd } = m;
    const run = async (): Promise<unknown> => {
      switch (cmd.op) {
        case 'open':
          return holder.open(cmd.req);
        case 'ping':
          return holder.ping(cmd.timeoutMs);
        case 'send':
          return holder.send(cmd.req);
        case 'serverPings':
          return holder.serverPings(cmd.sinceMs, cmd.timeoutMs);
        case 'status':
          return holder.status();
        case 'close':
          await holder.close();
          return null;
      }
    };
    run().then(
      (result) => process.send!({ id, result }),
      (err: Error) => process.send!({ id, error: err.stack ?? err.message }),
    );
  });
  process.on('disconnect', () => process.exit(0)); // the parent went away
}

/** The parent side: a forked holder process whose open-files limit is raised to `openFiles`. */
export class HolderProcess {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined) w.reject(new Error(`session holder ${child.pid}: ${m.error}`));
      else w.resolve(m.result);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        for (const w of this.waiting.values()) w.reject(new Error(`session holder ${child.pid} exited (${signal ?? code})`));
        this.waiting.clear();
        resolve(code);
      }),
    );
  }

  /**
   * Starts a holder through `bash -c 'ulimit -Sn N && exec node …'`: the soft limit of open
   * files raised to N (bash fails, and so does the holder, when the hard limit is lower).
   */
  static fork(options: { openFiles: number }): HolderProcess {
    const child = spawn('bash', ['-c', 'ulimit -Sn "$0" && exec "$@"', String(options.openFiles), process.execPath, __filename], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new HolderProcess(child);
  }

  private call<T>(cmd: Command): Promise<T> {
    return new Promise((resolve, reject) => {
      if (!this.child.connected) return reject(new Error(`session holder ${this.child.pid} is gone`));
      const id = ++this.seq;
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, cmd });
    });
  }

  open(req: OpenRequest): Promise<OpenResult> {
    return this.call({ op: 'open', req });
  }

  ping(timeoutMs = 30_000): Promise<Outcome> {
    return this.call({ op: 'ping', timeoutMs });
  }

  send(req: SendRequest): Promise<Outcome> {
    return this.call({ op: 'send', req });
  }

  serverPings(sinceMs: number, timeoutMs: number): Promise<Outcome> {
    return this.call({ op: 'serverPings', sinceMs, timeoutMs });
  }

  status(): Promise<HolderStatus> {
    return this.call({ op: 'status' });
  }

  /** Closes every session, then the process. */
  async stop(): Promise<void> {
    if (this.child.connected) {
      await this.call({ op: 'close' }).catch(() => undefined);
      this.child.disconnect();
    }
    await this.exited;
  }
}

if (require.main === module && process.send) serve();
