/**
 * conflux-xmpp-out: readings to a peer proxy over XMPP (docs/xmpp.md). A message (canonical
 * records, or a Sen1Message object) becomes its stanzas — Sen1Message or SenML XML bodies, stanza
 * id = msg.messageId (else derived from peer and body) — which are written to the outbox before
 * done(): accepted means kept. The outbox is drained onto the connection while it is online, and
 * an entry is deleted only when the peer's XEP-0184 receipt for its id arrives; without one it is
 * sent again later with the same id (nodes/core/xmpp/outbox.ts). msg.drain === true sends what
 * waits now ("Fetch Outbox"), backoff or not.
 */
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { Mailbox } from '../core/mailbox/mailbox';
import { retryNow } from '../core/xmpp/inbox';
import { XmppOutbox } from '../core/xmpp/outbox';
import { checkPeer, outgoing, type Sen1Header, type WireFormat } from '../core/xmpp/stanza';
import type { XmppConfigNode } from '../shared/config-nodes';
import { closeAfter, configOf, databaseOf } from '../shared/config-user';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { unusableStatus } from '../shared/not-configured';
import { throttledStatus } from '../shared/status-fanout';
import { tenantOf } from '../shared/tier-node';

interface XmppOutDef extends NodeDef {
  xmpp?: string;
  database?: string;
  to?: string;
  format?: string;
  username?: string;
  tenant?: string;
  maxInFlight?: string;
  receiptTimeout?: string;
  maxAttempts?: string;
}

type OutMessage = NodeMessage & {
  to?: unknown;
  messageId?: unknown;
  sen1?: Sen1Header;
  drain?: unknown;
  messageIds?: string[];
  tenant?: unknown;
  device?: { tenant?: unknown };
};

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function XmppOutNode(this: Node, def: XmppOutDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = configOf<XmppConfigNode>(RED, t, node, def.xmpp, 'conflux-xmpp');
    if (!config) return;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const format: WireFormat = def.format === 'senml-xml' ? 'senml-xml' : 'sen1';
    const defaultPeer = textField(def.to);
    const username = textField(def.username);
    const defaultTenant = textField(def.tenant) || 'default';
    const receiptTimeoutMs = intField(def.receiptTimeout, 30, 1, 3_600) * 1000;
    const xmpp = config.xmpp;
    // One queue per JID: every xmpp out of that JID, in every instance of the proxy, drains it.
    const queue = `xmpp:${xmpp?.bare ?? node.id}`;
    const sql = db.sql();

    let closing = false;
    let accepted = 0;
    let lastError = '';
    let outbox: XmppOutbox | undefined;
    const status = throttledStatus(node, () => {
      if (!xmpp) return unusableStatus(config, 'no XMPP connection');
      const up = xmpp.online;
      const parts = [t('xmpp-out.status.acked', { n: outbox?.acked ?? 0 })];
      if (accepted > 0) parts.push(t('conflux.status.accepted', { n: accepted }));
      if (outbox && outbox.inFlight > 0) parts.push(t('conflux.status.inFlight', { n: outbox.inFlight }));
      if (outbox && outbox.failed > 0) parts.push(t('xmpp-out.status.resent', { n: outbox.failed }));
      const where = up ? '' : `${xmpp?.state === 'reconnecting' ? `${t('conflux.status.reconnecting')} (${xmpp.detail})` : t('conflux.status.notConnected')}, `;
      return {
        fill: lastError ? 'red' : up ? 'green' : 'yellow',
        shape: up ? 'dot' : 'ring',
        text: `${where}${parts.join(', ')}${lastError ? `, ${lastError}` : ''}`.slice(0, 120),
      };
    });

    if (!xmpp) status.now();
    else {
      void sql.then(
        (s) => {
          if (closing) return;
          outbox = new XmppOutbox({
            connection: xmpp,
            sql: s,
            queue,
            worker: `${os.hostname()}:${process.pid}:${node.id}`,
            capacity: intField(def.maxInFlight, 100, 1, 10_000),
            receiptTimeoutMs,
            pollMs: 1_000,
            retry: { baseDelayMs: 1_000, maxDelayMs: 300_000, maxAttempts: intField(def.maxAttempts, 1_000, 1, 100_000), jitter: 0.2 },
            onSent: () => status.soon(),
            onAcked: () => {
              lastError = '';
              status.soon();
            },
            onFailed: (id, reason, outcome) => {
              if (outcome?.outcome === 'dead') node.warn(`conflux-xmpp-out: message ${id} moved to the outbox's dead letters: ${reason}`);
              status.soon();
            },
            onError: (err) => {
              lastError = err.message.slice(0, 60);
              status.soon();
            },
          });
          outbox.start();
        },
        (err: Error) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 100) }),
      );
    }
    const statusTimer = setInterval(() => status.soon(), 1_000); // the connection's state changes without a message

    node.on('input', (input, send, done) => {
      const msg = input as OutMessage;
      if (msg.drain === true) {
        void sql
          .then((s) => retryNow(s, 'outbox', queue))
          .then(() => {
            outbox?.wake();
            done();
          }, done);
        return;
      }
      let stanzas;
      try {
        const peer = checkPeer(typeof msg.to === 'string' && msg.to !== '' ? msg.to : defaultPeer);
        const messageId = typeof msg.messageId === 'string' && msg.messageId !== '' ? msg.messageId : undefined;
        stanzas = outgoing(msg.payload, { peer, format, messageId, sen1: msg.sen1, username });
      } catch (err) {
        return done(err as Error);
      }
      const tenant = tenantOf(msg, defaultTenant);
      const stored = outbox
        ? outbox.enqueue(tenant, stanzas)
        : sql.then((s) =>
            new Mailbox(s, 'outbox').enqueue(
              tenant,
              queue,
              stanzas.map((x) => ({ messageId: x.id, payload: x })),
            ),
          );
      stored.then(() => {
        accepted += stanzas.length;
        status.soon();
        msg.messageIds = stanzas.map((s) => s.id);
        send(msg);
        done();
      }, done);
    });

    closeAfter(node, db, async () => {
      closing = true;
      clearInterval(statusTimer);
      status.close();
      await outbox?.stop();
    });
    // Registered as a user of the connection so that it closes after the outbox stopped.
    const user = { status: () => undefined } as unknown as Node;
    config.connection.add(user);
    node.on('close', (_removed: boolean, done: () => void) => {
      void (outbox?.stop() ?? Promise.resolve()).finally(() => {
        config.connection.remove(user);
        done();
      });
    });
  }
  RED.nodes.registerType('conflux-xmpp-out', XmppOutNode);
};
