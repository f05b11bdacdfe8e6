/**
 * The live sessions of connected devices, one registry per gateway: who is online, on which
 * transport, and how to reach them (commands, issue 4's central → device path). Bounded: at most
 * maxSessions at once. A device that connects again replaces its older session, which is closed
 * (a half-open TCP connection must not hold a device's place). With an event sink, every session
 * gives one device.connected when added and one device.disconnected when it ends (removed,
 * replaced, or all closed), both named by the device and the session's start. Framework-free.
 */
import { deviceConnected, deviceDisconnected, emitTo, type EventSink } from '../events/platform';
import type { DeviceIdentity } from './directory';
import { sessionClosed, sessionOpened } from '../metrics/metrics';

export interface Session {
  readonly device: DeviceIdentity;
  readonly transport: 'tcp' | 'mqtt' | 'http' | 'udp';
  /** Sends a frame or message to the device (a command, a UDP token); rejects when the session is gone. */
  send(kind: string, payload: unknown): Promise<void>;
  /** Closes the session with a reason the device may see. */
  close(reason: string): void;
}

export class SessionLimitError extends Error {
  override readonly name = 'SessionLimitError';
}

const key = (tenant: string, serial: string) => `${tenant}\u0000${serial}`;

export type SessionListener = (session: Session) => void;

export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();
  private readonly addedListeners = new Set<SessionListener>();
  private readonly endedListeners = new Set<SessionListener>();
  /** Live sessions' start times: a session in here has had its connected event and not yet its disconnected. */
  private readonly started = new Map<Session, number>();

  constructor(
    private readonly maxSessions: number,
    private readonly options: { onEvent?: EventSink } = {},
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  /** Adds a session; a previous session of the same device is closed and replaced. */
  add(session: Session): void {
    const k = key(session.device.tenant, session.device.serial);
    const previous = this.sessions.get(k);
    if (!previous && this.sessions.size >= this.maxSessions) throw new SessionLimitError(`session limit reached (${this.maxSessions})`);
    this.sessions.set(k, session);
    if (previous && previous !== session) {
      this.ended(previous, 'replaced by a newer session of this device');
      previous.close('replaced by a newer session of this device');
    }
    if (!this.started.has(session)) {
      const connectedAt = Date.now();
      this.started.set(session, connectedAt);
      sessionOpened(session.transport);
      emitTo(this.options.onEvent, () => deviceConnected({ ...facts(session), connectedAt }));
    }
    for (const listener of [...this.addedListeners]) {
      try {
        listener(session);
      } catch {
        // a listener's failure is its own; the session stands
      }
    }
  }

  /**
   * Calls `listener` with every session added from now on (after it is registered): how queued
   * commands learn that their device is back. Returns the function that stops it.
   */
  onAdded(listener: SessionListener): () => void {
    this.addedListeners.add(listener);
    return () => this.addedListeners.delete(listener);
  }

  /**
   * Calls `listener` with every session that ends from now on (removed, replaced, or all closed),
   * after the registry has forgotten it: get() then gives the device's newer session, if any.
   * Returns the function that stops it.
   */
  onEnded(listener: SessionListener): () => void {
    this.endedListeners.add(listener);
    return () => this.endedListeners.delete(listener);
  }

  /** Removes the session if it is still the device's current one; `reason` goes into device.disconnected. */
  remove(session: Session, reason = 'the connection closed'): void {
    const k = key(session.device.tenant, session.device.serial);
    if (this.sessions.get(k) === session) this.sessions.delete(k);
    this.ended(session, reason);
  }

  get(tenant: string, serial: string): Session | undefined {
    return this.sessions.get(key(tenant, serial));
  }

  /** Every current session. */
  all(): IterableIterator<Session> {
    return this.sessions.values();
  }

  /** When the device's current session started (ms), or undefined when it is offline. */
  connectedAt(tenant: string, serial: string): number | undefined {
    const session = this.sessions.get(key(tenant, serial));
    return session && this.started.get(session);
  }

  /** Closes every session (a redeploy). */
  closeAll(reason: string): void {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) {
      this.ended(s, reason);
      s.close(reason);
    }
  }

  private ended(session: Session, reason: string): void {
    const connectedAt = this.started.get(session);
    if (connectedAt === undefined) return;
    this.started.delete(session);
    sessionClosed(session.transport);
    emitTo(this.options.onEvent, () => deviceDisconnected({ ...facts(session), connectedAt, disconnectedAt: Date.now(), reason }));
    for (const listener of [...this.endedListeners]) {
      try {
        listener(session);
      } catch {
        // a listener's failure is its own
      }
    }
  }
}

const facts = (s: Session) => ({ tenant: s.device.tenant, serial: s.device.serial, transport: s.transport });
