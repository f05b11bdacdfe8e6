/**
 * Commands, central system → device (issue 4, item 6): one CommandRouter per gateway sends a
 * command to the device's live session and waits for the answer carrying the same correlation
 * id, or a timeout. A device that is offline gets its commands later: they wait in the business
 * store (migration 003's device_commands), at most maxQueuedPerDevice per device, each until its
 * expiry, and go out in order when the device connects again (SessionRegistry.onAdded, or an
 * MQTT device subscribing to its cmd topic). Framework-free.
 *
 * Several instances (with `peers`, cluster.ts): a device connected to another instance gets the
 * command through device_commands — stored with this instance as its origin and an expiry at the
 * caller's timeout, then that instance is asked to flush the device's queue — and whichever
 * instance delivers a command tells its origin ('sent', then 'done' once the outcome is in the
 * row), so the caller here gets the answer, the refusal, or its own timeout. The instance that
 * delivers a command owns its outcome: it records the row and emits the command events.
 *
 * Correlation:
 *   TCP   the COMMAND frame is {id, name, params}; the COMMAND_RESULT echoes "id" with "result"
 *         (success) or "error" (the device refused). An answer whose id waits for nothing is
 *         refused (the device gets an ERROR), an answer from another device is never taken.
 *   MQTT  FIWARE's syntax carries no id: the result on cmdexe names the command, so it answers
 *         the oldest command of that name waiting for that device.
 */
import { randomUUID } from 'node:crypto';
import type { SqlClient } from '../db/sql';
import { commandAnswered, commandTimedOut, emitTo, type CommandAnswer, type EventSink } from '../events/platform';
import type { CommandPeers } from './cluster';
import type { DeviceIdentity } from './directory';
import type { Session, SessionRegistry } from './sessions';

export type CommandErrorCode = 'timeout' | 'refused' | 'queue-full' | 'expired' | 'offline' | 'unknown-device' | 'invalid' | 'closed';

export class CommandError extends Error {
  override readonly name = 'CommandError';

  constructor(
    readonly code: CommandErrorCode,
    message: string,
    /** The command's correlation id, once it has one. */
    readonly commandId?: string,
  ) {
    super(message);
  }
}

export interface CommandSpec {
  name: string;
  /** Any JSON value; over MQTT/UltraLight text, a number, a boolean or an object of values. */
  params?: unknown;
}

export interface SendOptions {
  /** How long to wait for the answer once the command is with the device. */
  timeoutMs: number;
  /** Queue it when the device is offline (else: CommandError 'offline'). */
  queueIfOffline: boolean;
  /** A queued command not delivered within this long is dropped ('expired'). */
  expiresInMs: number;
}

export interface CommandTicket {
  /** The correlation id. */
  id: string;
  /** true: the device was offline and the command waits in its queue. */
  queued: boolean;
  /** When a queued command expires (ms since the epoch). */
  expiresAt?: number;
  /** The device's result; rejects with CommandError (timeout, refused, expired, closed). */
  answer: Promise<unknown>;
}

export interface CommandRouterOptions {
  sessions: SessionRegistry;
  /** The business store (device_commands); rejects when there is none. */
  sql(): Promise<SqlClient>;
  /** A device by serial; undefined when unknown or disabled. */
  lookup(serial: string): Promise<DeviceIdentity | undefined>;
  /** Default 100. */
  maxQueuedPerDevice?: number;
  /** Answer timeout of a queued command delivered after a restart (no one waits in memory). Default 30 s. */
  defaultTimeoutMs?: number;
  /** The other instances on the same database (cluster.ts); without, this gateway is alone. */
  peers?: CommandPeers;
  /** Receives command.answered (a result or a refusal from the device) and command.timed_out (no answer in time, or expired in the queue). */
  onEvent?: EventSink;
}

interface Waiter {
  id: string;
  tenant: string;
  serial: string;
  name: string;
  timeoutMs: number;
  /** Stored in device_commands: its row records the outcome. */
  persisted: boolean;
  timer?: NodeJS.Timeout;
  expiryTimer?: NodeJS.Timeout;
  /** Handed to a session (or to another instance), waiting for the answer: the answer timer runs. */
  sent: boolean;
  /** Another instance delivers it: its outcome comes from the row, recorded (and announced as answered) there. */
  remote?: boolean;
  /** Sent through another instance as a live command (not queued): expires unless that one takes it. */
  routed?: boolean;
  /** Delivered here for a caller waiting on another live instance, which announces its timeout. */
  foreign?: boolean;
  resolve(result: unknown): void;
  reject(err: CommandError): void;
}

