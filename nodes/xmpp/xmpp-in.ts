/**
 * conflux-xmpp-in: readings from peer proxies over XMPP (docs/xmpp.md). Each message stanza with
 * a Sen1Message or SenML XML body is stored in the inbox (de-duplicated per sender and stanza id),
 * THEN answered with its XEP-0184 receipt, then handed to the flow; the inbox entry is deleted
 * when the flow has finished with it (nodes/shared/completion.ts). A flow that fails it, or takes
 * longer than the timeout, leaves it in the inbox for a retry with backoff ("Fetch Inbox"; dead
 * letters after the last try); msg.drain === true retries now. Logic: nodes/core/xmpp/inbox.ts
 * and the inbox drain of the webhooks (nodes/core/webhooks/in-drain.ts).
 */
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { InboxDrain } from '../core/webhooks/in-drain';
import { pruneReceipts } from '../core/webhooks/in-inbox';
import { flowMessage, retryNow, XmppInbox, type XmppInMessage } from '../core/xmpp/inbox';
import { trackCompletion } from '../shared/completion';
import type { XmppConfigNode } from '../shared/config-nodes';
import { closeAfter, configOf, databaseOf } from '../shared/config-user';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { boundedReporter } from '../shared/reporter';
import { unusableStatus } from '../shared/not-configured';
import { throttledStatus } from '../shared/status-fanout';

interface XmppInDef extends NodeDef {
  xmpp?: string;
  database?: string;
  tenant?: string;
  maxInFlight?: string;
  timeout?: string;
  maxAttempts?: string;
  keepDays?: string;
}

const PRUNE_EVERY_MS = 3_600_000;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function XmppInNode(this: Node, def: XmppInDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = configOf<XmppConfigNode>(RED, t, node, def.xmpp, 'conflux-xmpp');
    if (!config) return;
    const xmpp = config.xmpp;
    if (!xmpp) {
      // Before the database: its connection status would replace this one.
      node.status(unusableStatus(config, 'no XMPP connection'));
      return;
    }
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const tenant = textField(def.tenant) || 'default';
    const queue = `xmpp:${xmpp.bare}`;
    const timeoutMs = intField(def.timeout, 60, 1, 3_600) * 1000;
    const keepMs = intField(def.keepDays, 7, 1, 365) * 86_400_000;
    const report = boundedReporter(node);
    let closing = false;
    let lastError = '';
    let delivered = 0;
    let inbox: XmppInbox | undefined;
    let drain: InboxDrain<XmppInMessage> | undefined;
    const completion = trackCompletion(RED, node, timeoutMs, () => status.soon());
    const status = throttledStatus(node, () => {
      const up = xmpp.online;
      const parts = [t('conflux.status.stored', { n: inbox?.stored ?? 0 })];
      if (inbox && inbox.duplicates > 0) parts.push(t('xmpp-in.status.duplicates', { n: inbox.duplicates }));
      parts.push(t('xmpp-in.status.delivered', { n: delivered }));
      if (completion.size > 0) parts.push(t('conflux.status.inFlight', { n: completion.size }));
      const where = up ? '' : `${xmpp.state === 'reconnecting' ? `${t('conflux.status.reconnecting')} (${xmpp.detail})` : t('conflux.status.notConnected')}, `;
      return {
        fill: lastError ? 'red' : up ? 'green' : 'yellow',
        shape: up ? 'dot' : 'ring',
        text: `${where}${parts.join(', ')}${lastError ? `, ${lastError}` : ''}`.slice(0, 120),
      };
    });

    let retryStart: NodeJS.Timeout | undefined;
    function start(): void {
      db!.sql().then(
        (s) => {
          if (closing) return;
          drain = new InboxDrain<XmppInMessage>(s, {
            queue,
            worker: `${os.hostname()}:${process.pid}:${node.id}`,
            capacity: intField(def.maxInFlight, 100, 1, 10_000),
            timeoutMs,
            maxAttempts: intField(def.maxAttempts, 10, 1, 1_000),
            toMessage: flowMessage,
            send: (msg) => completion.send(msg as unknown as NodeMessage),
            onDelivered: () => {
              delivered++;
              lastError = '';
              status.soon();
            },
            onDead: (id, attempts, reason) => node.warn(`conflux-xmpp-in: message ${id} moved to dead_letters after ${attempts} attempts: ${reason}`),
            onError: (err) => {
              lastError = err.message.slice(0, 60);
              status.soon();
            },
          });
          inbox = new XmppInbox({
            connection: xmpp!,
            sql: s,
            tenant,
            queue,
            onStored: () => {
              lastError = '';
              drain?.wake();
              status.soon();
            },
            onDuplicate: () => status.soon(),
            onInvalid: (from, id, body, err) =>
              report(`conflux-xmpp-in: message ${id} from ${from} cannot be decoded (answered, not stored): ${err.message}`, {
                payload: body.slice(0, 10_000),
              }),
            onError: (err) => {
              lastError = err.message.slice(0, 60);
              status.soon();
            },
          });
          inbox.start();
          drain.start();
        },
        (err: Error) => {
          lastError = err.message.slice(0, 60);
          status.soon();
          if (!closing) retryStart = setTimeout(start, 5_000);
        },
      );
    }
    start();
    const prune = setInterval(() => {
      db.sql()
        .then((s) => pruneReceipts(s, queue, keepMs))
        .catch((err: Error) => node.warn(`conflux-xmpp-in: pruning old stanza ids: ${err.message}`));
    }, PRUNE_EVERY_MS);
    const statusTimer = setInterval(() => status.soon(), 1_000);

    node.on('input', (input, _send, done) => {
      if ((input as { drain?: unknown }).drain !== true) return done();
      void db
        .sql()
        .then((s) => retryNow(s, 'inbox', queue))
        .then(() => {
          drain?.wake();
          done();
        }, done);
    });

    const user = { status: () => undefined } as unknown as Node; // closes the connection after us
    config.connection.add(user);
    closeAfter(node, db, async () => {
      closing = true;
      clearInterval(prune);
      clearInterval(statusTimer);
      if (retryStart) clearTimeout(retryStart);
      await inbox?.stop();
      const stopped = drain?.stop();
      completion.close('the node is stopping'); // back to the inbox for the next start
      await stopped;
      status.close();
      config.connection.remove(user);
    });
  }
  RED.nodes.registerType('conflux-xmpp-in', XmppInNode);
};
