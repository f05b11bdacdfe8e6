/**
 * conflux-webhook-out: sends platform events to the subscriptions of the business store, as
 * signed JSON POSTs (Standard Webhooks), at least once. Each event is written to the outbox, one
 * message per matching subscription, before done(); the node's own drainer delivers them with
 * retries, Retry-After, 410 switch-off, per-endpoint limits and a circuit breaker
 * (nodes/core/webhooks/out-sender.ts). A canonical reading message becomes reading.received.
 */
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { carriedEvent, readingEvent, type PlatformEvent } from '../core/events/event';
import type { CanonicalMessage } from '../core/model/message';
import { WebhookSender } from '../core/webhooks/out-sender';
import type { WebhooksConfigNode } from '../shared/config-nodes';
import { closeAfter, configOf, databaseOf } from '../shared/config-user';
import { publishEvent } from '../shared/event-hub';
import { textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';

interface WebhookOutDef extends NodeDef {
  webhooks?: string;
  tenant?: string;
}

type WebhookMessage = NodeMessage & { event?: unknown; webhooks?: unknown };

const DEPTH_EVERY_MS = 2_000;
const CACHE_MS = 2_000;
/** The delivery log and the event bodies a resend needs are kept this long (docs/webhooks.md). */
const KEEP_LOG_DAYS = 30;
const PRUNE_EVERY_MS = 3_600_000;
const PRUNE_FIRST_MS = 60_000;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function WebhookOutNode(this: Node, def: WebhookOutDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = configOf<WebhooksConfigNode>(RED, t, node, def.webhooks, 'conflux-webhooks');
    if (!config) return;
    if (config.problem) {
      node.status({ fill: 'red', shape: 'ring', text: t('conflux.status.invalidConfig', { reason: config.problem }) });
      node.on('input', (_msg, _send, done) => done(new Error(`invalid conflux-webhooks configuration: ${config.problem}`)));
      return;
    }
    const db = databaseOf(RED, t, node, config.database);
    if (!db) return;
    const defaultTenant = textField(def.tenant) || 'default';
    const s = config.settings;
    let depth: number | undefined;
    let sender: WebhookSender | undefined;
    let closing = false;

    const status = throttledStatus(node, () => {
      if (!sender) return undefined;
      const { inFlight, waiting, failed, dead, lastError } = sender.stats;
      const text = [
        t('conflux.status.queued', { n: depth ?? '?' }),
        t('conflux.status.inFlight', { n: inFlight + waiting }),
        t('conflux.status.failed', { n: failed }),
        dead ? t('webhook-out.status.dead', { n: dead }) : '',
        lastError,
      ]
        .filter((x) => x !== '')
        .join(', ');
      const bad = lastError !== '' || dead > 0;
      return { fill: bad ? 'red' : failed > 0 ? 'yellow' : 'green', shape: bad ? 'ring' : 'dot', text: text.slice(0, 120) };
    });

    const ready = db.sql().then((sql) => {
      if (closing) return undefined;
      sender = new WebhookSender(
        sql,
        {
          ...s,
          keepBytes: 1_024,
          worker: `${os.hostname()}:${process.pid}:${node.id}`,
          leaseMs: Math.max(60_000, 2 * (s.connectTimeoutMs + s.responseTimeoutMs)),
          pollMs: 1_000,
          cacheMs: CACHE_MS,
          maxWaiting: Math.max(1, Math.floor(s.capacity * 0.9)), // a tenth of the capacity stays free for the other endpoints
          holdMs: 5_000,
          busyDelayMs: 100,
        },
        {
          publish: (event) => publishEvent(RED, event),
          onError: (err) => node.warn(err.message),
          onChange: () => status.soon(),
        },
      );
      sender.start();
      return sender;
    });
    ready.catch((err: Error) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 100) }));

    const depthTimer = setInterval(() => {
      sender?.depth().then(
        (n) => {
          depth = n;
          status.soon();
        },
        () => undefined,
      );
    }, DEPTH_EVERY_MS);

    // Every instance may prune; deleting twice is harmless.
    const prune = () => void sender?.subscriptions.prune(KEEP_LOG_DAYS).catch((err: Error) => node.warn(`pruning the delivery log: ${err.message}`));
    const pruneTimers = [setTimeout(prune, PRUNE_FIRST_MS), setInterval(prune, PRUNE_EVERY_MS)];

    node.on('input', (input, send, done) => {
      const msg = input as WebhookMessage;
      let event: PlatformEvent;
      try {
        // A canonical reading goes out as reading.received.
        event = carriedEvent(msg) ?? readingEvent(msg as unknown as CanonicalMessage, defaultTenant);
      } catch (err) {
        return done(err as Error);
      }
      ready
        .then((out) => {
          if (!out) throw new Error('the node is closing');
          return out.enqueue(event);
        })
        .then((subscriptions) => {
          msg.webhooks = { eventId: event.id, subscriptions };
          status.soon();
          send(msg);
          done();
        }, done);
    });

    closeAfter(node, db, async () => {
      closing = true;
      clearInterval(depthTimer);
      pruneTimers.forEach(clearTimeout);
      status.close();
      await sender?.stop();
    });
  }
  RED.nodes.registerType('conflux-webhook-out', WebhookOutNode);
};
