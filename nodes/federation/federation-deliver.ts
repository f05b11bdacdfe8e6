/**
 * conflux-federation-deliver: writes an incoming federation message (from conflux-xmpp-in:
 * msg.payload records, msg.sen1.username, msg.xmpp.from) to the local system's API with the
 * credentials of the user it names, ids mapped back (seed 003's Fetch Inbox and direct delivery).
 * A failure is done(err): conflux-xmpp-in then keeps the message in its inbox and retries it.
 * Passes the message on once written. Logic: nodes/core/federation/deliver.ts.
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { ResolvedRecord } from '../core/model/senml';
import { deliverToLocal } from '../core/federation/deliver';
import { loadSettings } from '../core/federation/settings';
import { closeAfter, databaseOf } from '../shared/config-user';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { secretLookup } from '../shared/secrets';

interface DeliverDef extends NodeDef {
  database?: string;
  tenant?: string;
  timeout?: string;
}

interface IncomingMsg {
  payload?: unknown;
  messageId?: unknown;
  sen1?: { username?: unknown };
  xmpp?: { from?: unknown };
  federation?: unknown;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function FederationDeliverNode(this: Node, def: DeliverDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const tenant = textField(def.tenant) || 'default';
    const timeoutMs = intField(def.timeout, 30, 1, 600) * 1000;
    const resolveSecret = secretLookup(RED, node);
    let delivered = 0;
    let failed = 0;
    let lastError = '';
    const status = throttledStatus(node, () => {
      const text = t('federation-deliver.status.delivered', { n: delivered });
      if (lastError)
        return { fill: 'red', shape: 'ring', text: `${text}, ${t('conflux.status.failedBecause', { n: failed, reason: lastError })}`.slice(0, 120) };
      return { fill: 'green', shape: delivered > 0 ? 'dot' : 'ring', text: failed ? `${text}, ${t('conflux.status.failed', { n: failed })}` : text };
    });

    node.on('input', (input, send, done) => {
      const msg = input as typeof input & IncomingMsg;
      const run = async () => {
        const sql = await db.sql();
        const settings = await loadSettings(sql, tenant);
        return deliverToLocal(
          { db: sql, tenant, settings, resolveSecret, timeoutMs },
          {
            username: typeof msg.sen1?.username === 'string' ? msg.sen1.username : '',
            records: msg.payload as ResolvedRecord[],
            messageId: typeof msg.messageId === 'string' ? msg.messageId : undefined,
            from: typeof msg.xmpp?.from === 'string' ? msg.xmpp.from : undefined,
          },
        );
      };
      run().then(
        (result) => {
          delivered++;
          lastError = '';
          status.soon();
          msg.federation = { delivered: result.items, user: result.userId, login: result.login };
          send(msg);
          done();
        },
        (err: Error) => {
          failed++;
          lastError = err.message.slice(0, 60);
          status.soon();
          done(new Error(`conflux-federation-deliver: ${err.message}`));
        },
      );
    });
    status.now();
    closeAfter(node, db, async () => status.close());
  }
  RED.nodes.registerType('conflux-federation-deliver', FederationDeliverNode);
};
