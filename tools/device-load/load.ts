/**
 * Load and count: devices that send readings as fast as their window allows over HTTP, TCP and
 * MQTT with the reference client (tools/device-client), and remember which readings the platform
 * acknowledged (HTTP 202, TCP ACK frame, MQTT PUBACK). What is not acknowledged is sent again,
 * as a device does after a refusal or a dropped connection: on the same connection after a short
 * wait, or on a new one once the platform answers again. Used by the crash test and the fault
 * tests; reconcile.ts compares what it counted with what the database holds.
 *
 * Every reading is one SenML record `<phase>/seq` (stored as `<serial>/<phase>/seq`) with its own
 * device time t (strictly increasing per device) and a value v unique on its name, so each one
 * can be found in the readings table, and a repeat of it has the same (tenant, name, t).
 *
 *   const load = new DeviceLoad(devices, { onAck: (r, n) => n.total === 1000 && kill() });
 *   load.start(target, 'round-1');          // readings as fast as acknowledged
 *   load.stopGenerating();                   // no new readings; unacknowledged ones still resent
 *   await load.settled(60_000);             // every reading acknowledged
 *   await load.stop();
 */
import { postReadings } from '../device-client/http';
import { MqttDevice } from '../device-client/mqtt';
import { connect, DeviceRefusedError, type TcpDeviceClient } from '../device-client/tcp';

export type LoadTransport = 'http' | 'tcp' | 'mqtt';
export const LOAD_TRANSPORTS: readonly LoadTransport[] = ['http', 'tcp', 'mqtt'];

export interface LoadDevice {
  transport: LoadTransport;
  serial: string;
  key: string;
  /** The device's tenant (its MQTT topic level). Default 'default'. */
  tenant?: string;
}

/** Where the platform listens; may change between start() calls (a restart on other ports). */
export interface LoadTarget {
  /** Default 127.0.0.1. */
  host?: string;
  /** The HTTP listener's base, e.g. http://127.0.0.1:1880/devices */
  httpBase: string;
  tcpPort: number;
  mqttPort: number;
}

export interface Reading {
  transport: LoadTransport;
  serial: string;
  tenant: string;
  /** The stored name: `<serial>/<phase>/seq`. */
  name: string;
  /** Device time, seconds since the epoch. */
  t: number;
  /** Unique on its name. */
  v: number;
  phase: string;
  /** Times it was sent (1 when acknowledged at the first try). */
  attempts: number;
  acked: boolean;
  /** When it was acknowledged (ms since the epoch). */
  ackedAt?: number;
}

export interface LoadCounts {
  /** Readings acknowledged since start(), per transport, and their total. */
  acked: Record<LoadTransport, number>;
  total: number;
}

export interface LoadOptions {
  /** Readings a device leaves unacknowledged at most (its window). Default 8. */
  window?: number;
  /** Device time of each device's first reading, seconds. Default: an hour before now. */
  origin?: number;
  /** Seconds between two readings of a device. Default 0.001 (timestamps keep microseconds). */
  step?: number;
  /** Longest wait for one answer before the reading counts as unacknowledged. Default 30 s. */
  answerTimeoutMs?: number;
  /** Called for each acknowledgement, synchronously: the place to kill the platform at an exact count. */
  onAck?: (reading: Reading, counts: LoadCounts) => void;
}

/** A connection is gone (or never came): the device waits, then connects again. */
class Offline extends Error {}
/** The platform refused the reading (a status, an ERROR frame, a PUBACK reason code): send it again later. */
class Refused extends Error {}

interface Connection {
  send(reading: Reading): Promise<void>;
  close(): Promise<void>;
}

const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 500;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

class Device {
  seq = 0;
  /** Readings to send again, oldest first. */
  readonly queue: Reading[] = [];
  readonly inFlight = new Set<Reading>();
  running: Promise<void> | undefined;
  connection: Connection | undefined;
  lastError = '';
  /** Sends and connection attempts that failed. */
  failures = 0;

  constructor(readonly spec: LoadDevice) {}
}

export class DeviceLoad {
  readonly readings: Reading[] = [];
  private readonly devices: Device[];
  private readonly window: number;
  private readonly origin: number;
  private readonly step: number;
  private readonly answerTimeoutMs: number;
  private target: LoadTarget | undefined;
  private phase = '';
  private generating = false;
  private active = false;
  private counts: LoadCounts = { acked: { http: 0, tcp: 0, mqtt: 0 }, total: 0 };
  private idleWaiters: Array<() => void> = [];
  /** A bug in the load itself or in onAck: reported by settled(). */
  private fatal: Error | undefined;

