/**
 * One XMPP client connection that keeps itself up: it connects, and after a refused login, an
 * unreachable server or a dropped stream tries again after a delay that doubles up to a cap (with
 * jitter). Nothing here throws into the caller: failures become states with a reason (`onState`)
 * and the next attempt. Framework-free.
 *
 * A dead connection is found by XEP-0199 pings every 30 s (no answer within 30 s: the stream is
 * dropped and the next attempt follows), not hours later by TCP.
 *
 * Stream management (XEP-0198, @xmpp/stream-management) only with `streamManagement: true`: its
 * 0.14 plugin miscounts received stanzas right after <enabled/> (client.ts) and Prosody 0.12 then
 * closes the stream. When on, the entity is kept across reconnections so that a session can be
 * resumed. Neither is needed for correctness: the outbox resends until the peer's receipt and the
 * peer de-duplicates by stanza id, so a dropped stream or a failed resumption loses nothing.
 *
 * After each (re)connection the client sends available presence with the configured priority:
 * the server routes messages for the bare JID only to available resources (see docs/xmpp.md,
 * "Several instances").
 */
import { backoffDelay } from '../mailbox/backoff';
import { createClient, type ClientParts, type Entity, type TlsMode, type XmlBuilder, type XmlElement } from './client';

export type XmppState = 'connecting' | 'online' | 'reconnecting' | 'closed';

export interface XmppConnectionOptions {
  host: string;
  /** Default 5222 (5223 for direct TLS). */
  port?: number;
  /** The JID's domain; default the JID's. */
  domain?: string;
  /** user@domain (a /resource in it is ignored: `resource` is used). */
  jid: string;
  password: string;
  resource: string;
  tls: TlsMode;
  tlsOptions?: Record<string, unknown>;
  /** Presence priority, -128..127; messages to the bare JID go to the highest non-negative ones. */
  priority?: number;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Longest a connection attempt (TCP, TLS, login, binding) may take. Default 20 s. */
  connectTimeoutMs?: number;
  /** Use XEP-0198 when offered (client.ts says why it is off by default). */
  streamManagement?: boolean;
  /** A stream whose server leaves an ack request (XEP-0198) or a ping (XEP-0199) unanswered this long is dropped. Default 30 s. */
  smTimeoutMs?: number;
  /** Pings the server (XEP-0199) this often while online, to find a dead connection. Default 30 s; 0: never. */
  pingIntervalMs?: number;
  onState?(state: XmppState, detail: string): void;
}

export type StanzaHandler = (stanza: XmlElement) => void;

/** user@domain of a JID text (lowercase domain; '' when it is not one). */
export function bareJid(jid: string): string {
  const slash = jid.indexOf('/');
  const bare = slash < 0 ? jid : jid.slice(0, slash);
  const at = bare.indexOf('@');
  return at < 0 ? bare.toLowerCase() : `${bare.slice(0, at)}@${bare.slice(at + 1).toLowerCase()}`;
}

