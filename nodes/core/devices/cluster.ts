/**
 * Several gateway instances on one database (issue 14, item 1; docs/operations.md, "Device
 * commands across instances"): which instance holds which device's session, and the messages
 * instances send each other over PostgreSQL's LISTEN/NOTIFY (PGlite's in one process), so that a
 * command sent on one instance reaches a device connected to another and its answer comes back.
 * The command router (commands.ts) uses it through CommandPeers; the data itself — the command,
 * its parameters and its answer — stays in device_commands, and notifications carry only names
 * and ids (a NOTIFY holds at most 8000 bytes, and a table survives what a notification does not).
 *
 * Each instance has a random id per start and one channel, conflux_gw_<id>; a heartbeat keeps its
 * row in gateway_instances fresh (migration 014). Its TCP and MQTT sessions are written to
 * device_sessions in batches (a burst of reconnecting devices is a few statements, not one each),
 * as the state the registry has when the batch is written. A device that connects here while its
 * row names another instance makes that instance close the older session (one device, one
 * session, across instances as within one: a half-open connection must not keep its commands).
 * Instances not seen for the TTL are ignored, then deleted with their sessions. Framework-free.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { MAX_NOTIFY_BYTES, notify, type SqlClient, type Unlisten } from '../db/sql';
import type { Session, SessionRegistry } from './sessions';

/** What the command router does when another instance asks. */
export interface PeerHandlers {
  /** Send the device's queued commands if its session is here; false when it is not. */
  flushDevice(tenant: string, serial: string): boolean;
  /** Another instance handed command `id` (one this instance waits for) to its device. */
  sent(id: string): void;
  /** Another instance recorded the outcome of command `id` in device_commands. */
  done(id: string): void;
  /** Notifications may have been lost: look again at the commands this instance waits for. */
  recheck(): void;
}

/** The command router's view of the other instances. */
export interface CommandPeers {
  readonly instanceId: string;
  attach(handlers: PeerHandlers): void;
  /** Another live instance holding the device's session, if any (starts this instance first). */
  holder(tenant: string, serial: string): Promise<string | undefined>;
  /** Asks `instance` to send the device's queued commands now. */
  askFlush(instance: string, tenant: string, serial: string): Promise<void>;
  /** Tells the instance waiting for command `id` that it was delivered, or that its outcome is recorded. */
  tell(origin: string, what: 'sent' | 'done', id: string): Promise<void>;
}

export interface ClusterOptions {
  sessions: SessionRegistry;
  sql(): Promise<SqlClient>;
  /** Default 10 s. */
  heartbeatMs?: number;
  /** An instance not seen this long is dead. Default 30 s (three heartbeats). */
  ttlMs?: number;
  /** A failure worth a log line: reported once, then not again until things work. */
  onError?(err: Error): void;
  /** Default: random, 16 hex digits. */
  instanceId?: string;
}

type Message = { k: 'flush'; t: string; s: string } | { k: 'sweep' } | { k: 'drop'; t: string; s: string; sid: string } | { k: 'sent' | 'done'; id: string };

const key = (tenant: string, serial: string) => `${tenant}\u0000${serial}`;
const BATCH = 1_000;
export const channelOf = (instance: string) => `conflux_gw_${instance}`;

export class GatewayCluster implements CommandPeers {
  readonly instanceId: string;
  private handlers: PeerHandlers | undefined;
  private starting: Promise<SqlClient> | undefined;
  private unlisten: Unlisten | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly sessionIds = new WeakMap<Session, string>();
  /** Devices whose row may differ from the registry. */
  private readonly dirty = new Map<string, { tenant: string; serial: string }>();
  private writing = false;
  private writeTimer: NodeJS.Timeout | undefined;
  private failing = false;
  private closed = false;
  private readonly stopWatching: Array<() => void>;
  private readonly heartbeatMs: number;
  private readonly ttlMs: number;

