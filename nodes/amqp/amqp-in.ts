/**
 * conflux-amqp-in: messages from an AMQP queue into the flow, decoded (eapi, SenML JSON, or JSON
 * passed through) into the canonical message. Each is acknowledged to the broker only when the
 * flow has finished with it (nodes/shared/completion.ts, as the device listeners do); a message
 * the flow fails, or that it does not finish within the timeout, is retried up to N times and
 * then dead-lettered; one that cannot be decoded is dead-lettered at once (and reported to a Catch
 * node). At most `prefetch` messages are unacknowledged at once. Several nodes (or platforms) may
 * consume one queue. Logic: nodes/core/amqp/consumer.ts.
 */
import type { ConsumeMessage } from 'amqplib';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { AmqpConsumer, PermanentError, retriesOf, type ConsumerState } from '../core/amqp/consumer';
import { decodeIncoming, type InCodec } from '../core/amqp/messages';
import { DEFAULT_TOPOLOGY, queueArguments } from '../core/amqp/topology';
import { createHandOff } from '../shared/completion';
import type { AmqpConfigNode } from '../shared/config-nodes';
import { configOf } from '../shared/config-user';
import { boolField, intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { boundedReporter } from '../shared/reporter';
import { unusableStatus } from '../shared/not-configured';
import { throttledStatus } from '../shared/status-fanout';

interface AmqpInDef extends NodeDef {
  amqp?: string;
  queue?: string;
  declare?: boolean | string;
  ttlHours?: string;
  deadLetterExchange?: string;
  codec?: InCodec;
  tenant?: string;
  prefetch?: string;
  maxRetries?: string;
  timeoutSeconds?: string;
}

const CODECS: ReadonlySet<string> = new Set(['eapi', 'senml', 'json']);

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function AmqpInNode(this: Node, def: AmqpInDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = configOf<AmqpConfigNode>(RED, t, node, def.amqp, 'conflux-amqp');
    if (!config) return;
    const queue = textField(def.queue);
    const codec: InCodec = CODECS.has(def.codec ?? '') ? (def.codec as InCodec) : 'eapi';
    const tenant = textField(def.tenant) || 'default';
    const prefetch = intField(def.prefetch, 100, 1, 65_535);
    let state: ConsumerState | 'stopped' = 'waiting';
    let detail = '';
    let acked = 0;
    let retried = 0;
    let dead = 0;

    // Checked before the hand-off: it hooks into the runtime and must be released on close.
    if (!config.amqp) {
      node.status(unusableStatus(config, 'no AMQP connection'));
      return;
    }
    if (!queue) {
      node.status({ fill: 'red', shape: 'ring', text: 'amqp-in.status.noQueue' });
      node.error('conflux-amqp-in: no queue named');
      return;
    }
    const amqpConnection = config.amqp;
    const handOff = createHandOff(RED, node, {
      max: prefetch,
      timeoutMs: intField(def.timeoutSeconds, 60, 1, 86_400) * 1000,
      onSettled: () => status.soon(),
    });
    const status = throttledStatus(node, () => {
      const up = config.amqp?.state === 'connected' && state === 'consuming';
      const parts = [t('amqp-in.status.acked', { n: acked })];
      if (handOff.size > 0) parts.push(t('conflux.status.inFlight', { n: handOff.size }));
      if (retried > 0) parts.push(t('amqp-in.status.retried', { n: retried }));
      if (dead > 0) parts.push(t('amqp-in.status.dead', { n: dead }));
      const where = up
        ? queue
        : config.amqp?.state === 'connected'
          ? `${t(`amqp-in.state.${state}`)}${detail ? ` (${detail})` : ''}`
          : t(`amqp-in.state.${config.amqp?.state ?? 'closed'}`);
      return { fill: up ? 'green' : 'yellow', shape: up ? 'dot' : 'ring', text: `${where}: ${parts.join(', ')}`.slice(0, 120) };
    });
    const report = boundedReporter(node);

    async function handle(m: ConsumeMessage): Promise<void> {
      let decoded;
      try {
        decoded = decodeIncoming(m.content, codec);
      } catch (err) {
        report(`conflux-amqp-in: message ${m.properties.messageId ?? ''} on ${queue} cannot be decoded as ${codec}, dead-lettered: ${(err as Error).message}`, {
          payload: m.content.toString('utf8').slice(0, 1_000),
        });
        throw new PermanentError((err as Error).message);
      }
      const msg = {
        payload: decoded.payload,
        ...(decoded.deviceId ? { device: { tenant, id: decoded.deviceId } } : {}),
        tenant,
        source: { transport: 'amqp', format: decoded.format, receivedAt: Date.now() },
        amqp: {
          queue,
          exchange: m.fields.exchange,
          routingKey: m.fields.routingKey,
          messageId: m.properties.messageId,
          type: m.properties.type,
          headers: m.properties.headers ?? {},
          redelivered: m.fields.redelivered,
          retries: retriesOf(m),
        },
        ...(typeof m.properties.messageId === 'string' ? { messageId: m.properties.messageId } : {}),
      };
      status.soon();
      await handOff.deliver(msg as unknown as NodeMessage);
    }

    const consumer = new AmqpConsumer({
      connection: amqpConnection,
      queue,
      prefetch,
      maxRetries: intField(def.maxRetries, 3, 0, 1_000),
      declare: boolField(def.declare)
        ? queueArguments({
            ...DEFAULT_TOPOLOGY,
            deadLetterExchange: textField(def.deadLetterExchange) || DEFAULT_TOPOLOGY.deadLetterExchange,
            ttlMs: Math.max(1, Math.round((Number(textField(def.ttlHours)) || 72) * 3_600_000)),
          })
        : undefined,
      handle,
      onState: (s, d) => {
        state = s;
        detail = s === 'consuming' ? '' : (d ?? '');
        if (s === 'resubscribing' && d) node.warn(`conflux-amqp-in: ${queue}: ${d}`);
        status.soon();
      },
      onSettled: (outcome, m, err) => {
        if (outcome === 'acked') acked++;
        else if (outcome === 'retried') retried++;
        else {
          dead++;
          if (!(err instanceof PermanentError))
            node.warn(`conflux-amqp-in: message ${m.properties.messageId ?? ''} dead-lettered after ${retriesOf(m)} retries: ${err?.message ?? ''}`);
        }
        status.soon();
      },
    });
    consumer.start();
    const statusTimer = setInterval(() => status.soon(), 1_000);
    const user = { status: () => undefined } as unknown as Node; // see amqp-out: closes the connection after us
    config.connection.add(user);
    node.on('close', (_removed: boolean, done: () => void) => {
      state = 'stopped';
      clearInterval(statusTimer);
      status.close();
      consumer.stop(); // unacknowledged messages go back to the queue with the channel
      handOff.close('the node is stopping');
      config.connection.remove(user);
      done();
    });
  }
  RED.nodes.registerType('conflux-amqp-in', AmqpInNode);
};