/** Why an attempt failed, for the status and the log. */
export function describeFailure(err: unknown): string {
  const e = err as { condition?: string; code?: string; message?: string; name?: string };
  if (e?.name === 'SASLError') return `login refused (${e.condition ?? 'not-authorized'}): wrong user or password?`;
  if (e?.name === 'StreamError') return `stream error: ${e.condition ?? e.message ?? ''}`;
  if (e?.code === 'ECONNREFUSED') return 'connection refused: is the server running?';
  if (e?.code === 'ENOTFOUND' || e?.code === 'EAI_AGAIN') return `host not found (${e.code})`;
  if (e?.code) return `${e.code}${e.message ? `: ${e.message}` : ''}`;
  return e?.message || String(err);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export class XmppConnection {
  private parts: ClientParts | undefined;
  private readonly handlers = new Set<StanzaHandler>();
  private readonly onlineHandlers = new Set<(online: boolean) => void>();
  private timer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;
  private attempting = false;
  state: XmppState = 'connecting';
  detail = '';
  /** The full JID bound (user@domain/resource) once online. */
  boundJid = '';
  readonly bare: string;
  readonly domain: string;
  private readonly service: string;

  constructor(private readonly options: XmppConnectionOptions) {
    this.bare = bareJid(options.jid);
    const at = this.bare.indexOf('@');
    if (at <= 0 || at === this.bare.length - 1) throw new Error(`not a JID (user@domain): ${options.jid}`);
    if (!options.host) throw new Error('no server host');
    this.domain = options.domain || this.bare.slice(at + 1);
    const port = options.port || (options.tls === 'direct' ? 5223 : 5222);
    this.service = `${options.tls === 'direct' ? 'xmpps' : 'xmpp'}://${options.host}:${port}`;
  }

  get online(): boolean {
    return this.state === 'online' && this.parts?.entity.status === 'online';
  }

  get xml(): XmlBuilder | undefined {
    return this.parts?.xml;
  }

  /** Whether the server enabled stream management on the current stream. */
  get streamManagement(): boolean {
    return this.parts?.sm?.enabled === true;
  }

  start(): void {
    void this.connect();
  }

  /** Every stanza received (messages, presences, iqs) while the handler is registered. */
  onStanza(handler: StanzaHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** Called with true each time the connection is (again) online, false when it goes. */
  onOnline(handler: (online: boolean) => void): () => void {
    this.onlineHandlers.add(handler);
    return () => this.onlineHandlers.delete(handler);
  }

  /** Sends a stanza; rejects when offline or the write fails (the caller retries later). */
  async send(stanza: XmlElement): Promise<void> {
    if (!this.online || !this.parts) throw new Error(`not connected (${this.state}${this.detail ? `: ${this.detail}` : ''})`);
    await this.parts.entity.send(stanza);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.timer = this.pingTimer = undefined;
    const was = this.online;
    this.setState('closed', '');
    if (was) this.notify(false);
    const entity = this.parts?.entity;
    if (entity && entity.status !== 'offline' && entity.status !== 'disconnect') {
      await withTimeout(entity.disconnect(), 5_000, 'closing the XMPP stream').catch(() => undefined);
    }
  }

  private setState(state: XmppState, detail: string): void {
    this.state = state;
    this.detail = detail;
    this.options.onState?.(state, detail);
  }

  private notify(online: boolean): void {
    for (const h of this.onlineHandlers) {
      try {
        h(online);
      } catch {
        // one user's failure must not keep the others from hearing it
      }
    }
  }

  private async entity(): Promise<ClientParts> {
    if (this.parts) return this.parts;
    const o = this.options;
    const parts = await createClient({
      service: this.service,
      domain: this.domain,
      username: this.bare.slice(0, this.bare.indexOf('@')),
      password: o.password,
      resource: o.resource,
      tls: o.tls,
      tlsOptions: o.tlsOptions,
      timeoutMs: 10_000,
      streamManagement: o.streamManagement,
    });
    if (parts.sm) parts.sm.timeout = o.smTimeoutMs ?? 30_000;
    const e = parts.entity;
    e.on('error', () => undefined); // each attempt reports its own failure; an unheard 'error' would throw
    e.on('stanza', (stanza: XmlElement) => {
      for (const h of this.handlers) {
        try {
          h(stanza);
        } catch {
          // a handler's bug must not break the stream
        }
      }
    });
    e.on('disconnect', () => this.lost('the stream was closed'));
    // Nagle off (xmpp.js leaves it on): a receipt or a lone stanza otherwise waits for the peer's
    // delayed ACK, about 40 ms, which caps a send-and-wait exchange at ~25 a second.
    e.on('connect', () => {
      const s = e.socket as { setNoDelay?(on: boolean): void; socket?: { setNoDelay?(on: boolean): void } } | null;
      (s?.setNoDelay ? s : s?.socket)?.setNoDelay?.(true);
    });
    parts.sm?.on('resumed', () => void this.up(e, true));
    this.parts = parts;
    return parts;
  }

  private async connect(): Promise<void> {
    if (this.closed || this.attempting) return;
    this.attempting = true;
    if (this.state !== 'reconnecting') this.setState('connecting', this.service);
    let entity: Entity | undefined;
    try {
      const { entity: e, sm } = await this.entity();
      entity = e;
      const ready = new Promise<void>((resolve, reject) => {
        const done = (err?: Error) => {
          e.off('online', onOnline);
          sm?.off('resumed', onOnline);
          e.off('error', onError);
          e.off('disconnect', onGone);
          if (err) reject(err);
          else resolve();
        };
        const onOnline = () => done();
        const onError = (err: Error) => done(err);
        const onGone = (info?: { reason?: unknown }) => done((info?.reason as Error) ?? new Error('the server closed the connection'));
        e.on('online', onOnline);
        sm?.on('resumed', onOnline);
        e.on('error', onError);
        e.on('disconnect', onGone);
      });
      ready.catch(() => undefined); // awaited below; a failure before that must not go unhandled
      await withTimeout(
        (async () => {
          await e.connect(this.service);
          await e.open({ domain: this.domain });
          await ready;
        })(),
        this.options.connectTimeoutMs ?? 20_000,
        'connecting',
      );
      this.attempting = false;
      if (this.closed) return void e.disconnect().catch(() => undefined);
      await this.up(e, false);
    } catch (err) {
      this.attempting = false;
      this.schedule(describeFailure(err)); // first: the disconnect below would report a plain 'closed'
      if (entity && entity.status !== 'disconnect' && entity.status !== 'offline') await entity.disconnect().catch(() => undefined);
    }
  }

  /** Online (a new session, or one resumed): presence for a new one, then the users. */
  private async up(e: Entity, resumed: boolean): Promise<void> {
    if (this.closed || this.state === 'online') return;
    this.attempt = 0;
    this.boundJid = e.jid?.toString() ?? '';
    if (!resumed && this.parts) {
      const { xml } = this.parts;
      const priority = String(Math.max(-128, Math.min(127, this.options.priority ?? 0)));
      await e.send(xml('presence', {}, xml('priority', {}, priority))).catch(() => undefined);
    }
    this.setState('online', `${this.boundJid}${resumed ? ' (resumed)' : ''}`);
    this.notify(true);
    this.schedulePing(e);
  }

  /** XEP-0199: a server that does not answer a ping in time has a dead connection; drop it and reconnect. */
  private schedulePing(e: Entity): void {
    const every = this.options.pingIntervalMs ?? 30_000;
    if (every <= 0 || this.pingTimer) return;
    this.pingTimer = setTimeout(() => {
      this.pingTimer = undefined;
      const parts = this.parts;
      if (this.closed || !this.online || !parts) return;
      const { xml } = parts;
      parts.request(xml('iq', { type: 'get', to: this.domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })), this.options.smTimeoutMs ?? 30_000).then(
        () => this.schedulePing(e),
        () => {
          if (this.online) void e.disconnect().catch(() => undefined); // 'disconnect' follows: reconnect
        },
      );
    }, every);
  }

  private lost(reason: string): void {
    if (this.closed || this.attempting) return; // an attempt in progress handles its own failure
    const was = this.state === 'online';
    if (was) this.notify(false);
    this.schedule(reason);
  }

  private schedule(reason: string): void {
    if (this.closed || this.timer) return;
    const min = this.options.minDelayMs ?? 500;
    const max = this.options.maxDelayMs ?? 60_000;
    const delay = backoffDelay(this.attempt + 1, { baseDelayMs: min, maxDelayMs: max, maxAttempts: 1, jitter: 0.2 });
    this.attempt++;
    this.setState('reconnecting', reason);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.connect();
    }, delay);
  }
}
