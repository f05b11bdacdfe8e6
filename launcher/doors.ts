/**
 * Which browser requests the editor and admin API accept. Without an admin password anyone whose
 * request reaches them can deploy a flow (and a function node runs any code), so two kinds of
 * request a web page can make the operator's browser send are refused:
 * - cross-origin ones (CSRF): an Origin header that is not this runtime's own, or Sec-Fetch-Site
 *   cross-site/same-site — except a plain top-level navigation, which a link may start and which
 *   cannot change anything;
 * - ones whose Host header names another site (DNS rebinding: a name the attacker controls that
 *   resolves to this machine makes the page same-origin with the editor).
 * Allowed hosts: 127.0.0.1, localhost and [::1] with the runtime's port, CONFLUX_HOST with the
 * port (unless a wildcard address), and the names in CONFLUX_ALLOWED_HOSTS (any port, or the one
 * given). With a password the Host check is off (a stranger's page has no token to send), the
 * Origin check stays. Framework-free.
 */

export interface HostName {
  /** Lower case, without brackets or a trailing dot. */
  name: string;
  /** Undefined when the Host header or list entry has none. */
  port?: number;
}

/** Parses a Host header or a CONFLUX_ALLOWED_HOSTS entry: name, name:port, IPv4, [IPv6] or [IPv6]:port. */
export function parseHost(text: string): HostName | undefined {
  const t = text.trim().toLowerCase();
  const m = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9_.-]+))(?::(\d{1,5}))?$/.exec(t);
  if (!m) return undefined;
  const name = (m[1] ?? m[2]).replace(/\.$/, '');
  if (name === '') return undefined;
  if (m[3] === undefined) return { name };
  const port = Number(m[3]);
  return port <= 65535 ? { name, port } : undefined;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]']);

export class AllowedHosts {
  /** name → the ports it is allowed with (undefined: any of no port, 80, 443 and the runtime's port). */
  private readonly entries = new Map<string, Set<number | undefined> | 'any'>();

  constructor(
    listenHost: string,
    private readonly port: number,
    extra: readonly string[],
  ) {
    for (const name of ['127.0.0.1', 'localhost', '::1']) this.add(name, port);
    if (!WILDCARDS.has(listenHost))
      this.add(parseHost(listenHost.includes(':') && !listenHost.startsWith('[') ? `[${listenHost}]` : listenHost)?.name ?? listenHost, port);
    for (const entry of extra) {
      const h = parseHost(entry);
      if (!h) throw new Error(`not a host name: "${entry}"`);
      if (h.port === undefined) this.entries.set(h.name, 'any');
      else this.add(h.name, h.port);
    }
  }

  private add(name: string, port: number): void {
    const ports = this.entries.get(name);
    if (ports === 'any') return;
    const set = ports ?? new Set<number | undefined>();
    set.add(port);
    if (port === 80 || port === 443) set.add(undefined); // a Host header leaves the scheme's port out
    this.entries.set(name, set);
  }

  /** Whether a Host header (or an Origin's host with its effective port) names this runtime. */
  allows(host: HostName | undefined): boolean {
    if (!host) return false;
    const ports = this.entries.get(host.name);
    if (ports === undefined) return false;
    if (ports === 'any') return host.port === undefined || host.port === 80 || host.port === 443 || host.port === this.port;
    return ports.has(host.port);
  }
}

export interface DoorRequest {
  method: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

function header(req: DoorRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** An Origin's host with its effective port (http 80, https 443); undefined for "null" or anything else. */
export function originHost(origin: string): HostName | undefined {
  const m = /^(https?):\/\/([^/?#]+)$/i.exec(origin.trim());
  if (!m) return undefined;
  const host = parseHost(m[2]);
  if (!host) return undefined;
  return { name: host.name, port: host.port ?? (m[1].toLowerCase() === 'https' ? 443 : 80) };
}

function sameHost(a: HostName, b: HostName): boolean {
  if (a.name !== b.name) return false;
  // b is the Host header: without a port it means the scheme's default one.
  return a.port === b.port || (b.port === undefined && (a.port === 80 || a.port === 443));
}

/**
 * Why this request to the editor or admin API is refused, or undefined when it may pass.
 * hostCheck: false when an admin password is set.
 */
export function refusal(req: DoorRequest, hosts: AllowedHosts, hostCheck: boolean): string | undefined {
  const hostHeader = header(req, 'host');
  const host = hostHeader === undefined ? undefined : parseHost(hostHeader);
  if (hostCheck && !hosts.allows(host)) {
    return `unexpected Host header${hostHeader === undefined ? '' : ` "${hostHeader.slice(0, 100)}"`}: add the name to CONFLUX_ALLOWED_HOSTS`;
  }
  const origin = header(req, 'origin');
  if (origin !== undefined) {
    const from = originHost(origin);
    const ownOrigin = from !== undefined && ((host !== undefined && sameHost(from, host)) || hosts.allows(from));
    if (!ownOrigin) return 'cross-origin request refused';
  }
  const site = header(req, 'sec-fetch-site');
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    const dest = header(req, 'sec-fetch-dest');
    const navigation =
      (req.method === 'GET' || req.method === 'HEAD') && header(req, 'sec-fetch-mode') === 'navigate' && (dest === undefined || dest === 'document');
    if (!navigation) return `${site} request refused`;
  }
  return undefined;
}
