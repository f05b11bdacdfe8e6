/**
 * Single-use UDP telemetry tokens (seed 001): a device gets a token over an authenticated
 * session (TCP, MQTT or HTTP) and spends it on one datagram. A token is random (128 bits), tied
 * to its device, expires, and is gone once used: a replayed datagram, or a token presented by
 * another device, is refused. Framework-free.
 *
 * The tokens live in the gateway's database (udp_tokens, migration 013), so that a token issued
 * by one Conflux instance is spent on another, once, whichever instance each datagram reaches:
 * spending is one UPDATE … WHERE spent_at IS NULL, which PostgreSQL's row lock makes single-use
 * across instances. A spent row stays until it is pruned (one token life after its expiry), so
 * every instance tells a replay from a token never issued. Expiry is judged on the spending
 * instance's clock (keep the instances' clocks in step, NTP).
 */
import { randomBytes } from 'node:crypto';
import type { SqlClient } from '../db/sql';
import type { DeviceIdentity } from './directory';

export const TOKEN_BYTES = 16;

export type TokenRefusal = 'unknown' | 'replayed' | 'foreign' | 'expired';
export type TokenCheck = { ok: true; device: DeviceIdentity } | { ok: false; reason: TokenRefusal };

export interface IssuedToken {
  token: Buffer;
  /** ms since the epoch */
  expiresAt: number;
}

export interface UdpTokensOptions {
  ttlMs: number;
  /** Rows (spent or not) one device holds at most; issuing past it drops its oldest. Default 10,000. */
  maxPerDevice?: number;
  /** Expired rows one prune() deletes at most. Default 50,000. */
  pruneLimit?: number;
  now?: () => number;
}

// The DELETE's snapshot does not see the rows the INSERT adds: it trims what the device held before.
const ISSUE = /* sql */ `
WITH fresh AS (
  INSERT INTO udp_tokens (token, tenant, serial, device_id, expires_at)
  SELECT decode(t, 'hex'), $2, $3, $4::bigint, $5 FROM unnest($1::text[]) AS t
)
DELETE FROM udp_tokens WHERE token IN (
  SELECT token FROM udp_tokens WHERE serial = $3 ORDER BY expires_at DESC OFFSET $6
)`;

// The SELECT reads the snapshot from before the UPDATE: the owner of a token spent just now (by
// this statement, or by another instance that got the row lock first) is still there to see.
const SPEND = /* sql */ `
WITH hit AS (
  UPDATE udp_tokens SET spent_at = now() WHERE token = $1 AND serial = $2 AND spent_at IS NULL
  RETURNING tenant, device_id, expires_at
)
SELECT t.serial AS owner, h.tenant, h.device_id, h.expires_at FROM udp_tokens t LEFT JOIN hit h ON true WHERE t.token = $1`;

// SKIP LOCKED: instances pruning at once share the work, and a token being spent is left alone.
const PRUNE = /* sql */ `
DELETE FROM udp_tokens WHERE token IN (
  SELECT token FROM udp_tokens WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
)`;
const PRUNE_BATCH = 5_000;

export class UdpTokens {
  private readonly ttlMs: number;
  private readonly maxPerDevice: number;
  private readonly pruneLimit: number;
  private readonly now: () => number;

  /** sql: the gateway's database; rejects with the reason it cannot be opened. */
  constructor(
    private readonly sql: () => Promise<SqlClient>,
    options: UdpTokensOptions,
  ) {
    this.ttlMs = options.ttlMs;
    this.maxPerDevice = Math.max(1, options.maxPerDevice ?? 10_000);
    this.pruneLimit = Math.max(1, options.pruneLimit ?? 50_000);
    this.now = options.now ?? Date.now;
  }

  /** count new tokens for device, stored before they are returned; rejects when the database cannot take them. */
  async issue(device: DeviceIdentity, count = 1): Promise<IssuedToken[]> {
    const expiresAt = this.now() + this.ttlMs;
    const tokens = Array.from({ length: count }, () => randomBytes(TOKEN_BYTES));
    const db = await this.sql();
    const keep = Math.max(0, this.maxPerDevice - count);
    await db.query(ISSUE, [tokens.map((t) => t.toString('hex')), device.tenant, device.serial, String(device.id), new Date(expiresAt), keep]);
    return tokens.map((token) => ({ token, expiresAt }));
  }

  /** Spends the token: valid only once, only for the device it was issued to, only before it expires. */
  async spend(serial: string, token: Buffer): Promise<TokenCheck> {
    const db = await this.sql();
    const { rows } = await db.query<{ owner: string; tenant: string | null; device_id: number | bigint | null; expires_at: Date | null }>(SPEND, [
      token,
      serial,
    ]);
    const row = rows[0];
    if (!row) return { ok: false, reason: 'unknown' }; // never issued, or pruned
    if (row.owner !== serial) return { ok: false, reason: 'foreign' }; // left unspent: its owner may still use it
    if (row.expires_at === null || row.tenant === null || row.device_id === null) return { ok: false, reason: 'replayed' };
    if (row.expires_at.getTime() <= this.now()) return { ok: false, reason: 'expired' }; // spent all the same
    return { ok: true, device: { tenant: row.tenant, serial, id: row.device_id } };
  }

  /**
   * Deletes the rows one token life past their expiry (until then a late datagram is told
   * 'expired' and a replay 'replayed'), in batches, at most pruneLimit; returns how many.
   */
  async prune(): Promise<number> {
    const db = await this.sql();
    const before = new Date(this.now() - this.ttlMs);
    let deleted = 0;
    while (deleted < this.pruneLimit) {
      const batch = Math.min(PRUNE_BATCH, this.pruneLimit - deleted);
      const { rowCount } = await db.query(PRUNE, [before, batch]);
      deleted += rowCount;
      if (rowCount < batch) break;
    }
    return deleted;
  }
}
