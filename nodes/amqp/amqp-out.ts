/**
 * conflux-amqp-out: readings and events onto the customers' AMQP queues (docs/amqp.md). A
 * message is turned into its AMQP messages (eapi_* through the eapi codec, or a platform event as
 * JSON; nodes/core/amqp/messages.ts), written to the outbox, and only then done() and passed on:
 * accepted means kept. In the background the outbox is drained onto the broker on a confirm
 * channel, each row deleted once the broker confirmed it (nodes/core/amqp/outbox-publisher.ts),
 * so a broker outage loses nothing. The customer is the node's, else msg.customer, else the
 * tenant (msg.device.tenant, msg.tenant, the node's default tenant).
 */
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { prepareOutgoing, type Prepared, type ReadingMode } from '../core/amqp/messages';
import { FAST_PATH_HOLD_MS, OutboxPublisher } from '../core/amqp/outbox-publisher';
import { checkCustomer, DEFAULT_TOPOLOGY, type Topology } from '../core/amqp/topology';
import { groupBy } from '../core/group-by';
import { Mailbox } from '../core/mailbox/mailbox';
import { Batcher } from '../core/stores/batcher';
import type { AmqpConfigNode } from '../shared/config-nodes';
import { closeAfter, configOf, databaseOf } from '../shared/config-user';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { unusableStatus } from '../shared/not-configured';
import { throttledStatus } from '../shared/status-fanout';
import { tenantOf } from '../shared/tier-node';

interface AmqpOutDef extends NodeDef {
  amqp?: string;
  database?: string;
  customer?: string;
  mode?: ReadingMode;
  tenant?: string;
  exchange?: string;
  deadLetterExchange?: string;
  queuePrefix?: string;
  ttlHours?: string;
  deadTtlHours?: string;
  maxInFlight?: string;
  maxAttempts?: string;
}

type OutMessage = NodeMessage & { customer?: unknown; tenant?: unknown; device?: { tenant?: unknown }; messageIds?: string[] };

interface Entry {
  tenant: string;
  prepared: Prepared;
}