  constructor(private readonly options: ClusterOptions) {
    this.instanceId = options.instanceId ?? randomBytes(8).toString('hex');
    this.heartbeatMs = options.heartbeatMs ?? 10_000;
    this.ttlMs = options.ttlMs ?? 30_000;
    const changed = (s: Session) => {
      if (s.transport !== 'tcp' && s.transport !== 'mqtt') return;
      this.dirty.set(key(s.device.tenant, s.device.serial), { tenant: s.device.tenant, serial: s.device.serial });
      this.scheduleWrite();
    };
    this.stopWatching = [options.sessions.onAdded(changed), options.sessions.onEnded(changed)];
  }

  attach(handlers: PeerHandlers): void {
    this.handlers = handlers;
  }

  /**
   * Starts once (LISTEN on this instance's channel, its row in gateway_instances, the heartbeat);
   * resolves false, after reporting why, when the database cannot, and tries again on the next call.
   */
  ready(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (!this.starting) {
      const started = (this.starting = this.start());
      started.catch((err: Error) => {
        if (this.starting === started) this.starting = undefined;
        this.report(err);
      });
    }
    return this.starting.then(
      () => true,
      () => false,
    );
  }

  async holder(tenant: string, serial: string): Promise<string | undefined> {
    if (!(await this.ready())) return undefined;
    const sql = await this.starting!;
    const { rows } = await sql.query<{ instance_id: string }>(
      `SELECT s.instance_id FROM device_sessions s JOIN gateway_instances i ON i.id = s.instance_id
       WHERE s.tenant_id = $1 AND s.serial = $2 AND s.instance_id <> $3 AND i.seen_at > now() - $4::float8 * interval '1 millisecond'`,
      [tenant, serial, this.instanceId, this.ttlMs],
    );
    return rows[0]?.instance_id;
  }

  askFlush(instance: string, tenant: string, serial: string): Promise<void> {
    const message = JSON.stringify({ k: 'flush', t: tenant, s: serial });
    // A name too long for a notification: the holder then looks at all its devices' queues.
    return this.send(instance, Buffer.byteLength(message) > MAX_NOTIFY_BYTES ? { k: 'sweep' } : { k: 'flush', t: tenant, s: serial });
  }

  tell(origin: string, what: 'sent' | 'done', id: string): Promise<void> {
    return this.send(origin, { k: what, id });
  }

  /** Stops: this instance's row and its sessions' rows are deleted, so no command is sent here any more. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.stopWatching) stop();
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.writeTimer);
    const sql = await this.starting?.catch(() => undefined);
    clearInterval(this.heartbeatTimer); // again: a start under way when close began has set it since
    if (!sql) return;
    await this.unlisten?.().catch(() => undefined);
    await sql.query('DELETE FROM gateway_instances WHERE id = $1', [this.instanceId]).catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------

  private async start(): Promise<SqlClient> {
    const sql = await this.options.sql();
    // LISTEN first: once the row and the sessions are written, others may send at once.
    const unlisten = await sql.listen(
      channelOf(this.instanceId),
      (payload) => this.receive(payload),
      () => this.reconnected(),
    );
    if (this.closed) {
      await unlisten();
      throw new Error('the gateway is stopping');
    }
    try {
      // PGlite is one process's database: instances from before this process started are dead, so their
      // sessions must not wait for the TTL to count as gone (after a crash, commands would go nowhere).
      if (sql.kind === 'pglite') await sql.query('DELETE FROM gateway_instances WHERE started_at < $1', [new Date(performance.timeOrigin)]);
      await this.beat(sql);
    } catch (err) {
      await unlisten().catch(() => undefined); // the next start listens again
      throw err;
    }
    this.unlisten = unlisten;
    this.heartbeatTimer = setInterval(() => void this.heartbeat(sql), this.heartbeatMs);
    this.heartbeatTimer.unref();
    return sql;
  }

  /** Freshens this instance's row; true when it had to be created (anew: our sessions' rows went with it). */
  private async beat(sql: SqlClient): Promise<boolean> {
    const { rows } = await sql.query<{ created: boolean }>(
      `INSERT INTO gateway_instances (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET seen_at = now() RETURNING (xmax = 0) AS created`,
      [this.instanceId],
    );
    return rows[0]?.created === true;
  }