  constructor(
    devices: readonly LoadDevice[],
    private readonly options: LoadOptions = {},
  ) {
    this.devices = devices.map((d) => new Device(d));
    this.window = options.window ?? 8;
    this.origin = options.origin ?? Math.floor(Date.now() / 1000) - 3600;
    this.step = options.step ?? 0.001;
    this.answerTimeoutMs = options.answerTimeoutMs ?? 30_000;
  }

  /** Acknowledgements since the last start(). */
  get acked(): LoadCounts {
    return { acked: { ...this.counts.acked }, total: this.counts.total };
  }

  /** Readings not acknowledged yet (queued or in flight). */
  get unacknowledged(): number {
    return this.devices.reduce((n, d) => n + d.queue.length + d.inFlight.size, 0);
  }

  /**
   * Per device (in the order given), its sends and connection attempts that failed (refused,
   * dropped, unanswered, login refused): a fault test waits until each has met the outage.
   */
  get failures(): number[] {
    return this.devices.map((d) => d.failures);
  }

  /** The last connection or refusal error of each device that had one: for failure messages. */
  get errors(): string[] {
    return this.devices.filter((d) => d.lastError).map((d) => `${d.spec.serial}: ${d.lastError}`);
  }

  /**
   * New readings of `phase` from every device as fast as acknowledged (after the unacknowledged
   * ones of earlier phases), until stopGenerating(). Resets the acknowledgement counts.
   */
  start(target: LoadTarget, phase: string): void {
    this.target = target;
    this.phase = phase;
    this.counts = { acked: { http: 0, tcp: 0, mqtt: 0 }, total: 0 };
    this.generating = true;
    this.resume(target);
  }

  /** Devices (re)connect to target and send what is unacknowledged; no new readings unless generating. */
  resume(target: LoadTarget): void {
    this.target = target;
    this.active = true;
    for (const d of this.devices) {
      d.running ??= this.run(d)
        .catch((err: Error) => {
          this.fatal ??= err;
          this.wake();
        })
        .finally(() => (d.running = undefined));
    }
  }

  /** No new readings from now on (synchronous: call it in onAck right after a kill). */
  stopGenerating(): void {
    this.generating = false;
  }

