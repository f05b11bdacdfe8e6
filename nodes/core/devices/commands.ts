/**
 * Commands, central system → device (issue 4, item 6): one CommandRouter per gateway sends a
 * command to the device's live session and waits for the answer carrying the same correlation
 * id, or a timeout. A device that is offline gets its commands later: they wait in the business
 * store (migration 003's device_commands), at most maxQueuedPerDevice per device, each until its
 * expiry, and go out in order when the device connects again (SessionRegistry.onAdded, or an
 * MQTT device subscribing to its cmd topic). Framework-free.
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
  /** Handed to a session, waiting for the answer. */
  sent: boolean;
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
    const session = this.reachable(tenant, serial);
    if (session) {
      const { waiter, answer } = this.wait({ id, tenant, serial, name: command.name, timeoutMs: options.timeoutMs, persisted: false });
      this.deliver(session, waiter, command).catch((err: Error) =>
        this.fail(waiter, new CommandError('refused', `cannot send the command to device "${serial}": ${err.message}`, id)),
      );
      return { id, queued: false, answer };
    }
    if (!options.queueIfOffline) throw new CommandError('offline', `device "${serial}" is not connected`, id);

    const sql = await this.options.sql();
    const expiresAt = Date.now() + options.expiresInMs;
    const inserted = await sql.query(
      `INSERT INTO device_commands (tenant_id, device_id, correlation_id, name, params, expires_at)
       SELECT $1, $2, $3, $4, $5::jsonb, $6
       WHERE (SELECT count(*) FROM device_commands
              WHERE tenant_id = $1 AND device_id = $2 AND status = 'queued' AND expires_at > now()) < $7`,
      [tenant, device.id, id, command.name, params(command) === undefined ? null : JSON.stringify(command.params), new Date(expiresAt), this.maxQueued],
    );
    if (inserted.rowCount === 0) throw new CommandError('queue-full', `the command queue of device "${serial}" is full (${this.maxQueued} waiting)`, id);
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
    // The device may have connected between the look and the insert.
    const now = this.reachable(tenant, serial);
    if (now) void this.flush(now);
    return { id, queued: true, expiresAt, answer };
  }

  /**
   * A COMMAND_RESULT from a device: {id, result} or {id, error}. false when no command of this
   * device waits for that id (answered too late, or not ours).
   */
  result(device: Pick<DeviceIdentity, 'tenant' | 'serial'>, body: Record<string, unknown> & { id: string }): boolean {
    const waiter = this.waiters.get(String(body.id));
    if (!waiter || waiter.tenant !== device.tenant || waiter.serial !== device.serial || !waiter.sent) return false;
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
      const waiter = list?.find((w) => w.sent);
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
    waiter.sent = true;
    clearTimeout(waiter.expiryTimer);
    waiter.timer = setTimeout(
      () =>
        this.fail(
          waiter,
          new CommandError('timeout', `device "${waiter.serial}" did not answer the command "${waiter.name}" within ${waiter.timeoutMs} ms`, waiter.id),
          'timeout',
        ),
      Math.max(1, waiter.timeoutMs),
    );
    waiter.timer.unref?.();
    try {
      await session.send('command', payload);
    } catch (err) {
      waiter.sent = false;
      clearTimeout(waiter.timer);
      throw err;
    }
  }

  private async flushNow(session: Session): Promise<void> {
    const { tenant, serial, id: deviceId } = session.device;
    const sql = await this.options.sql();
    const { rows } = await sql.query<QueuedRow>(
      `SELECT id, correlation_id, name, params, expires_at <= now() AS expired FROM device_commands
       WHERE tenant_id = $1 AND device_id = $2 AND status = 'queued' ORDER BY id`,
      [tenant, deviceId],
    );
    for (const row of rows) {
      if (this.closed || this.options.sessions.get(tenant, serial) !== session) return;
      let waiter = this.waiters.get(row.correlation_id);
      if (row.expired) {
        const marked = await sql.query(`UPDATE device_commands SET status = 'expired', done_at = now() WHERE id = $1 AND status = 'queued'`, [row.id]);
        if (waiter) this.fail(waiter, new CommandError('expired', `device "${serial}" did not connect before the command expired`, waiter.id));
        // Queued before a restart: no one waits in memory, but the expiry is still an event.
        else if (marked.rowCount === 1) this.timedOut({ tenant, serial, id: row.correlation_id, name: row.name, persisted: true, timeoutMs: 0 }, 'expired');
        continue;
      }
      // Claim it, so that two flushes (two gateways on one database) never send it twice.
      const claimed = await sql.query(
        `UPDATE device_commands SET status = 'sent', attempts = attempts + 1, sent_at = now() WHERE id = $1 AND status = 'queued'`,
        [row.id],
      );
      if (claimed.rowCount === 0) continue;
      // Queued before a restart: no one waits in memory, but the row records the answer.
      waiter ??= this.wait({
        id: row.correlation_id,
        tenant,
        serial,
        name: row.name,
        timeoutMs: this.options.defaultTimeoutMs ?? 30_000,
        persisted: true,
      }).waiter;
      try {
        await this.deliver(session, waiter, { name: row.name, params: row.params ?? undefined });
      } catch {
        // The session went away (or the MQTT device has not subscribed yet): back in the queue.
        await sql.query(`UPDATE device_commands SET status = 'queued' WHERE id = $1 AND status = 'sent'`, [row.id]);
        return;
      }
    }
  }

  private answered(waiter: Waiter, answer: CommandAnswer): void {
    const { tenant, serial, id: commandId, name: command } = waiter;
    emitTo(this.options.onEvent, () => commandAnswered({ tenant, serial, commandId, command, at: Date.now(), answer }));
  }

  private succeed(waiter: Waiter, result: unknown): void {
    this.answered(waiter, { ok: true, result: result ?? null });
    this.forget(waiter);
    if (waiter.persisted) this.record(waiter.id, 'answered', result, null);
    waiter.resolve(result);
  }

  /** `stored` is the error recorded in the row (undefined: leave the row as it is). */
  private fail(waiter: Waiter, err: CommandError, stored: string | undefined = err.message, record = true): void {
    if (!this.waiters.has(waiter.id)) return;
    this.forget(waiter);
    if (err.code === 'timeout' || err.code === 'expired') this.timedOut(waiter, err.code);
    if (record && waiter.persisted && waiter.sent && stored !== undefined) this.record(waiter.id, 'failed', null, stored);
    waiter.reject(err);
  }

  private timedOut(waiter: Pick<Waiter, 'tenant' | 'serial' | 'id' | 'name' | 'persisted' | 'timeoutMs'>, reason: 'timeout' | 'expired'): void {
    const { tenant, serial, id: commandId, name: command, persisted: queued } = waiter;
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
        sql.query(`UPDATE device_commands SET status = $2, result = $3::jsonb, error = $4, done_at = now() WHERE correlation_id = $1 AND status = 'sent'`, [
          id,
          status,
          result === undefined ? null : JSON.stringify(result),
          error,
        ]),
      )
      .catch(() => undefined);
  }
}