  private async heartbeat(sql: SqlClient): Promise<void> {
    if (this.closed) return;
    try {
      if (await this.beat(sql)) {
        // Taken for dead (a stall longer than the TTL): write every session here again.
        for (const s of this.options.sessions.all())
          if (s.transport === 'tcp' || s.transport === 'mqtt')
            this.dirty.set(key(s.device.tenant, s.device.serial), { tenant: s.device.tenant, serial: s.device.serial });
      }
      await sql.query(`DELETE FROM gateway_instances WHERE seen_at < now() - $1::float8 * interval '1 millisecond'`, [this.ttlMs]);
      this.fine();
    } catch (err) {
      this.report(err as Error);
    }
    this.scheduleWrite();
    this.handlers?.recheck();
  }

  private reachable(tenant: string, serial: string): Session | undefined {
    const s = this.options.sessions.get(tenant, serial);
    return s && (s.transport === 'tcp' || s.transport === 'mqtt') ? s : undefined;
  }

  private sessionId(s: Session): string {
    let id = this.sessionIds.get(s);
    if (!id) this.sessionIds.set(s, (id = randomBytes(8).toString('hex')));
    return id;
  }

  private scheduleWrite(delayMs = 0): void {
    if (this.closed || this.writing || this.writeTimer || this.dirty.size === 0) return;
    this.writeTimer = setTimeout(() => {
      this.writeTimer = undefined;
      void this.write();
    }, delayMs);
    this.writeTimer.unref();
  }

  /** Writes a batch of dirty devices as the registry has them now. */
  private async write(): Promise<void> {
    this.writing = true;
    const batch = [...this.dirty.entries()].slice(0, BATCH);
    for (const [k] of batch) this.dirty.delete(k);
    let failed = false;
    try {
      if (!(await this.ready())) throw new Error('not started');
      const sql = await this.starting!;
      const up: Array<{ tenant: string; serial: string; sid: string; transport: string }> = [];
      const gone: Array<{ tenant: string; serial: string }> = [];
      for (const [, d] of batch.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        const s = this.reachable(d.tenant, d.serial);
        if (s) up.push({ ...d, sid: this.sessionId(s), transport: s.transport });
        else gone.push(d);
      }
      if (gone.length > 0) {
        await sql.query(
          `DELETE FROM device_sessions d USING unnest($2::text[], $3::text[]) AS g(tenant_id, serial)
           WHERE d.tenant_id = g.tenant_id AND d.serial = g.serial AND d.instance_id = $1`,
          [this.instanceId, gone.map((g) => g.tenant), gone.map((g) => g.serial)],
        );
      }
      if (up.length > 0) {
        const { rows: replaced } = await sql.query<{ tenant_id: string; serial: string; instance_id: string; session_id: string }>(
          `WITH input AS (
             SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS i(tenant_id, serial, session_id, transport)
           ), prev AS (
             SELECT d.tenant_id, d.serial, d.instance_id, d.session_id FROM device_sessions d
             JOIN input i ON i.tenant_id = d.tenant_id AND i.serial = d.serial WHERE d.instance_id <> $1
           ), up AS (
             INSERT INTO device_sessions (tenant_id, serial, instance_id, session_id, transport)
             SELECT tenant_id, serial, $1, session_id, transport FROM input
             ON CONFLICT (tenant_id, serial) DO UPDATE
               SET instance_id = EXCLUDED.instance_id, session_id = EXCLUDED.session_id, transport = EXCLUDED.transport, since = now()
           )
           SELECT tenant_id, serial, instance_id, session_id FROM prev`,
          [this.instanceId, up.map((u) => u.tenant), up.map((u) => u.serial), up.map((u) => u.sid), up.map((u) => u.transport)],
        );
        // The device's older session on another instance: that instance closes it.
        for (const r of replaced) {
          const message: Message = { k: 'drop', t: r.tenant_id, s: r.serial, sid: r.session_id };
          if (Buffer.byteLength(JSON.stringify(message)) <= MAX_NOTIFY_BYTES) await this.send(r.instance_id, message).catch(() => undefined);
        }
        // A command queued through another instance after this device's flush here, but before this
        // row existed, found no holder: send it now (the other side looks for a holder after storing).
        await this.sweep(sql, up);
      }
      this.fine();
    } catch (err) {
      failed = true;
      for (const [k, d] of batch) if (!this.dirty.has(k)) this.dirty.set(k, d);
      if ((err as Error).message !== 'not started') this.report(err as Error);
    } finally {
      this.writing = false;
      this.scheduleWrite(failed ? this.heartbeatMs : 0);
    }
  }

