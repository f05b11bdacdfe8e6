/**
 * conflux-mailbox: the inbox and outbox. In "enqueue" mode a message is written to the box
 * before done() and passed on; in "drain" mode the node hands out the box's messages and takes
 * them back, once delivered, on its input: without msg.error it acks them, with msg.error
 * (from a Catch node) it nacks them — retried with backoff, dead-lettered after N tries.
 */
import { randomUUID } from 'node:crypto';
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { Drainer } from '../core/mailbox/drainer';
import { Mailbox, type BoxName, type ClaimedMessage, type RowId } from '../core/mailbox/mailbox';
import { fromStored, toStored, type StoredMessage } from '../core/mailbox/stored-message';
import { groupBy } from '../core/group-by';
import { Batcher } from '../core/stores/batcher';
import { closeAfter, databaseOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { intField, textField } from '../shared/fields';
import { tenantOf } from '../shared/tier-node';

interface MailboxDef extends NodeDef {
  database?: string;
  mode?: 'enqueue' | 'drain';
  box?: BoxName;
  queue?: string;
  tenant?: string;
  batchSize?: string;
  leaseSeconds?: string;
  pollMs?: string;
  maxAttempts?: string;
  baseDelayMs?: string;
  maxDelayMs?: string;
}

type MailboxMessage = NodeMessage & {
  messageId?: unknown;
  queue?: unknown;
  tenant?: unknown;
  device?: { tenant?: unknown };
  error?: unknown;
  mailbox?: { box?: string; queue?: string; id?: unknown };
};

interface Entry {
  tenant: string;
  queue: string;
  messageId: string;
  payload: StoredMessage;
}

const DEPTH_EVERY_MS = 2_000;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function MailboxNode(this: Node, def: MailboxDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const boxName: BoxName = def.box === 'inbox' ? 'inbox' : 'outbox';
    const queue = textField(def.queue);
    const defaultTenant = textField(def.tenant) || 'default';
    const batchSize = intField(def.batchSize, 100, 1, 10_000);
    const box = db.sql().then((sql) => new Mailbox(sql, boxName));
    box.catch((err: Error) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 100) }));

    let closing = false;
    let depth: number | undefined;
    let lastError = '';
    const show = (extra: string) =>
      node.status({
        fill: lastError ? 'red' : 'green',
        shape: lastError ? 'ring' : 'dot',
        text: `${boxName}${queue ? `/${queue}` : ''}: ${t('conflux.status.waiting', { n: depth ?? '?' })}${extra}${lastError ? `, ${lastError}` : ''}`.slice(
          0,
          120,
        ),
      });

    const depthTimer = setInterval(() => {
      box
        .then((b) => b.depth(queue || 'default'))
        .then(
          (n) => {
            depth = n;
            lastError = '';
          },
          (err: Error) => void (lastError = err.message),
        )
        .finally(() => show(drainer ? `, ${t('mailbox.status.out', { n: drainer.inFlight })}` : ''));
    }, DEPTH_EVERY_MS);

    let drainer: Drainer | undefined;
    let writer: Batcher<Entry> | undefined;

    if (def.mode === 'drain') {
      const worker = `${os.hostname()}:${process.pid}:${node.id}`;
      void box.then((b) => {
        if (closing) return;
        drainer = new Drainer(b, {
          queue: queue || 'default',
          worker,
          capacity: batchSize,
          leaseMs: intField(def.leaseSeconds, 60, 1, 86_400) * 1000,
          pollMs: intField(def.pollMs, 1_000, 10, 600_000),
          retry: {
            maxAttempts: intField(def.maxAttempts, 10, 1, 1_000),
            baseDelayMs: intField(def.baseDelayMs, 1_000, 0, 86_400_000),
            maxDelayMs: Math.max(intField(def.baseDelayMs, 1_000, 0, 86_400_000), intField(def.maxDelayMs, 300_000, 0, 86_400_000)),
            jitter: 0.2,
          },
          deliver: (m: ClaimedMessage) => node.send(fromStored(m, boxName) as unknown as NodeMessage),
          onError: (err) => {
            lastError = err.message;
            show('');
          },
        });
        drainer.start();
      });
      node.on('input', (input, _send, done) => {
        const msg = input as MailboxMessage;
        const ref = msg.mailbox;
        if (!ref || !(typeof ref.id === 'number' || typeof ref.id === 'bigint') || ref.box !== boxName || ref.queue !== (queue || 'default')) {
          return done(new Error(`a draining mailbox takes back only the messages it handed out (msg.mailbox from ${boxName} queue ${queue || 'default'})`));
        }
        if (!drainer) return done(new Error('the mailbox is not draining yet'));
        const id: RowId = ref.id;
        if (msg.error === undefined) drainer.ack(id).then(() => done(), done);
        else
          drainer.nack(id, (msg.error as { message?: unknown }).message ?? msg.error).then((r) => {
            if (r.outcome === 'dead') node.warn(`${boxName} message ${id} moved to dead_letters after ${r.attempts} attempts`);
            done();
          }, done);
      });
    } else {
      const w = (writer = new Batcher<Entry>({
        maxBatch: batchSize,
        maxDelayMs: 10,
        maxPending: 50_000,
        write: async (entries) => {
          const b = await box;
          for (const group of groupBy(entries, (e) => JSON.stringify([e.tenant, e.queue])).values()) {
            await b.enqueue(
              group[0].tenant,
              group[0].queue,
              group.map((e) => ({ messageId: e.messageId, payload: e.payload })),
            );
          }
        },
      }));
      node.on('input', (input, send, done) => {
        const msg = input as MailboxMessage;
        const messageId = typeof msg.messageId === 'string' && msg.messageId !== '' ? msg.messageId : (msg._msgid ?? randomUUID());
        const entry: Entry = {
          tenant: tenantOf(msg, defaultTenant),
          queue: queue || (typeof msg.queue === 'string' && msg.queue !== '' ? msg.queue : 'default'),
          messageId,
          payload: toStored(msg),
        };
        w.add([entry]).then(() => {
          msg.messageId = messageId; // the id a peer will see, for the flow to log or answer with
          send(msg);
          done();
        }, done);
      });
    }

    closeAfter(node, db, async () => {
      closing = true;
      clearInterval(depthTimer);
      await drainer?.stop();
      await writer?.close();
    });
  }
  RED.nodes.registerType('conflux-mailbox', MailboxNode);
};