  /** Resolves when every reading was acknowledged; rejects after timeoutMs with what is missing. */
  async settled(timeoutMs: number): Promise<void> {
    if (this.generating) throw new Error('stopGenerating() first: a generating load never settles');
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve) => {
          if (this.unacknowledged === 0 || this.fatal) resolve();
          else this.idleWaiters.push(resolve);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new Error(`${this.unacknowledged} readings still unacknowledged after ${timeoutMs} ms; last errors: ${this.errors.join('; ') || 'none'}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    if (this.fatal) throw this.fatal;
  }

  private wake(): void {
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Stops every device and closes its connection; unacknowledged readings stay counted as such. */
  async stop(): Promise<void> {
    this.generating = false;
    this.active = false;
    await Promise.all(this.devices.map((d) => d.connection?.close().catch(() => undefined)));
    await Promise.all(this.devices.map((d) => d.running));
  }

  private newReading(d: Device): Reading {
    const seq = ++d.seq;
    const reading: Reading = {
      transport: d.spec.transport,
      serial: d.spec.serial,
      tenant: d.spec.tenant ?? 'default',
      name: `${d.spec.serial}/${this.phase}/seq`,
      t: this.origin + seq * this.step,
      v: seq,
      phase: this.phase,
      attempts: 0,
      acked: false,
    };
    this.readings.push(reading);
    return reading;
  }

  /** A device's life: connect, send with `window` lanes until idle or offline, wait, again. */
  private async run(d: Device): Promise<void> {
    let backoff = RETRY_MIN_MS;
    while (this.active && (this.generating || d.queue.length > 0)) {
      try {
        d.connection = await this.open(d);
        backoff = RETRY_MIN_MS;
        const session = { broken: false };
        const lanes = await Promise.allSettled(Array.from({ length: this.window }, () => this.lane(d, d.connection!, session)));
        for (const lane of lanes) if (lane.status === 'rejected' && !(lane.reason instanceof Offline)) throw lane.reason;
      } catch (err) {
        if (!(err instanceof Offline)) throw err;
        d.lastError = err.message;
        if (!d.connection) d.failures++; // the connection failed; a refused or dropped send is counted in its lane
      } finally {
        const c = d.connection;
        d.connection = undefined;
        await c?.close().catch(() => undefined);
      }
      if (!this.active || (!this.generating && d.queue.length === 0)) break;
      await sleep(backoff);
      backoff = Math.min(RETRY_MAX_MS, backoff * 2);
    }
  }

  /**
   * One unacknowledged slot: sends a reading, waits for its answer, takes the next. A dropped
   * connection ends every lane of the session (each finishing what it has in flight first).
   */
  private async lane(d: Device, c: Connection, session: { broken: boolean }): Promise<void> {
    while (this.active && !session.broken) {
      const reading = d.queue.shift() ?? (this.generating ? this.newReading(d) : undefined);
      if (!reading) return;
      d.inFlight.add(reading);
      reading.attempts++;
      try {
        await c.send(reading);
      } catch (err) {
        d.inFlight.delete(reading);
        d.queue.unshift(reading);
        d.lastError = (err as Error).message;
        if (err instanceof Refused) {
          d.failures++;
          await sleep(RETRY_MAX_MS);
          continue;
        }
        if (!session.broken) d.failures++; // a dropped connection once, not once per lane
        session.broken = true;
        throw err instanceof Offline ? err : new Offline((err as Error).message);
      }
      d.inFlight.delete(reading);
      this.acknowledged(reading);
    }
  }

  private acknowledged(reading: Reading): void {
    if (reading.acked) throw new Error(`${reading.name} v=${reading.v} acknowledged twice`);
    reading.acked = true;
    reading.ackedAt = Date.now();
    if (reading.phase === this.phase) {
      this.counts.acked[reading.transport]++;
      this.counts.total++;
    }
    this.options.onAck?.(reading, this.counts);
    if (this.unacknowledged === 0 && !this.generating) this.wake();
  }

  private async open(d: Device): Promise<Connection> {
    const target = this.target!;
    const host = target.host ?? '127.0.0.1';
    const { serial, key } = d.spec;
    const tenant = d.spec.tenant ?? 'default';
    const record = (r: Reading) => [{ n: `${r.phase}/seq`, t: r.t, v: r.v }];
    const timeoutMs = this.answerTimeoutMs;
    switch (d.spec.transport) {
      case 'http':
        return {
          async send(r) {
            let status: number;
            let reason: string;
            try {
              const res = await postReadings({
                base: target.httpBase,
                serial,
                key,
                format: 'senml+json',
                body: record(r),
                signal: AbortSignal.timeout(timeoutMs),
              });
              status = res.status;
              reason = res.problem?.detail ?? res.problem?.title ?? '';
            } catch (err) {
              const cause = (err as { cause?: Error }).cause;
              throw new Offline(`HTTP: ${(err as Error).message}${cause ? ` (${cause.message})` : ''}`);
            }
            if (status !== 202) throw new Refused(`HTTP ${status}: ${reason}`);
          },
          close: async () => undefined,
        };
      case 'tcp': {
        let client: TcpDeviceClient;
        try {
          client = await connect({ host, port: target.tcpPort, serial, key, timeoutMs });
        } catch (err) {
          throw new Offline(`TCP login: ${(err as Error).message}`);
        }
        return {
          async send(r) {
            try {
              await client.sendReadings('senml-json', record(r));
            } catch (err) {
              if (err instanceof DeviceRefusedError && err.frameId !== 0 && client.open) throw new Refused(`TCP ERROR frame: ${err.message}`);
              throw new Offline(`TCP: ${(err as Error).message}`);
            }
          },
          close: () => client.close(),
        };
      }
      case 'mqtt': {
        let device: MqttDevice;
        try {
          device = await MqttDevice.connect({ url: `mqtt://${host}:${target.mqttPort}`, serial, key, tenant, reconnectPeriod: 0, connectTimeout: timeoutMs });
        } catch (err) {
          throw new Offline(`MQTT connect: ${(err as Error).message}`);
        }
        // Without automatic reconnection, a QoS 1 publish pending when the connection drops may
        // never settle: the close settles it as unacknowledged.
        const closed = new Promise<never>((_, reject) => device.client.once('close', () => reject(new Offline('MQTT: connection closed'))));
        closed.catch(() => undefined);
        return {
          async send(r) {
            if (!device.client.connected) throw new Offline('MQTT: not connected');
            let timer: NodeJS.Timeout | undefined;
            try {
              await Promise.race([
                device.publish('senml+json', record(r), { qos: 1 }),
                closed,
                new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Offline(`MQTT: no PUBACK within ${timeoutMs} ms`)), timeoutMs))),
              ]);
            } catch (err) {
              if (err instanceof Offline) throw err;
              const code = (err as { code?: unknown }).code;
              if (typeof code === 'number' && code >= 0x80 && device.client.connected)
                throw new Refused(`MQTT PUBACK reason 0x${code.toString(16)}: ${(err as Error).message}`);
              throw new Offline(`MQTT: ${(err as Error).message}`);
            } finally {
              clearTimeout(timer);
            }
          },
          close: () => device.client.endAsync(true).catch(() => undefined),
        };
      }
    }
  }
}