const deviceKey = (tenant: string, serial: string) => `${tenant}\u0000${serial}`;

interface QueuedRow {
  id: string | number | bigint;
  correlation_id: string;
  name: string;
  params: unknown;
  expired: boolean;
  origin: string | null;
  timeout_ms: number | null;
  /** Its caller waits on another live instance. */
  foreign_origin: boolean | null;
}

interface OutcomeRow {
  correlation_id: string;
  status: string;
  result: unknown;
  error: string | null;
}

export class CommandRouter {
  private readonly waiters = new Map<string, Waiter>();
  /** Per device and command name, oldest first: MQTT answers carry no id. */
  private readonly byName = new Map<string, Waiter[]>();
  /** One queue flush at a time per device. */
  private readonly flushing = new Map<string, Promise<void>>();
  private readonly maxQueued: number;
  private readonly stopListening: () => void;
  private closed = false;

  constructor(private readonly options: CommandRouterOptions) {
    this.maxQueued = options.maxQueuedPerDevice ?? 100;
    this.stopListening = options.sessions.onAdded((session) => void this.flush(session));
    options.peers?.attach({
      flushDevice: (tenant, serial) => {
        const session = this.reachable(tenant, serial);
        if (session) void this.flush(session);
        return session !== undefined;
      },
      sent: (id) => this.remoteSent(id),
      done: (id) => void this.remoteDone(id).catch(() => undefined),
      recheck: () => void this.recheck().catch(() => undefined),
    });
  }

  /** Commands waiting for an answer or for their device, in memory. */
  get waiting(): number {
    return this.waiters.size;
  }

  /**
   * Sends a command to the device `serial` of `tenant`: at once when it is connected over TCP or
   * MQTT, else queued (options.queueIfOffline). Rejects with CommandError 'unknown-device',
   * 'offline', 'queue-full', 'invalid' or 'refused' (the session could not take it).
   */
  async send(tenant: string, serial: string, command: CommandSpec, options: SendOptions): Promise<CommandTicket> {
    if (this.closed) throw new CommandError('closed', 'the gateway is stopping');
    if (typeof command?.name !== 'string' || command.name === '') throw new CommandError('invalid', 'a command needs a name');
    if (params(command) !== undefined) {
      try {
        JSON.stringify(command.params);
      } catch (err) {
        throw new CommandError('invalid', `the command's parameters are not JSON: ${(err as Error).message}`);
      }
    }
    const device = await this.options.lookup(serial);
    if (!device || device.tenant !== tenant) throw new CommandError('unknown-device', `no device "${serial}" in tenant "${tenant}"`);
    const id = randomUUID();
    const { peers } = this.options;
    let session = this.reachable(tenant, serial);
    const holder = session || !peers ? undefined : await peers.holder(tenant, serial).catch(() => undefined);
    session ??= this.reachable(tenant, serial); // it may have connected here meanwhile
    if (session) {
      const { waiter, answer } = this.wait({ id, tenant, serial, name: command.name, timeoutMs: options.timeoutMs, persisted: false });
      this.deliver(session, waiter, command).catch((err: Error) =>
        this.fail(waiter, new CommandError('refused', `cannot send the command to device "${serial}": ${err.message}`, id)),
      );
      return { id, queued: false, answer };
    }
    if (holder) return this.route(holder, tenant, serial, device.id, id, command, options);
    if (!options.queueIfOffline) throw new CommandError('offline', `device "${serial}" is not connected`, id);

    const sql = await this.options.sql();
    const expiresAt = Date.now() + options.expiresInMs;
    await this.store(sql, tenant, serial, device.id, id, command, expiresAt, options.timeoutMs);
    const { waiter, answer } = this.wait({ id, tenant, serial, name: command.name, timeoutMs: options.timeoutMs, persisted: true });
    waiter.expiryTimer = setTimeout(
      () => {
        if (waiter.sent) return;
        this.fail(waiter, new CommandError('expired', `device "${serial}" did not connect before the command expired`, id));
        sql
          .query(`UPDATE device_commands SET status = 'expired', done_at = now() WHERE correlation_id = $1 AND status = 'queued'`, [id])
          .catch(() => undefined);
      },
      Math.max(1, options.expiresInMs),
    );
    waiter.expiryTimer.unref?.();
    // The device may have connected between the look and the insert, here or elsewhere (an
    // instance looks for queued commands after writing its device's row, so one of us sees the other).
    const now = this.reachable(tenant, serial);
    if (now) void this.flush(now);
    else if (peers) {
      peers
        .holder(tenant, serial)
        .then((h) => (h ? peers.askFlush(h, tenant, serial) : undefined))
        .catch(() => undefined);
    }
    return { id, queued: true, expiresAt, answer };
  }

