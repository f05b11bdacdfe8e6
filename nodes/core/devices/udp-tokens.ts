/**
 * Single-use UDP telemetry tokens (seed 001): a device gets a token over an authenticated
 * session (TCP, MQTT or HTTP) and spends it on one datagram. A token is random (128 bits), tied
 * to its device, expires, and is gone once used: a replayed datagram, or a token presented by
 * another device, is refused. Kept in memory per gateway and bounded. Framework-free.
 */
import { randomBytes } from 'node:crypto';
import type { DeviceIdentity } from './directory';

export const TOKEN_BYTES = 16;

export type TokenCheck = { ok: true; device: DeviceIdentity } | { ok: false; reason: 'unknown' | 'expired' | 'foreign' };

export interface IssuedToken {
  token: Buffer;
  /** ms since the epoch */
  expiresAt: number;
}

export class UdpTokens {
  private readonly tokens = new Map<string, { device: DeviceIdentity; expiresAt: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxTokens = 1_000_000,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.tokens.size;
  }

  issue(device: DeviceIdentity, count = 1): IssuedToken[] {
    const expiresAt = this.now() + this.ttlMs;
    const out: IssuedToken[] = [];
    for (let i = 0; i < count; i++) {
      if (this.tokens.size >= this.maxTokens) this.sweep();
      if (this.tokens.size >= this.maxTokens) this.tokens.delete(this.tokens.keys().next().value as string); // oldest first
      const token = randomBytes(TOKEN_BYTES);
      this.tokens.set(token.toString('base64'), { device, expiresAt });
      out.push({ token, expiresAt });
    }
    return out;
  }

  /** Spends the token: valid only once, only for the device it was issued to, only before it expires. */
  spend(serial: string, token: Buffer): TokenCheck {
    const k = token.toString('base64');
    const entry = this.tokens.get(k);
    if (!entry) return { ok: false, reason: 'unknown' }; // never issued, or already used: a replay
    if (entry.device.serial !== serial) return { ok: false, reason: 'foreign' }; // left in place: its owner may still use it
    this.tokens.delete(k);
    if (entry.expiresAt <= this.now()) return { ok: false, reason: 'expired' };
    return { ok: true, device: entry.device };
  }

  /** Drops expired tokens. */
  sweep(): void {
    const t = this.now();
    for (const [k, e] of this.tokens) if (e.expiresAt <= t) this.tokens.delete(k);
  }
}
