/**
 * Where a webhook may go (SSRF guard). A subscription's URL is the third party's to choose, so
 * Conflux refuses to send to its own network: loopback, private (RFC 1918, IPv6 ULA), link-local,
 * unspecified, CGNAT (RFC 6598), multicast and reserved addresses, unless the operator allows it.
 *
 * The check runs when the connection is made (`guardedLookup`, given to http.request as its
 * `lookup`), so every new connection resolves and checks again: a name that resolved to a public
 * address when the subscription was saved and to 127.0.0.1 later (DNS rebinding) is refused then.
 * IP-literal hosts never reach a lookup; `checkTarget` checks those before the request.
 * Framework-free.
 */
import * as dns from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

export type AddressClass = 'loopback' | 'private' | 'link-local' | 'unspecified' | 'cgnat' | 'multicast' | 'reserved';

/** Refused unless allowed; the reason names the class and the address. */
export class ForbiddenTargetError extends Error {
  override readonly name = 'ForbiddenTargetError';
  readonly code = 'ERR_WEBHOOK_FORBIDDEN_TARGET';
}

const RANGES: [AddressClass, string, number, 'ipv4' | 'ipv6'][] = [
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['cgnat', '100.64.0.0', 10, 'ipv4'],
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['reserved', '192.0.0.0', 24, 'ipv4'],
  ['reserved', '192.0.2.0', 24, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['reserved', '198.18.0.0', 15, 'ipv4'],
  ['reserved', '198.51.100.0', 24, 'ipv4'],
  ['reserved', '203.0.113.0', 24, 'ipv4'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'], // 255.255.255.255 (broadcast) included
  ['unspecified', '::', 128, 'ipv6'],
  ['loopback', '::1', 128, 'ipv6'],
  ['private', 'fc00::', 7, 'ipv6'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['multicast', 'ff00::', 8, 'ipv6'],
  ['reserved', '2001:db8::', 32, 'ipv6'],
];

const LISTS = new Map<AddressClass, BlockList>();
for (const [cls, net, prefix, family] of RANGES) {
  let list = LISTS.get(cls);
  if (!list) LISTS.set(cls, (list = new BlockList()));
  list.addSubnet(net, prefix, family);
}

/** The class of an IP address Conflux will not call by default; undefined for a public address (or not an IP). */
export function classifyAddress(address: string): AddressClass | undefined {
  const family = isIP(address);
  if (family === 0) return undefined;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  // BlockList also matches IPv4-mapped IPv6 (::ffff:127.0.0.1) against the IPv4 ranges.
  for (const [cls, list] of LISTS) if (list.check(address, type)) return cls;
  return undefined;
}

function refuse(address: string, cls: AddressClass, host?: string): ForbiddenTargetError {
  return new ForbiddenTargetError(
    `${host && host !== address ? `${host} resolves to ` : ''}${address}, a ${cls} address: refused (the webhooks config allows private destinations only when told to)`,
  );
}

/** Checks a URL before any request: http or https only, and an IP-literal host must be allowed. */
export function checkTarget(url: URL, allowPrivate: boolean): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ForbiddenTargetError(`${url.protocol} URLs are not delivered to (http and https only)`);
  if (url.username || url.password) throw new ForbiddenTargetError('credentials in the URL are not sent: use the subscription username and password');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const cls = allowPrivate ? undefined : classifyAddress(host);
  if (cls) throw refuse(host, cls);
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

/**
 * A `lookup` for http.request / net.connect that refuses a name when any address it resolves to
 * is not allowed (one bad answer is enough: the socket may pick any of them).
 */
export function guardedLookup(allowPrivate: boolean, resolve: typeof dns.lookup = dns.lookup): LookupFunction {
  return ((hostname: string, options: dns.LookupOptions, callback: LookupCallback) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      const list = addresses as dns.LookupAddress[];
      if (!allowPrivate) {
        for (const a of list) {
          const cls = classifyAddress(a.address);
          if (cls) return callback(refuse(a.address, cls, hostname), '');
        }
      }
      if (list.length === 0) return callback(Object.assign(new Error(`${hostname}: no address`), { code: 'ENOTFOUND' }), '');
      if (options.all) return callback(null, list);
      callback(null, list[0].address, list[0].family);
    });
  }) as LookupFunction;
}