  /** Sends the queued commands of devices connected here (of `only`, when given). */
  private async sweep(sql: SqlClient, only?: ReadonlyArray<{ tenant: string; serial: string }>): Promise<void> {
    const { rows } = await sql.query<{ tenant_id: string; serial: string }>(
      `SELECT DISTINCT s.tenant_id, s.serial FROM device_sessions s
       JOIN devices d ON d.tenant_id = s.tenant_id AND d.serial = s.serial
       JOIN device_commands c ON c.tenant_id = d.tenant_id AND c.device_id = d.id AND c.status = 'queued' AND c.expires_at > now()
       WHERE s.instance_id = $1 ${only ? 'AND (s.tenant_id, s.serial) IN (SELECT * FROM unnest($2::text[], $3::text[]))' : ''}`,
      only ? [this.instanceId, only.map((o) => o.tenant), only.map((o) => o.serial)] : [this.instanceId],
    );
    for (const r of rows) this.handlers?.flushDevice(r.tenant_id, r.serial);
  }

  private async send(instance: string, message: Message): Promise<void> {
    if (!(await this.ready())) throw new Error('this instance cannot reach the database');
    await notify(await this.starting!, channelOf(instance), JSON.stringify(message));
  }

  private receive(payload: string): void {
    let m: Partial<Message & { t: unknown; s: unknown; sid: unknown; id: unknown }>;
    try {
      m = JSON.parse(payload) as typeof m;
    } catch {
      return; // not ours
    }
    if (this.closed || m === null || typeof m !== 'object') return;
    const str = (v: unknown): v is string => typeof v === 'string';
    if (m.k === 'flush' && str(m.t) && str(m.s)) {
      // Not here (any more): our row is stale; writing the device again deletes it.
      if (!this.handlers?.flushDevice(m.t, m.s)) {
        this.dirty.set(key(m.t, m.s), { tenant: m.t, serial: m.s });
        this.scheduleWrite();
      }
    } else if (m.k === 'sweep') {
      this.starting?.then((sql) => this.sweep(sql)).catch((err: Error) => this.report(err));
    } else if (m.k === 'drop' && str(m.t) && str(m.s) && str(m.sid)) {
      const s = this.reachable(m.t, m.s);
      if (s && this.sessionIds.get(s) === m.sid) {
        const reason = 'replaced by a newer session of this device on another instance';
        this.options.sessions.remove(s, reason);
        s.close(reason);
      }
    } else if ((m.k === 'sent' || m.k === 'done') && str(m.id)) {
      if (m.k === 'sent') this.handlers?.sent(m.id);
      else this.handlers?.done(m.id);
    }
  }

  /** The LISTEN connection was lost and is back: what was said meanwhile is gone, so look again. */
  private reconnected(): void {
    this.starting?.then((sql) => this.sweep(sql)).catch((err: Error) => this.report(err));
    this.handlers?.recheck();
  }

  private report(err: Error): void {
    if (this.failing || this.closed) return;
    this.failing = true;
    this.options.onError?.(err);
  }

  private fine(): void {
    this.failing = false;
  }
}