const HOUR_MS = 3_600_000;
/** Outbox writers working at once (each one INSERT at a time). */
const WRITERS = 3;
/** Hours (fractions allowed: a test watches a TTL of seconds expire), as ms; at most a year. */
const hoursField = (value: unknown, fallback: number): number => {
  const n = Number(textField(value));
  return Math.max(1, Math.round(Math.min(Number.isFinite(n) && n > 0 ? n : fallback, 24 * 365) * HOUR_MS));
};

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function AmqpOutNode(this: Node, def: AmqpOutDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = configOf<AmqpConfigNode>(RED, t, node, def.amqp, 'conflux-amqp');
    if (!config) return;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const mode: ReadingMode = def.mode === 'event' ? 'event' : 'eapi';
    const fixedCustomer = textField(def.customer);
    const defaultTenant = textField(def.tenant) || 'default';
    const topology: Topology = {
      exchange: textField(def.exchange) || DEFAULT_TOPOLOGY.exchange,
      deadLetterExchange: textField(def.deadLetterExchange) || DEFAULT_TOPOLOGY.deadLetterExchange,
      queuePrefix: def.queuePrefix === undefined ? DEFAULT_TOPOLOGY.queuePrefix : textField(def.queuePrefix),
      ttlMs: hoursField(def.ttlHours, 72),
      deadTtlMs: hoursField(def.deadTtlHours, 336),
    };
    const outboxQueue = `amqp:${node.id}`;
    const sql = db.sql();
    const box = sql.then((s) => new Mailbox(s, 'outbox'));

    let closing = false;
    let accepted = 0;
    let lastError = '';
    const status = throttledStatus(node, () => {
      const a = config.amqp;
      if (!a) return unusableStatus(config, 'no AMQP connection');
      const parts = [t('amqp-out.status.published', { n: publisher?.published ?? 0 })];
      if (accepted > 0) parts.push(t('conflux.status.accepted', { n: accepted }));
      if (publisher && publisher.inFlight > 0) parts.push(t('conflux.status.inFlight', { n: publisher.inFlight }));
      if (publisher && publisher.failed > 0) parts.push(t('conflux.status.failed', { n: publisher.failed }));
      const up = a?.state === 'connected';
      return {
        fill: lastError || !up ? (up ? 'yellow' : 'red') : 'green',
        shape: up ? 'dot' : 'ring',
        text: `${up ? '' : `${t(`amqp-out.state.${a?.state ?? 'closed'}`)}, `}${parts.join(', ')}${lastError ? `, ${lastError}` : ''}`.slice(0, 120),
      };
    });

    let publisher: OutboxPublisher | undefined;
    if (!config.amqp) {
      status.now();
    } else {
      const amqp = config.amqp;
      void Promise.all([box, sql]).then(
        ([b, s]) => {
          if (closing) return;
          publisher = new OutboxPublisher({
            connection: amqp,
            box: b,
            sql: s,
            queue: outboxQueue,
            worker: `${os.hostname()}:${process.pid}:${node.id}`,
            topology,
            capacity: intField(def.maxInFlight, 1_000, 1, 10_000),
            leaseMs: 60_000,
            pollMs: 500,
            retry: { baseDelayMs: 1_000, maxDelayMs: 300_000, maxAttempts: intField(def.maxAttempts, 50, 1, 1_000), jitter: 0.2 },
            onPublished: () => {
              lastError = '';
              status.soon();
            },
            onFailed: (messageId, err, outcome) => {
              lastError = err.message.slice(0, 60);
              if (outcome?.outcome === 'dead') node.warn(`conflux-amqp-out: message ${messageId} moved to the outbox's dead letters: ${err.message}`);
              status.soon();
            },
            onError: (err) => {
              lastError = err.message.slice(0, 60);
              status.soon();
            },
          });
          publisher.start();
        },
        (err: Error) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 100) }),
      );
    }
    const statusTimer = setInterval(() => status.soon(), 1_000); // the connection's state changes without a message

    // A few writers taking turns: one INSERT waits on the database while the next batch fills and goes.
    const writers = Array.from(
      { length: WRITERS },
      () =>
        new Batcher<Entry>({
          maxBatch: 2_000,
          maxDelayMs: 5,
          maxPending: Math.ceil(50_000 / WRITERS),
          write: (entries) => writeBatch(entries),
        }),
    );
    let turn = 0;
    async function writeBatch(entries: Entry[]): Promise<void> {
      const b = await box;
      // Connected: held back from the Drainer and published at once (the fast path); else for the Drainer.
      const fast = publisher?.fast === true;
      for (const [tenant, group] of groupBy(entries, (e) => e.tenant))
        await b.enqueue(
          tenant,
          outboxQueue,
          group.map((e) => ({ messageId: e.prepared.messageId, payload: e.prepared.message })),
          fast ? { delayMs: FAST_PATH_HOLD_MS } : {},
        );
      if (fast) publisher?.publishNow(entries.map((e) => ({ tenant: e.tenant, messageId: e.prepared.messageId, message: e.prepared.message })));
      else publisher?.nudge();
    }

    node.on('input', (input, send, done) => {
      const msg = input as OutMessage;
      let entries: Entry[];
      try {
        const tenant = tenantOf(msg, defaultTenant);
        const customer = checkCustomer(fixedCustomer || (typeof msg.customer === 'string' && msg.customer !== '' ? msg.customer : tenant));
        entries = prepareOutgoing(msg as Parameters<typeof prepareOutgoing>[0], customer, mode, defaultTenant).map((prepared) => ({ tenant, prepared }));
      } catch (err) {
        return done(err as Error);
      }
      writers[turn++ % WRITERS].add(entries).then(() => {
        accepted += entries.length;
        status.soon();
        msg.messageIds = entries.map((e) => e.prepared.messageId); // the ids consumers will see
        send(msg);
        done();
      }, done);
    });

    closeAfter(node, db, async () => {
      closing = true;
      clearInterval(statusTimer);
      status.close();
      await Promise.all(writers.map((w) => w.close()));
      await publisher?.stop();
    });
    // Registered as a user of the connection so that it closes only after the publisher stopped;
    // by a stand-in, since this node shows its own status (counts) rather than the connection's.
    const user = { status: () => undefined } as unknown as Node;
    config.connection.add(user);
    node.on('close', (_removed: boolean, done: () => void) => {
      void (publisher?.stop() ?? Promise.resolve()).finally(() => {
        config.connection.remove(user);
        done();
      });
    });
  }
  RED.nodes.registerType('conflux-amqp-out', AmqpOutNode);
};
