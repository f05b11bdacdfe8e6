/**
 * The live sessions of connected devices, one registry per gateway: who is online, on which
 * transport, and how to reach them (commands, issue 4's central → device path). Bounded: at most
 * maxSessions at once. A device that connects again replaces its older session, which is closed
 * (a half-open TCP connection must not hold a device's place). Framework-free.
 */
import type { DeviceIdentity } from './directory';

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

  constructor(private readonly maxSessions: number) {}

  get size(): number {
    return this.sessions.size;
  }

  /** Adds a session; a previous session of the same device is closed and replaced. */
  add(session: Session): void {
    const k = key(session.device.tenant, session.device.serial);
    const previous = this.sessions.get(k);
    if (!previous && this.sessions.size >= this.maxSessions) throw new SessionLimitError(`session limit reached (${this.maxSessions})`);
    this.sessions.set(k, session);
    if (previous && previous !== session) previous.close('replaced by a newer session of this device');
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

  /** Removes the session if it is still the device's current one. */
  remove(session: Session): void {
    const k = key(session.device.tenant, session.device.serial);
    if (this.sessions.get(k) === session) this.sessions.delete(k);
  }

  get(tenant: string, serial: string): Session | undefined {
    return this.sessions.get(key(tenant, serial));
  }

  /** Closes every session (a redeploy). */
  closeAll(reason: string): void {
    for (const s of [...this.sessions.values()]) s.close(reason);
    this.sessions.clear();
  }
}
