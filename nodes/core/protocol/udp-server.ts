/**
 * The UDP telemetry listener (seed 001; docs/protocol-udp.md): one datagram, one reading, one
 * single-use token. Each datagram goes through, in this order:
 *
 *   size      over limits.maxFrameBytes                 → 'oversized'
 *   layout    parseDatagram                             → 'malformed'
 *   capacity  datagrams being checked or readings handed
 *             on and not yet completed, over maxInFlight → 'busy'
 *   token     tokens.spend(serial, token)               → 'replayed' | 'unknown' | 'foreign' | 'expired'
 *   tenant    rate.take(tenant)                         → 'rate-limited'
 *   payload   decodeDatagramPayload                     → 'undecodable'
 *
 * and what passes is handed to onReadings as the canonical message, its device the token's
 * device (the serial in the datagram only has to agree with it). A token is spent by the first
 * datagram that presents it for its own device, whatever then happens to that datagram. The token
 * and the rate live in the gateway's database (one query per datagram to spend its token): when
 * it cannot answer, the datagram is dropped as 'unavailable'. Capacity comes before the token so
 * that those queries are bounded too, and a datagram dropped as busy leaves its token unspent.
 *
 * No reply, ever. UDP source addresses can be forged, so any answer could be aimed at a victim
 * (reflection), would tell a scanner the port is live, and would tell an attacker which tokens
 * are valid; and a device cannot resend the same datagram anyway, its token being spent. A device
 * that needs an acknowledgement sends over TCP, MQTT or HTTP. Drops are counted by reason
 * (stats()) and reported to onRejected. Framework-free.
 */
import { deviceRefused } from '../metrics/metrics';
import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { TenantRate } from '../devices/tenant-rate';
import type { UdpTokens } from '../devices/udp-tokens';
import type { DeviceIdentity } from '../devices/directory';
import { deviceMessage } from '../devices/ingest';
import type { CanonicalMessage } from '../model/message';
import { decodeDatagramPayload, parseDatagram } from './datagram';

export const DROP_REASONS = [
  'oversized',
  'malformed',
  'replayed',
  'unknown',
  'foreign',
  'expired',
  'rate-limited',
  'busy',
  'undecodable',
  'unavailable',
] as const;
export type UdpDropReason = (typeof DROP_REASONS)[number];

export interface UdpRemote {
  address: string;
  port: number;
}

export interface UdpServerOptions {
  /** 0: any free port (see address()). */
  port: number;
  /** Default: every interface, '0.0.0.0' (or '::' for udp6). */
  host?: string;
  /** Default: udp6 when host is an IPv6 address, else udp4. A udp6 socket on '::' also takes IPv4 unless ipv6Only. */
  type?: 'udp4' | 'udp6';
  ipv6Only?: boolean;
  limits: { maxFrameBytes: number };
  tokens: Pick<UdpTokens, 'spend'>;
  rate: Pick<TenantRate, 'take'>;
  /**
   * Datagrams whose token is being checked plus readings handed to onReadings whose promise has
   * not settled yet, at most; beyond it datagrams are dropped as 'busy'. Default 10,000.
   */
  maxInFlight?: number;
  /** The accepted reading; a returned promise keeps it counted in flight until it settles. */
  onReadings(msg: CanonicalMessage): Promise<void> | void;
  /** A dropped datagram: the reason counted, and the detail (malformed and undecodable ones). */
  onRejected?(reason: UdpDropReason, remote: UdpRemote, detail: string): void;
  /** A socket error after it started listening. */
  onError?(err: Error): void;
  /** Kernel receive buffer, bytes (best effort): room for bursts. Default 4 MiB. */
  recvBufferSize?: number;
  now?: () => number;
}

export interface UdpStats {
  accepted: number;
  dropped: Record<UdpDropReason, number>;
  inFlight: number;
}

const DETAIL: Record<UdpDropReason, string> = {
  oversized: 'datagram larger than the limit',
  malformed: 'malformed datagram',
  replayed: 'token already used (a replay)',
  unknown: 'token never issued, or expired long ago',
  foreign: "another device's token",
  expired: 'token expired',
  'rate-limited': "over the tenant's rate",
  busy: 'too many readings in flight',
  undecodable: 'payload does not decode',
  unavailable: 'the gateway database cannot check the token or the rate',
};