function params(command: CommandSpec): unknown {
  return command.params;
}

/** The command a message asks for: msg.command {name, params}, or msg.command the name and msg.payload its parameters. */
export function commandFromMessage(msg: { command?: unknown; payload?: unknown }): CommandSpec {
  const c = msg.command;
  if (typeof c === 'string' && c !== '') return { name: c, params: msg.payload };
  if (c !== null && typeof c === 'object' && typeof (c as CommandSpec).name === 'string' && (c as CommandSpec).name !== '') {
    return { name: (c as CommandSpec).name, params: (c as CommandSpec).params };
  }
  throw new CommandError('invalid', 'msg.command must be a command name, or {name, params}');
}

/** The device a message names: msg.device {tenant, id}, or msg.tenant and msg.serial; tenant 'default' when none. */
export function deviceFromMessage(msg: { device?: { tenant?: unknown; id?: unknown }; tenant?: unknown; serial?: unknown }): {
  tenant: string;
  serial: string;
} {
  const serial = msg.device?.id ?? msg.serial;
  if (typeof serial !== 'string' || serial === '') throw new CommandError('invalid', 'msg.device.id (or msg.serial) must name the device by its serial');
  const tenant = msg.device?.tenant ?? msg.tenant ?? 'default';
  if (typeof tenant !== 'string' || tenant === '') throw new CommandError('invalid', 'msg.device.tenant (or msg.tenant) must be a tenant id');
  return { tenant, serial };
}

/**
 * Sends the command a flow message asks for straight to its device, with no queue and no answer
 * awaited: through `publish` when devices are reached over an external broker, else over the
 * device's live session.
 */
export async function sendCommandNow(
  msg: Parameters<typeof commandFromMessage>[0] & Parameters<typeof deviceFromMessage>[0],
  sessions: SessionRegistry,
  publish?: (device: { tenant: string; id: string }, command: CommandSpec) => Promise<void>,
): Promise<void> {
  const command = commandFromMessage(msg);
  const { tenant, serial } = deviceFromMessage(msg);
  if (publish) return publish({ tenant, id: serial }, command);
  const session = sessions.get(tenant, serial);
  if (!session) throw new Error(`device ${tenant}/${serial} is not connected`);
  await session.send('command', command);
}
