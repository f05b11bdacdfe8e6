/**
 * The parts of xmpp.js (@xmpp/* 0.14, ESM only) assembled into one client entity, loaded with a
 * real dynamic import from this CommonJS build, plus the few types used here.
 *
 * Assembled by hand rather than with @xmpp/client's `client()`: that one upgrades STARTTLS with
 * `{ host }` only and connects direct TLS with `{ host, port }` only, so a private CA can only
 * come through NODE_EXTRA_CA_CERTS for the whole process. Here both paths get the node's TLS
 * options. Left out: its reconnect plugin (XmppConnection reconnects with backoff itself, keeping
 * the entity so that stream management can resume), WebSocket, SASL2/Bind2/FAST (Prosody 0.12
 * offers none of them) and ANONYMOUS.
 */
import type { EventEmitter } from 'node:events';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

/** An element of @xmpp/xml (ltx). */
export interface XmlElement {
  name: string;
  attrs: Record<string, string | undefined>;
  children: (XmlElement | string)[];
  is(name: string, ns?: string): boolean;
  getChild(name: string, ns?: string): XmlElement | undefined;
  getChildren(name: string, ns?: string): XmlElement[];
  getChildText(name: string, ns?: string): string | null;
  text(): string;
  toString(): string;
}

export type XmlBuilder = (name: string, attrs?: Record<string, string | undefined>, ...children: (XmlElement | string | undefined)[]) => XmlElement;

export interface Jid {
  toString(): string;
  bare(): Jid;
  local: string;
  domain: string;
  resource: string;
}

/** What XmppConnection uses of the entity (@xmpp/client-core Client). */
export interface Entity extends EventEmitter {
  status: string;
  jid: Jid | null;
  socket: unknown;
  options: { service: string; domain: string; lang?: string };
  connect(service: string): Promise<void>;
  open(options: { domain: string; lang?: string }): Promise<void>;
  disconnect(): Promise<void>;
  send(element: XmlElement): Promise<void>;
  sendReceive(element: XmlElement, timeoutMs?: number): Promise<XmlElement>;
  restart(): Promise<void>;
  isSecure(): boolean;
  socketParameters(service: string): Record<string, unknown> | undefined;
  _attachSocket(socket: unknown): void;
}

/** XEP-0198 state as @xmpp/stream-management keeps it. */
export interface StreamManagement extends EventEmitter {
  enabled: boolean;
  id: string;
  timeout: number;
  requestAckInterval: number;
  outbound_q: unknown[];
}

export interface ClientParts {
  entity: Entity;
  /** Absent unless ClientOptions.streamManagement. */
  sm?: StreamManagement;
  xml: XmlBuilder;
  /** An iq request with a timeout (XEP-0199 pings). */
  request(iq: XmlElement, timeoutMs: number): Promise<XmlElement>;
}

export type TlsMode = 'none' | 'starttls' | 'direct';

export interface ClientOptions {
  /** xmpp://host:port (plain or STARTTLS) or xmpps://host:port (direct TLS). */
  service: string;
  domain: string;
  username: string;
  password: string;
  resource: string;
  tls: TlsMode;
  /** ca, servername, rejectUnauthorized… for both TLS paths. */
  tlsOptions?: Record<string, unknown>;
  /** Timeout of each step of the stream negotiation, ms. */
  timeoutMs: number;
  /**
   * Enable XEP-0198 when the server offers it. Off by default: @xmpp/stream-management 0.14 resets
   * its count of received stanzas only once it has processed <enabled/>, asynchronously, so a
   * stanza that arrives right behind <enabled/> goes uncounted; Prosody 0.12 then sees the client
   * acknowledge fewer stanzas than before and closes the stream (seen in the two-resources test:
   * "The client says it handled -1 new stanzas"). See docs/xmpp.md.
   */
  streamManagement?: boolean;
}

const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';

// `import()` written so that TypeScript's CommonJS output keeps it a real dynamic import.
const importEsm = new Function('s', 'return import(s)') as (specifier: string) => Promise<Record<string, unknown>>;

type Factory = (...args: unknown[]) => unknown;
const def = (m: Record<string, unknown>): Factory => m.default as Factory;

let modules: Promise<Record<string, Record<string, unknown>>> | undefined;