  /**
   * A COMMAND_RESULT from a device: {id, result} or {id, error}. false when no command of this
   * device waits for that id (answered too late, or not ours).
   */
  result(device: Pick<DeviceIdentity, 'tenant' | 'serial'>, body: Record<string, unknown> & { id: string }): boolean {
    const waiter = this.waiters.get(String(body.id));
    if (!waiter || waiter.tenant !== device.tenant || waiter.serial !== device.serial || !waiter.sent || waiter.remote) return false;
    if (body.error !== undefined && body.error !== null) {
      const reason = typeof body.error === 'string' ? body.error : JSON.stringify(body.error);
      this.answered(waiter, { ok: false, error: reason });
      this.fail(waiter, new CommandError('refused', `device "${device.serial}" refused the command "${waiter.name}": ${reason}`, waiter.id), reason);
      return true;
    }
    let result: unknown;
    if ('result' in body) result = body.result;
    else {
      const { id: _id, ...rest } = body;
      result = rest;
    }
    this.succeed(waiter, result);
    return true;
  }

  /** MQTT: results named by command; each answers the oldest command of that name sent to the device. Returns how many matched. */
  resultsByName(device: Pick<DeviceIdentity, 'tenant' | 'serial'>, results: ReadonlyArray<{ name: string; result: unknown }>): number {
    let matched = 0;
    for (const r of results) {
      const list = this.byName.get(`${deviceKey(device.tenant, device.serial)}\u0000${r.name}`);
      const waiter = list?.find((w) => w.sent && !w.remote);
      if (!waiter) continue;
      this.succeed(waiter, r.result);
      matched++;
    }
    return matched;
  }

  /**
   * Stops waiting for a command (its caller hung up, its node closed); with a reason, its answer
   * promise rejects ('closed'). A queued one stays queued and is still delivered: its row records
   * the outcome.
   */
  abandon(id: string, reason?: string): void {
    const waiter = this.waiters.get(id);
    if (!waiter) return;
    this.forget(waiter);
    if (reason !== undefined) waiter.reject(new CommandError('closed', reason, id));
  }

  /**
   * Sends the device's queued commands, oldest first, over `session`: expired ones are marked
   * and never sent. Called when a session is added; for MQTT, again when the device subscribes
   * to its cmd topic (commands before that have nowhere to go and stay queued).
   */
  flush(session: Session): Promise<void> {
    if (this.closed || (session.transport !== 'tcp' && session.transport !== 'mqtt')) return Promise.resolve();
    const k = deviceKey(session.device.tenant, session.device.serial);
    const previous = this.flushing.get(k) ?? Promise.resolve();
    const next = previous.then(() => this.flushNow(session)).catch(() => undefined);
    this.flushing.set(k, next);
    void next.then(() => {
      if (this.flushing.get(k) === next) this.flushing.delete(k);
    });
    return next;
  }

  /** Fails every waiting command ('closed'); queued rows stay for the next start. */
  close(reason = 'the gateway is stopping'): void {
    this.closed = true;
    this.stopListening();
    for (const waiter of [...this.waiters.values()]) this.fail(waiter, new CommandError('closed', reason, waiter.id), undefined, false);
  }

  // ---------------------------------------------------------------------------------------------

  private reachable(tenant: string, serial: string): Session | undefined {
    const session = this.options.sessions.get(tenant, serial);
    return session && (session.transport === 'tcp' || session.transport === 'mqtt') ? session : undefined;
  }

