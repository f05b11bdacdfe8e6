/**
 * conflux-tcp-in: devices' persistent TCP (or TLS) sessions (docs/protocol-tcp.md). Devices log
 * in with SCRAM-SHA-256 against the gateway's directory, send readings in length-prefixed frames,
 * and each data frame leaves as the canonical message of the authenticated device; the server is
 * nodes/core/protocol/tcp-server.ts.
 *
 * A data frame is ACKed once the flow has finished with its message (nodes/shared/completion.ts:
 * with the shipped flows, once it is stored), and refused with an ERROR frame naming the reason
 * when a node failed it or the flow took longer than COMPLETE_TIMEOUT_MS; "Acknowledge on
 * receipt" ACKs once it is handed on instead. Past Max in flight, the next messages wait before
 * being handed on, the sessions' windows fill, and the server stops reading their sockets, so TCP
 * slows the devices down.
 */
import * as fs from 'node:fs';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { frameTypeName } from '../core/protocol/frames';
import { TcpDeviceServer, type TcpEventContext, type TcpEventError, type TcpTlsOptions } from '../core/protocol/tcp-server';
import { gatewayOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { createHandOff } from '../shared/completion';
import { boolField, intField, textField } from '../shared/fields';
import { boundedReporter } from '../shared/reporter';

interface TcpInDef extends NodeDef {
  gateway?: string;
  host?: string;
  port?: string;
  tls?: boolean | string;
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  requireClientCert?: boolean | string;
  maxInFlight?: string;
  ack?: string;
}

interface TcpInCredentials {
  certData?: string;
  keyData?: string;
  caData?: string;
  passphrase?: string;
}

const DEFAULT_TCP_PORT = 7100;
/** A flow that has not finished with a message by then has it refused (the device sends it again). */
const COMPLETE_TIMEOUT_MS = 30_000;

/** PEM from the credential when set, else from the file; undefined when neither is set. */
function pem(data: string | undefined, file: string, what: string): string | undefined {
  if (data && data.trim() !== '') return data;
  if (file === '') return undefined;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the ${what} file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function TcpInNode(this: Node<TcpInCredentials>, def: TcpInDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const gateway = gatewayOf(RED, t, node, def.gateway);
    if (!gateway) return;
    const port = intField(def.port, DEFAULT_TCP_PORT, 0, 65_535);
    const host = textField(def.host);
    const where = `${host || '*'}:${port}`;

    let tlsOptions: TcpTlsOptions | undefined;
    if (boolField(def.tls)) {
      const creds = node.credentials ?? {};
      try {
        const cert = pem(creds.certData, textField(def.certFile), 'certificate');
        const key = pem(creds.keyData, textField(def.keyFile), 'private key');
        if (!cert || !key) throw new Error('TLS needs a certificate and a private key');
        const requestCert = boolField(def.requireClientCert);
        const ca = pem(creds.caData, textField(def.caFile), 'CA');
        if (requestCert && !ca) throw new Error('requiring client certificates needs the CA that signs them');
        tlsOptions = { cert, key, ca, passphrase: creds.passphrase || undefined, requestCert };
      } catch (err) {
        node.status({ fill: 'red', shape: 'ring', text: (err as Error).message.slice(0, 100) });
        node.error(`conflux-tcp-in: ${(err as Error).message}`);
        return;
      }
    }

    // In flight until the flow has finished with it; past Max in flight the next readings wait
    // (and the server stops reading their sockets) until one finishes.
    const handOff = createHandOff(RED, node, {
      max: intField(def.maxInFlight, 10_000, 1, 1_000_000),
      timeoutMs: COMPLETE_TIMEOUT_MS,
      ackOnReceipt: def.ack === 'receipt',
    });
    function onReadings(msg: object): Promise<void> | void {
      status.soon();
      return handOff.deliver(msg);
    }

    // Refusals to Catch, bounded.
    const report = boundedReporter(node, 10, 50);
    function onError(err: TcpEventError, ctx: TcpEventContext): void {
      status.soon();
      const text = `${ctx.device ? `device "${ctx.device.serial}"` : ctx.serial ? `login as "${ctx.serial}"` : 'connection'} from ${ctx.remote}: ${err.message}`;
      switch (err.code) {
        case 'socket':
        case 'idle-timeout':
        case 'auth-timeout':
        case 'rate-limited':
          node.debug(`conflux-tcp-in: ${text}`);
          return;
        case 'listener':
          node.error(`conflux-tcp-in: ${where}: ${err.message}`);
          return;
      }
      const msg: Record<string, unknown> = { reason: err.code, remote: ctx.remote };
      if (ctx.device) msg.device = { tenant: ctx.device.tenant, id: ctx.device.serial };
      else if (ctx.serial) msg.serial = ctx.serial;
      if (ctx.frame) {
        msg.payload = ctx.frame.payload;
        msg.source = { transport: 'tcp', format: frameTypeName(ctx.frame.type), receivedAt: Date.now() };
        msg.frame = ctx.frame.id;
      }
      report(`conflux-tcp-in: ${text}`, msg); // beyond its rate, still counted in the status
    }

    const server = new TcpDeviceServer({
      tls: tlsOptions,
      limits: gateway.limits,
      directory: { credentials: (serial) => gateway.directory().then((d) => d.credentials(serial)) },
      sessions: gateway.sessions,
      rate: gateway.rate,
      tokens: gateway.tokens,
      onReadings,
      onError,
      // Command results go to the gateway's command router (conflux-command), requests to the
      // central system (the gateway's Central URL); a rejection reaches the device as an ERROR.
      onDeviceMessage: (event) => gateway.deviceMessage({ ...event, transport: 'tcp' }),
    });

    let listening = '';
    let closed = false;
    let shown = '';
    const status = throttledStatus(node, () => {
      if (!listening) return undefined;
      const s = server.stats();
      const refused = s.refused + s.authFailures;
      let text: string;
      if (s.sessions === 0 && s.accepted === 0 && refused === 0)
        text = t(tlsOptions ? 'conflux.status.listeningTls' : 'conflux.status.listening', { address: listening });
      else {
        const parts = [t(s.sessions === 1 ? 'tcp-in.status.session' : 'tcp-in.status.sessions', { n: s.sessions })];
        if (s.accepted > 0) parts.push(t('conflux.status.accepted', { n: s.accepted }));
        if (refused > 0) parts.push(t('conflux.status.refused', { n: refused }));
        text = parts.join(', ');
      }
      if (text === shown) return undefined;
      shown = text;
      return { fill: 'green', shape: s.sessions > 0 ? 'dot' : 'ring', text };
    });
    // Sessions come and go without a frame: look now and then.
    const poll = setInterval(status.now, 2_000);
    poll.unref();

    gateway.connection.add(node);
    node.status({ fill: 'grey', shape: 'ring', text: 'conflux.status.starting' });
    server.listen(port, host).then(
      (addr) => {
        listening = `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`;
        status.now();
      },
      (err: Error & { code?: string }) => {
        if (closed) return;
        node.status({ fill: 'red', shape: 'ring', text: err.code === 'EADDRINUSE' ? t('conflux.status.portInUse', { port }) : err.message.slice(0, 100) });
        node.error(`conflux-tcp-in: cannot listen on ${where}: ${err.message}`);
      },
    );

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      clearInterval(poll);
      status.close();
      handOff.close('the listener is stopping'); // what waits is not ACKed: the device sends it again
      server
        .close('the listener is stopping')
        .catch((err: Error) => node.warn(`conflux-tcp-in: closing: ${err.message}`))
        .finally(() => {
          gateway.connection.remove(node);
          node.status({});
          done();
        });
    });
  }

  RED.nodes.registerType<Node<TcpInCredentials>, TcpInDef, unknown, TcpInCredentials>('conflux-tcp-in', TcpInNode, {
    credentials: { certData: { type: 'text' }, keyData: { type: 'password' }, caData: { type: 'text' }, passphrase: { type: 'password' } },
  });
};
