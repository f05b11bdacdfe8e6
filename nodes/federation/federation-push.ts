/**
 * conflux-federation-push: the Push Outbox job of a federation proxy (seed 003). On each input
 * (from a conflux-schedule) it extracts, per enabled consumer, the new readings of the local
 * system with the consumer's credentials, and sends one message per datum and consumer, ready for
 * conflux-xmpp-out (msg.payload, msg.to, msg.messageId, msg.sen1). A consumer's watermark is
 * committed once the flow has finished with its messages (xmpp-out: stored in the outbox), so a
 * reading is never taken twice. One consumer failing does not stop the others; the input's done()
 * comes after the run, with the failures. Logic: nodes/core/federation/.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { pushConsumers } from '../core/federation/directory';
import { pushConsumer } from '../core/federation/push';
import { loadSettings } from '../core/federation/settings';
import { trackCompletion } from '../shared/completion';
import { closeAfter, databaseOf } from '../shared/config-user';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { secretLookup } from '../shared/secrets';

interface PushDef extends NodeDef {
  database?: string;
  tenant?: string;
  timeout?: string;
  requests?: string;
  flowTimeout?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function FederationPushNode(this: Node, def: PushDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const tenant = textField(def.tenant) || 'default';
    const timeoutMs = intField(def.timeout, 30, 1, 600) * 1000;
    const maxRequests = intField(def.requests, 10, 1, 1000);
    const resolveSecret = secretLookup(RED, node);
    const abort = new AbortController();
    let closing = false;
    let running: Promise<void> | undefined;
    let messages = 0;
    let consumers = 0;
    let skipped = 0;
    let lastError = '';
    const completion = trackCompletion(RED, node, intField(def.flowTimeout, 300, 1, 86_400) * 1000, () => status.soon());
    const status = throttledStatus(node, () => {
      const parts = [t('federation-push.status.sent', { n: messages, consumers })];
      if (running) parts.push(t('federation-push.status.running'));
      if (skipped > 0) parts.push(t('federation-push.status.skipped', { n: skipped }));
      if (lastError) parts.push(lastError);
      return { fill: lastError ? 'red' : running ? 'blue' : 'green', shape: messages > 0 ? 'dot' : 'ring', text: parts.join(', ').slice(0, 120) };
    });

    async function push(input: NodeMessage): Promise<string[]> {
      const sql = await db!.sql();
      const { _msgid: _ignored, payload: _payload, ...carried } = input as NodeMessage & Record<string, unknown>;
      const settings = await loadSettings(sql, tenant);
      const list = await pushConsumers(sql, tenant, settings);
      consumers = list.length;
      const failures: string[] = [];
      for (const consumer of list) {
        if (abort.signal.aborted) break;
        try {
          await pushConsumer(
            {
              db: sql,
              tenant,
              settings,
              resolveSecret,
              timeoutMs,
              maxRequests,
              signal: abort.signal,
              onRejected: (reason) => node.warn(`consumer ${String(consumer.id)}: ${reason}`),
              deliver: async (batch) => {
                await Promise.all(batch.map((m) => completion.send({ ...carried, ...m, tenant })));
                messages += batch.length;
                status.soon();
              },
            },
            consumer,
          );
        } catch (err) {
          failures.push(`consumer ${String(consumer.id)}: ${(err as Error).message}`);
        }
      }
      return failures;
    }

    node.on('input', (msg, _send, done) => {
      if (closing) return done(new Error('the node is stopping'));
      // One run at a time: a second would read watermarks the first has not committed yet.
      if (running) {
        skipped++;
        status.soon();
        return done();
      }
      running = push(msg)
        .then(
          (failures) => {
            lastError = failures.length ? t('federation-push.status.failed', { n: failures.length }) : '';
            done(failures.length ? new Error(`conflux-federation-push: ${failures.join('; ')}`) : undefined);
          },
          (err: Error) => {
            lastError = err.message.slice(0, 60);
            done(new Error(`conflux-federation-push: ${err.message}`));
          },
        )
        .finally(() => {
          running = undefined;
          status.soon();
        });
      status.soon();
    });
    status.now();

    closeAfter(node, db, async () => {
      closing = true;
      abort.abort(new Error('the node is stopping'));
      // What is in the flow stays uncommitted: the next start extracts it again (same message ids).
      completion.close('the node is stopping');
      await running;
      status.close();
      node.status({});
    });
  }
  RED.nodes.registerType('conflux-federation-push', FederationPushNode);
};