  private wait(spec: Omit<Waiter, 'resolve' | 'reject' | 'sent'>): { waiter: Waiter; answer: Promise<unknown> } {
    let waiter!: Waiter;
    const answer = new Promise<unknown>((resolve, reject) => {
      waiter = { ...spec, sent: false, resolve, reject };
    });
    answer.catch(() => undefined); // a caller that stopped listening (abandon) leaves no unhandled rejection
    this.waiters.set(waiter.id, waiter);
    const nk = `${deviceKey(waiter.tenant, waiter.serial)}\u0000${waiter.name}`;
    const list = this.byName.get(nk);
    if (list) list.push(waiter);
    else this.byName.set(nk, [waiter]);
    return { waiter, answer };
  }

  /** Hands the command to the session and starts the answer timer. */
  private async deliver(session: Session, waiter: Waiter, command: CommandSpec): Promise<void> {
    const payload =
      session.transport === 'tcp' ? { id: waiter.id, name: command.name, params: params(command) ?? null } : { name: command.name, params: params(command) };
    waiter.remote = false; // delivered here: ours, whatever a recheck thought
    this.arm(waiter);
    try {
      await session.send('command', payload);
    } catch (err) {
      waiter.sent = false;
      clearTimeout(waiter.timer);
      throw err;
    }
  }

  /** Starts the answer timer. */
  private arm(waiter: Waiter): void {
    waiter.sent = true;
    clearTimeout(waiter.expiryTimer);
    clearTimeout(waiter.timer);
    waiter.timer = setTimeout(() => this.fail(waiter, timeoutError(waiter), 'timeout'), Math.max(1, waiter.timeoutMs));
    waiter.timer.unref?.();
  }

  /** Stores a command in device_commands, within the device's queue bound ('queue-full'), this instance its origin. */
  private async store(
    sql: SqlClient,
    tenant: string,
    serial: string,
    deviceId: DeviceIdentity['id'],
    id: string,
    command: CommandSpec,
    expiresAt: number,
    timeoutMs: number,
  ): Promise<void> {
    const inserted = await sql.query(
      `INSERT INTO device_commands (tenant_id, device_id, correlation_id, name, params, expires_at, origin, timeout_ms)
       SELECT $1, $2, $3, $4, $5::jsonb, $6, $8, $9
       WHERE (SELECT count(*) FROM device_commands
              WHERE tenant_id = $1 AND device_id = $2 AND status = 'queued' AND expires_at > now()) < $7`,
      [
        tenant,
        deviceId,
        id,
        command.name,
        params(command) === undefined ? null : JSON.stringify(command.params),
        new Date(expiresAt),
        this.maxQueued,
        this.options.peers?.instanceId ?? null,
        Math.min(2_147_483_647, Math.round(timeoutMs)),
      ],
    );
    if (inserted.rowCount === 0) throw new CommandError('queue-full', `the command queue of device "${serial}" is full (${this.maxQueued} waiting)`, id);
  }

  /**
   * The device's session is on instance `holder`: the command goes into device_commands, expiring
   * with the caller's timeout (never delivered after the caller gave up), and `holder` is asked to
   * flush the device's queue. The caller waits as for a live command; if `holder` died, its timeout.
   */
  private async route(
    holder: string,
    tenant: string,
    serial: string,
    deviceId: DeviceIdentity['id'],
    id: string,
    command: CommandSpec,
    options: SendOptions,
  ): Promise<CommandTicket> {
    const sql = await this.options.sql();
    await this.store(sql, tenant, serial, deviceId, id, command, Date.now() + options.timeoutMs, options.timeoutMs);
    const { waiter, answer } = this.wait({ id, tenant, serial, name: command.name, timeoutMs: options.timeoutMs, persisted: true });
    waiter.remote = waiter.routed = true;
    this.arm(waiter);
    this.options
      .peers!.askFlush(holder, tenant, serial)
      .catch((err: Error) => this.fail(waiter, new CommandError('refused', `cannot reach the instance that holds device "${serial}": ${err.message}`, id)));
    return { id, queued: false, answer };
  }

  /** Another instance delivered a command waited for here: its answer timer starts (a queued one's) or goes on. */
  private remoteSent(id: string): void {
    const waiter = this.waiters.get(id);
    if (!waiter || (waiter.sent && !waiter.remote)) return;
    waiter.remote = true;
    if (!waiter.sent) this.arm(waiter);
  }