export class UdpServer {
  private socket: dgram.Socket | undefined;
  private readonly counts: Record<UdpDropReason, number> = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<UdpDropReason, number>;
  private accepted = 0;
  private inFlight = 0;
  private readonly now: () => number;
  private readonly maxInFlight: number;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: UdpServerOptions) {
    this.now = options.now ?? Date.now;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 10_000);
  }

  /** Binds the socket; rejects with the reason (EADDRINUSE, EACCES, ...) when it cannot. */
  listen(): Promise<AddressInfo> {
    if (this.socket) return Promise.reject(new Error('already listening'));
    const { port, host, ipv6Only } = this.options;
    const type = this.options.type ?? (host?.includes(':') ? 'udp6' : 'udp4');
    // reuseAddr off: a second listener on the same port is an error, not a silent split of the traffic.
    const socket = dgram.createSocket({ type, reuseAddr: false, ipv6Only: ipv6Only ?? false });
    this.socket = socket;
    return new Promise((resolve, reject) => {
      const failed = (err: Error) => {
        this.socket = undefined;
        socket.removeAllListeners();
        try {
          socket.close();
        } catch {
          // never bound
        }
        reject(err);
      };
      socket.once('error', failed);
      socket.on('message', (buf, rinfo) => this.receive(buf, rinfo));
      socket.bind({ port, address: host || (type === 'udp6' ? '::' : '0.0.0.0'), exclusive: true }, () => {
        socket.off('error', failed);
        socket.on('error', (err) => this.options.onError?.(err));
        try {
          socket.setRecvBufferSize(this.options.recvBufferSize ?? 4 * 1024 * 1024);
        } catch {
          // the kernel caps it (net.core.rmem_max): keep its default
        }
        resolve(socket.address());
      });
    });
  }

  /** The bound address; undefined before listen() resolves or after close(). */
  address(): AddressInfo | undefined {
    try {
      return this.socket?.address();
    } catch {
      return undefined;
    }
  }

  stats(): UdpStats {
    return { accepted: this.accepted, dropped: { ...this.counts }, inFlight: this.inFlight };
  }

  /** Frees the port. Readings already handed on are not waited for. */
  close(): Promise<void> {
    const socket = this.socket;
    if (!socket) return this.closing ?? Promise.resolve();
    this.socket = undefined;
    this.closing = new Promise((resolve) => {
      try {
        socket.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    });
    return this.closing;
  }

  /** Handles one datagram (the socket's 'message' handler); never throws. */
  receive(buf: Buffer, remote: UdpRemote): void {
    this.handle(buf, remote).catch((err: Error) => {
      // Only a bug gets here: count it as undecodable rather than let it out of the socket handler.
      this.drop('undecodable', remote, `internal error: ${err.message}`);
    });
  }

  private async handle(buf: Buffer, remote: UdpRemote): Promise<void> {
    const receivedAt = this.now();
    const max = this.options.limits.maxFrameBytes;
    if (buf.length > max) return this.drop('oversized', remote, `${buf.length} bytes, over the limit of ${max}`);

    const parsed = parseDatagram(buf);
    if (!parsed.ok) return this.drop('malformed', remote, parsed.reason);
    const { serial, token, type, payload } = parsed.datagram;
    if (this.inFlight >= this.maxInFlight) return this.drop('busy', remote, `${this.inFlight} datagrams and readings in flight`);

    this.inFlight++;
    let handed: Promise<void> | void = undefined;
    try {
      let device: DeviceIdentity;
      try {
        const check = await this.options.tokens.spend(serial, token);
        if (!check.ok) return this.drop(check.reason, remote, `${DETAIL[check.reason]} (serial "${serial}")`);
        device = check.device;
        if (!(await this.options.rate.take(device.tenant))) {
          return this.drop('rate-limited', remote, `${DETAIL['rate-limited']} (tenant "${device.tenant}")`);
        }
      } catch (err) {
        return this.drop('unavailable', remote, `serial "${serial}": ${(err as Error).message}`);
      }

      const decoded = decodeDatagramPayload(type, payload, device.serial, receivedAt / 1000);
      if (!decoded.ok) return this.drop('undecodable', remote, `serial "${serial}": ${decoded.reason}`);

      if (!this.socket) return; // closed while the token was checked: the node no longer sends
      this.accepted++;
      const msg = deviceMessage(device, decoded.decoded, 'udp', receivedAt);
      try {
        handed = this.options.onReadings(msg);
      } catch {
        // the callback's own failure: it reports it
      }
    } finally {
      if (handed && typeof (handed as Promise<void>).then === 'function') {
        (handed as Promise<void>).then(
          () => this.inFlight--,
          () => this.inFlight--,
        );
      } else {
        this.inFlight--;
      }
    }
  }

  private drop(reason: UdpDropReason, remote: UdpRemote, detail: string): void {
    this.counts[reason]++;
    deviceRefused('udp', reason);
    try {
      this.options.onRejected?.(reason, { address: remote.address, port: remote.port }, detail);
    } catch {
      // a reporting callback must not stop the listener
    }
  }
}
