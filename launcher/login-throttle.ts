/**
 * Failed editor logins, throttled per source address. Node-RED's own limit counts attempts per
 * user name across all addresses (more than 5 in 10 minutes refuse even the right password), so
 * a stranger could lock the real admin out; here only the address that failed waits. IPv6
 * addresses count per /64, the block one subscriber usually holds. Framework-free.
 */
import { isIPv6 } from 'node:net';

export const MAX_FAILURES = 5;
export const WINDOW_MS = 10 * 60_000;
const MAX_ADDRESSES = 10_000;

/** The key an address is counted under: IPv4 as is, IPv6 by its first four groups. */
export function addressKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1];
  if (!isIPv6(address)) return address;
  const [head, tail = ''] = address.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

export class LoginThrottle {
  /** key → times of its failures inside the window, oldest first. */
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly maxFailures = MAX_FAILURES,
    private readonly windowMs = WINDOW_MS,
    private readonly now: () => number = Date.now,
  ) {}

  private recent(key: string): number[] {
    const t = this.now();
    const list = (this.failures.get(key) ?? []).filter((at) => at + this.windowMs > t);
    if (list.length === 0) this.failures.delete(key);
    else this.failures.set(key, list);
    return list;
  }

  /** Seconds until key may try again; 0 when it may now. */
  waitSeconds(key: string): number {
    const list = this.recent(key);
    if (list.length < this.maxFailures) return 0;
    return Math.max(1, Math.ceil((list[list.length - this.maxFailures] + this.windowMs - this.now()) / 1000));
  }

  failed(key: string): void {
    const list = this.recent(key);
    list.push(this.now());
    this.failures.delete(key); // re-insert: the map's order is the eviction order
    this.failures.set(key, list.slice(-this.maxFailures));
    if (this.failures.size > MAX_ADDRESSES) this.failures.delete(this.failures.keys().next().value as string);
  }

  succeeded(key: string): void {
    this.failures.delete(key);
  }
}