  /** Another instance recorded the outcome of a command waited for here: read it from the row. */
  private async remoteDone(id: string): Promise<void> {
    const waiter = this.waiters.get(id);
    if (!waiter || (waiter.sent && !waiter.remote)) return;
    const sql = await this.options.sql();
    const { rows } = await sql.query<OutcomeRow>(`SELECT correlation_id, status, result, error FROM device_commands WHERE correlation_id = $1`, [id]);
    if (rows[0]) this.settle(waiter, rows[0]);
  }

  /** Reads the rows of every command waited for here that another instance may have delivered. */
  private async recheck(): Promise<void> {
    const ids = [...this.waiters.values()].filter((w) => w.persisted && (w.remote || !w.sent)).map((w) => w.id);
    if (ids.length === 0) return;
    const sql = await this.options.sql();
    const { rows } = await sql.query<OutcomeRow>(
      `SELECT correlation_id, status, result, error FROM device_commands WHERE correlation_id = ANY($1::text[]) AND status IN ('sent', 'answered', 'failed')`,
      [ids],
    );
    for (const row of rows) {
      const waiter = this.waiters.get(row.correlation_id);
      if (waiter) this.settle(waiter, row);
    }
  }

  private settle(waiter: Waiter, row: OutcomeRow): void {
    if (this.waiters.get(waiter.id) !== waiter || (waiter.sent && !waiter.remote)) return; // settled, or delivered here
    if (row.status === 'sent') return this.remoteSent(waiter.id);
    if (row.status !== 'answered' && row.status !== 'failed') return;
    waiter.remote = true;
    if (row.status === 'answered') return this.succeed(waiter, row.result ?? undefined);
    const reason = row.error ?? 'no reason given';
    this.fail(
      waiter,
      reason === 'timeout'
        ? timeoutError(waiter)
        : new CommandError('refused', `device "${waiter.serial}" refused the command "${waiter.name}": ${reason}`, waiter.id),
    );
  }

  private async flushNow(session: Session): Promise<void> {
    const { tenant, serial, id: deviceId } = session.device;
    const sql = await this.options.sql();
    const { rows } = await sql.query<QueuedRow>(
      `SELECT id, correlation_id, name, params, expires_at <= now() AS expired, origin, timeout_ms,
              origin <> $3 AND EXISTS (SELECT 1 FROM gateway_instances i WHERE i.id = origin) AS foreign_origin
       FROM device_commands WHERE tenant_id = $1 AND device_id = $2 AND status = 'queued' ORDER BY id`,
      [tenant, deviceId, this.options.peers?.instanceId ?? ''],
    );
    for (const row of rows) {
      if (this.closed || this.options.sessions.get(tenant, serial) !== session) return;
      let waiter = this.waiters.get(row.correlation_id);
      if (row.expired) {
        const marked = await sql.query(`UPDATE device_commands SET status = 'expired', done_at = now() WHERE id = $1 AND status = 'queued'`, [row.id]);
        if (waiter) this.fail(waiter, new CommandError('expired', `device "${serial}" did not connect before the command expired`, waiter.id));
        // Queued before a restart: no one waits in memory, but the expiry is still an event (unless
        // its caller waits on another instance, which announces it).
        else if (marked.rowCount === 1 && !row.foreign_origin)
          this.timedOut({ tenant, serial, id: row.correlation_id, name: row.name, persisted: true, timeoutMs: 0 }, 'expired');
        continue;
      }
      // Claim it, so that two flushes (two gateways on one database) never send it twice.
      const claimed = await sql.query(
        `UPDATE device_commands SET status = 'sent', attempts = attempts + 1, sent_at = now() WHERE id = $1 AND status = 'queued'`,
        [row.id],
      );
      if (claimed.rowCount === 0) continue;
      // Queued before a restart, or through another instance: no one waits here, but the row records
      // the answer (and the origin instance hears of it).
      const mine = waiter;
      waiter ??= this.wait({
        id: row.correlation_id,
        tenant,
        serial,
        name: row.name,
        timeoutMs: row.timeout_ms ?? this.options.defaultTimeoutMs ?? 30_000,
        persisted: true,
        foreign: row.foreign_origin === true,
      }).waiter;
      try {
        await this.deliver(session, waiter, { name: row.name, params: row.params ?? undefined });
      } catch {
        // The session went away (or the MQTT device has not subscribed yet): back in the queue.
        if (!mine) this.forget(waiter);
        else waiter.sent = false;
        await sql.query(`UPDATE device_commands SET status = 'queued' WHERE id = $1 AND status = 'sent'`, [row.id]);
        return;
      }
      if (row.foreign_origin) this.options.peers?.tell(row.origin!, 'sent', row.correlation_id).catch(() => undefined);
    }
  }