function loadModules(): Promise<Record<string, Record<string, unknown>>> {
  const names = {
    core: '@xmpp/client-core',
    tcp: '@xmpp/tcp',
    tls: '@xmpp/tls',
    middleware: '@xmpp/middleware',
    features: '@xmpp/stream-features',
    iqCaller: '@xmpp/iq/caller.js',
    iqCallee: '@xmpp/iq/callee.js',
    sasl: '@xmpp/sasl',
    scram: '@xmpp/sasl-scram-sha-1',
    plain: '@xmpp/sasl-plain',
    factory: 'saslmechanisms',
    bind: '@xmpp/resource-binding',
    sm: '@xmpp/stream-management',
    starttls: '@xmpp/starttls/starttls.js',
  };
  // Resolved here, from this file: an import() made by new Function has no referrer to resolve from.
  // From @xmpp/client's folder: its parts are its dependencies (hoisted or nested below it), not ours.
  const from = { paths: [path.dirname(require.resolve('@xmpp/client'))] };
  modules ??= Promise.all(Object.entries(names).map(async ([k, s]) => [k, await importEsm(pathToFileURL(require.resolve(s, from)).href)] as const)).then(
    (pairs) => Object.fromEntries(pairs),
  );
  return modules;
}

/** The xml builder alone (for tests and tools that only build stanzas). */
export async function loadXml(): Promise<XmlBuilder> {
  return (await loadModules()).core.xml as XmlBuilder;
}

/** A new, unconnected entity with SASL (SCRAM-SHA-1, PLAIN), resource binding, our STARTTLS, and stream management if asked. */
export async function createClient(options: ClientOptions): Promise<ClientParts> {
  const m = await loadModules();
  const xml = m.core.xml as XmlBuilder;
  const Client = m.core.Client as new (o: Record<string, unknown>) => Entity;
  const entity = new Client({ service: options.service, domain: options.domain, timeout: options.timeoutMs });
  def(m.tcp)({ entity });
  def(m.tls)({ entity });
  const tlsParams = { servername: options.domain, ...options.tlsOptions };
  if (options.tls === 'direct') {
    const base = entity.socketParameters.bind(entity);
    entity.socketParameters = (service) => {
      const p = base(service);
      return p && { ...p, ...tlsParams };
    };
  }
  const middleware = def(m.middleware)({ entity });
  const streamFeatures = def(m.features)({ middleware }) as {
    use(name: string, ns: string, fn: (ctx: { entity: Entity }, next: () => Promise<void>) => Promise<void>): void;
  };
  const iqCaller = def(m.iqCaller)({ middleware, entity });
  def(m.iqCallee)({ middleware, entity });

  const { canUpgrade, upgrade } = m.starttls as { canUpgrade(s: unknown): boolean; upgrade(s: unknown, o: Record<string, unknown>): Promise<unknown> };
  streamFeatures.use('starttls', NS_TLS, async ({ entity: e }, next) => {
    if (options.tls !== 'starttls' || !canUpgrade(e.socket)) return next();
    const answer = await e.sendReceive(xml('starttls', { xmlns: NS_TLS }));
    if (!answer.is('proceed', NS_TLS)) throw new Error('the server refused STARTTLS');
    e._attachSocket(await upgrade(e.socket, { host: options.domain, ...tlsParams }));
    await e.restart();
  });

  const SASLFactory = m.factory.default as new () => unknown;
  const saslFactory = new SASLFactory();
  def(m.scram)(saslFactory);
  def(m.plain)(saslFactory);
  def(m.sasl)(
    { streamFeatures, saslFactory },
    async (authenticate: (c: unknown, mech: string) => Promise<void>, mechanisms: string[], _fast: unknown, e: Entity) => {
      // Never send a password over a stream the node was told to encrypt but is not encrypted.
      if (options.tls !== 'none' && !e.isSecure()) throw new Error('the server did not offer STARTTLS: refusing to log in unencrypted');
      const mechanism = e.isSecure() ? mechanisms[0] : mechanisms.find((x) => x !== 'PLAIN');
      if (!mechanism) throw new Error(`no SASL mechanism to log in with unencrypted (offered: ${mechanisms.join(', ')})`);
      await authenticate({ username: options.username, password: options.password }, mechanism);
    },
  );
  const sm = options.streamManagement ? (def(m.sm)({ streamFeatures, entity, middleware }) as StreamManagement) : undefined;
  def(m.bind)({ iqCaller, streamFeatures }, options.resource);
  const caller = iqCaller as { request(iq: XmlElement, timeoutMs: number): Promise<XmlElement> };
  return { entity, sm, xml, request: (iq, timeoutMs) => caller.request(iq, timeoutMs) };
}
