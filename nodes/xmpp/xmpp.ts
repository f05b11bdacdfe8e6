/**
 * conflux-xmpp: an XMPP client connection (docs/xmpp.md) — JID and password (credentials),
 * resource, server and port, TLS (none, STARTTLS or direct) with a CA from a tls-config node,
 * presence priority. It reconnects by itself with backoff (nodes/core/xmpp/connection.ts): a
 * server that is down, refuses the login or drops the stream shows on the status of every node
 * that uses it, and never throws out of Node-RED; pings (XEP-0199) find a dead connection.
 */
import * as os from 'node:os';
import type { NodeAPI, NodeDef } from 'node-red';
import type { TlsMode } from '../core/xmpp/client';
import { XmppConnection, type XmppState } from '../core/xmpp/connection';
import type { XmppConfigNode, XmppCredentials } from '../shared/config-nodes';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { notConfigured, reportNotConfigured } from '../shared/not-configured';
import { StatusFanout } from '../shared/status-fanout';
import { tlsConfigOf } from '../shared/tls-config';

interface XmppDef extends NodeDef {
  jid?: string;
  resource?: string;
  host?: string;
  port?: string;
  tlsMode?: string;
  tls?: string;
  priority?: string;
}

const MODES: ReadonlySet<string> = new Set(['none', 'starttls', 'direct']);

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function XmppNode(this: XmppConfigNode, def: XmppDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const connection = new StatusFanout();
    (node as { connection: StatusFanout }).connection = connection;
    const invalid = (reason: string) => {
      (node as { problem: string }).problem = `invalid XMPP configuration: ${reason}`;
      connection.failed(t('conflux.status.invalidConfig', { reason }));
    };
    const jid = textField(def.jid);
    if (!jid) {
      // No account (CONFLUX_XMPP_JID unset): the users say what to set, messages wait in the outbox.
      const missing = reportNotConfigured(node, notConfigured(t, def.jid, 'jid', 'xmpp.label.jid'));
      Object.assign(node, { problem: missing.reason, notConfigured: missing });
      connection.set(missing.status);
      return;
    }
    const tlsMode = (MODES.has(def.tlsMode ?? '') ? def.tlsMode : 'starttls') as TlsMode;
    let xmpp: XmppConnection;
    try {
      xmpp = new XmppConnection({
        jid,
        password: (node.credentials ?? {}).password ?? '',
        resource: textField(def.resource) || `conflux-${os.hostname()}-${process.pid}`,
        host: textField(def.host) || jid.slice(jid.indexOf('@') + 1).split('/')[0],
        port: intField(def.port, 0, 0, 65_535) || undefined,
        tls: tlsMode,
        tlsOptions: tlsConfigOf(RED, textField(def.tls) || undefined).client(),
        priority: intField(def.priority, 0, -128, 127),
        onState: (state: XmppState, detail: string) => {
          if (state === 'online') connection.connected(detail.slice(0, 100));
          else if (state === 'closed') connection.set({ fill: 'grey', shape: 'ring', text: 'conflux.status.disconnected' });
          else if (state === 'connecting') connection.set({ fill: 'yellow', shape: 'ring', text: 'xmpp.status.connecting' });
          else {
            connection.set({ fill: 'red', shape: 'ring', text: `${t('conflux.status.reconnecting')}: ${detail}`.slice(0, 100) });
            node.log(`conflux-xmpp ${jid}: ${detail}; trying again`);
          }
        },
      });
    } catch (err) {
      return invalid((err as Error).message);
    }
    (node as { xmpp: XmppConnection }).xmpp = xmpp;
    connection.set({ fill: 'yellow', shape: 'ring', text: 'xmpp.status.connecting' });
    xmpp.start();
    node.on('close', (_removed: boolean, done: () => void) => {
      void connection
        .drained()
        .then(() => xmpp.close())
        .finally(done);
    });
  }

  RED.nodes.registerType<XmppConfigNode, XmppDef, unknown, XmppCredentials>('conflux-xmpp', XmppNode, {
    credentials: { password: { type: 'password' } },
  });
};