  private answered(waiter: Waiter, answer: CommandAnswer): void {
    const { tenant, serial, id: commandId, name: command } = waiter;
    emitTo(this.options.onEvent, () => commandAnswered({ tenant, serial, commandId, command, at: Date.now(), answer }));
  }

  private succeed(waiter: Waiter, result: unknown): void {
    if (!waiter.remote) this.answered(waiter, { ok: true, result: result ?? null });
    this.forget(waiter);
    if (waiter.persisted && !waiter.remote) this.record(waiter.id, 'answered', result, null);
    waiter.resolve(result);
  }

  /** `stored` is the error recorded in the row (undefined: leave the row as it is). */
  private fail(waiter: Waiter, err: CommandError, stored: string | undefined = err.message, record = true): void {
    if (!this.waiters.has(waiter.id)) return;
    this.forget(waiter);
    // The caller's instance announces its timeout; the one that delivered it records the row.
    if ((err.code === 'timeout' || err.code === 'expired') && !waiter.foreign) this.timedOut(waiter, err.code);
    if (waiter.routed && record) this.expireQueued(waiter.id);
    else if (record && waiter.persisted && waiter.sent && !waiter.remote && stored !== undefined) this.record(waiter.id, 'failed', null, stored);
    waiter.reject(err);
  }

  /** A routed command no instance took before its caller gave up: never delivered now. */
  private expireQueued(id: string): void {
    this.options
      .sql()
      .then((sql) => sql.query(`UPDATE device_commands SET status = 'expired', done_at = now() WHERE correlation_id = $1 AND status = 'queued'`, [id]))
      .catch(() => undefined);
  }

  private timedOut(waiter: Pick<Waiter, 'tenant' | 'serial' | 'id' | 'name' | 'persisted' | 'timeoutMs' | 'routed'>, reason: 'timeout' | 'expired'): void {
    const { tenant, serial, id: commandId, name: command } = waiter;
    const queued = waiter.persisted && !waiter.routed;
    emitTo(this.options.onEvent, () =>
      commandTimedOut({ tenant, serial, commandId, command, at: Date.now(), reason, queued, ...(reason === 'timeout' ? { timeoutMs: waiter.timeoutMs } : {}) }),
    );
  }

  private forget(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    clearTimeout(waiter.expiryTimer);
    if (this.waiters.get(waiter.id) === waiter) this.waiters.delete(waiter.id);
    const nk = `${deviceKey(waiter.tenant, waiter.serial)}\u0000${waiter.name}`;
    const list = this.byName.get(nk);
    if (list) {
      const i = list.indexOf(waiter);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.byName.delete(nk);
    }
  }

  private record(id: string, status: 'answered' | 'failed', result: unknown, error: string | null): void {
    this.options
      .sql()
      .then((sql) =>
        sql.query<{ origin: string | null }>(
          `UPDATE device_commands SET status = $2, result = $3::jsonb, error = $4, done_at = now() WHERE correlation_id = $1 AND status = 'sent' RETURNING origin`,
          [id, status, result === undefined ? null : JSON.stringify(result), error],
        ),
      )
      .then(({ rows }) => {
        // Queued or sent through another instance: its caller waits there.
        const { peers } = this.options;
        const origin = rows[0]?.origin;
        if (peers && origin && origin !== peers.instanceId) return peers.tell(origin, 'done', id);
      })
      .catch(() => undefined);
  }
}

function timeoutError(waiter: Pick<Waiter, 'serial' | 'name' | 'timeoutMs' | 'id'>): CommandError {
  return new CommandError('timeout', `device "${waiter.serial}" did not answer the command "${waiter.name}" within ${waiter.timeoutMs} ms`, waiter.id);
}

function params(command: CommandSpec): unknown {
  return command.params;
}
