/**
 * conflux-mqtt-in: devices over MQTT (docs/protocol-mqtt.md), in one of two modes:
 *   broker  an embedded broker (nodes/core/protocol/mqtt-broker.ts) on a port, optionally TLS,
 *           where each device logs in with its serial and its own key and publishes only under
 *           its own topics;
 *   client  a client of an external broker (nodes/core/protocol/mqtt-client.ts), MQTT 5 or
 *           3.1.1, with a persistent session and `$share/` subscriptions for several instances.
 * Either way the output is the canonical message of the device; an input message with
 * msg.command goes to the device as a command (its live session, or the external broker).
 *
 * Acknowledgement: a QoS 1 reading is PUBACKed to the device (broker) or the broker (client) once
 * the flow has finished with it (nodes/shared/completion.ts: with the shipped flows, once it is
 * stored); a reading a node failed, or that the flow did not finish within COMPLETE_TIMEOUT_MS,
 * is not acknowledged and comes again. "Acknowledge on receipt" PUBACKs once it is handed on.
 * At most Max in flight readings are in the flow at once. Past that, readings wait unacknowledged — the
 * device's connection is not read meanwhile, an external broker holds the rest — and, in broker
 * mode, past as many again waiting they are refused ('busy', MQTT 5 reason 0x97).
 */
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeStatus } from 'node-red';
import { MqttDeviceBroker, type DeviceReading, type MqttRejection } from '../core/protocol/mqtt-broker';
import { MqttBrokerClient, type ClientRejection, type ClientState } from '../core/protocol/mqtt-client';
import { brokerStatus, clientStatus } from '../core/protocol/mqtt-in-status';
import { sendCommandNow } from '../core/devices/command-message';
import { gatewayOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { createHandOff } from '../shared/completion';
import { boolField, intField, listField, textField } from '../shared/fields';
import { boundedReporter } from '../shared/reporter';
import { tlsConfigOf, type TlsOptions } from '../shared/tls-config';

interface MqttInDef extends NodeDef {
  gateway?: string;
  /** auto: client when the URL is set (e.g. ${CONFLUX_MQTT_URL}), else the embedded broker. */
  mode?: 'auto' | 'broker' | 'client';
  port?: string;
  host?: string;
  tls?: string;
  requireClientCert?: boolean | string;
  url?: string;
  protocolVersion?: string;
  clientId?: string;
  topics?: string;
  shareGroup?: string;
  qos?: string;
  sessionExpiry?: string;
  maxInFlight?: string;
  ack?: string;
}

interface MqttInCredentials {
  user?: string;
  password?: string;
  observerUser?: string;
  observerPassword?: string;
}

type CommandMessage = NodeMessage & {
  command?: unknown;
  device?: { tenant?: unknown; id?: unknown };
  tenant?: unknown;
};

const DEFAULT_PORT = 1883;
/** A flow that has not finished with a reading by then has it refused (the device sends it again). */
const COMPLETE_TIMEOUT_MS = 30_000;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function MqttInNode(this: Node<MqttInCredentials>, def: MqttInDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const gateway = gatewayOf(RED, t, node, def.gateway);
    if (!gateway) return;
    const mode = def.mode === 'client' || (def.mode === 'auto' && textField(def.url) !== '') ? 'client' : 'broker';
    const maxInFlight = intField(def.maxInFlight, 1_000, 1, 1_000_000);
    const credentials = node.credentials ?? {};

    // ── In flight: sent into the flow, not yet completed by every wired node ──
    let closed = false;
    const handOff = createHandOff(RED, node, {
      max: maxInFlight,
      timeoutMs: COMPLETE_TIMEOUT_MS,
      ackOnReceipt: def.ack === 'receipt',
      onSettled: () => status.soon(),
    });
    /** Hands a reading to the flow once it has room; the listener acknowledges when this resolves. */
    function deliver(msg: DeviceReading): Promise<void> | void {
      if (closed) return Promise.reject(new Error('the node is closing'));
      // Results on cmdexe answer the commands of a conflux-command node (matched by name); they
      // also leave on the output as msg.commandResults, as before.
      if (msg.commandResults && msg.device) gateway!.commands.resultsByName({ tenant: msg.device.tenant, serial: msg.device.id }, msg.commandResults);
      status.soon();
      return handOff.deliver(msg);
    }

    // ── Refusals to a Catch node, bounded ──
    const reportToCatch = boundedReporter(node);
    let refused = 0;
    function report(text: string, detail: Record<string, unknown>): void {
      refused++;
      status.soon();
      reportToCatch(`conflux-mqtt-in: ${text}`, detail); // beyond its rate, still counted in the status
    }

    // ── Status ──
    let show: () => NodeStatus | undefined = () => undefined;
    const status = throttledStatus(node, () => show());
    const counts = (accepted: number) => ({ accepted, refused, waiting: handOff.waiting });

    const tlsConfig = tlsConfigOf(RED, def.tls);

    let broker: MqttDeviceBroker | undefined;
    let client: MqttBrokerClient | undefined;
    gateway.connection.add(node);
    node.status({ fill: 'grey', shape: 'ring', text: 'conflux.status.starting' });

    if (mode === 'broker') {
      const port = intField(def.port, DEFAULT_PORT, 0, 65_535);
      const host = textField(def.host);
      let listening = '';
      let serverTls: TlsOptions | undefined;
      try {
        serverTls = tlsConfig.server(boolField(def.requireClientCert));
      } catch (err) {
        node.status({ fill: 'red', shape: 'ring', text: 'mqtt-in.status.tlsInvalid' });
        node.error(`conflux-mqtt-in: ${(err as Error).message}`);
      }
      const observerUser = textField(credentials.observerUser);
      const b = (broker = new MqttDeviceBroker({
        port,
        host: host || undefined,
        ...(serverTls ? { tls: serverTls } : {}),
        directory: () => gateway.directory(),
        sessions: gateway.sessions,
        rate: gateway.rate,
        tokens: gateway.tokens,
        limits: gateway.limits,
        // In the flow, and as many again waiting for a place, before devices are refused as busy.
        maxPending: 2 * maxInFlight,
        maxPendingPerSession: Math.min(2 * maxInFlight, 1_000),
        ...(observerUser && credentials.observerPassword ? { observer: { username: observerUser, password: credentials.observerPassword } } : {}),
        onReadings: deliver,
        onRejected: (r: MqttRejection) => {
          const who = r.device ? `device ${r.device.tenant}/${r.device.id}` : r.serial ? `"${r.serial}"` : 'a connection';
          report(`${who}${r.remote ? ` (${r.remote})` : ''} refused (${r.reason}): ${r.detail}`, {
            payload: r.detail,
            reason: r.reason,
            topic: r.topic,
            device: r.device,
          });
        },
        onSessions: () => status.soon(),
        onCommandTopic: (session) => void gateway.commands.flush(session),
      }));
      show = () => {
        const s = b.stats();
        return brokerStatus(t, listening, serverTls !== undefined, s.sessions, counts(s.accepted));
      };
      // An invalid TLS configuration does not fall back to plain text: the node does not listen.
      if (serverTls || !tlsConfig.chosen) {
        b.listen().then(
          (addr) => {
            listening = `${host || '*'}:${addr.port}`;
            if (!closed) status.now();
          },
          (err: Error & { code?: string }) => {
            node.status({ fill: 'red', shape: 'ring', text: err.code === 'EADDRINUSE' ? t('conflux.status.portInUse', { port }) : err.message.slice(0, 100) });
            node.error(`conflux-mqtt-in: cannot listen on ${host || '*'}:${port}: ${err.message}`);
          },
        );
      }
    } else {
      const url = textField(def.url);
      let state: ClientState = 'connecting';
      let stateDetail = '';
      show = () => clientStatus(t, state, stateDetail, counts(client ? client.stats().accepted : 0));
      if (!url) {
        node.status({ fill: 'red', shape: 'ring', text: 'mqtt-in.status.noUrl' });
        node.error('conflux-mqtt-in: client mode needs the broker URL');
      } else {
        try {
          const clientTls = tlsConfig.client();
          const c = (client = new MqttBrokerClient({
            url,
            protocolVersion: textField(def.protocolVersion) === '4' ? 4 : 5,
            clientId: textField(def.clientId) || `conflux-${node.id}`,
            ...(textField(credentials.user) ? { username: textField(credentials.user) } : {}),
            ...(credentials.password ? { password: credentials.password } : {}),
            ...(clientTls ? { tls: clientTls as MqttBrokerClientTls } : {}),
            topics: listField(def.topics),
            ...(textField(def.shareGroup) ? { shareGroup: textField(def.shareGroup) } : {}),
            qos: intField(def.qos, 1, 0, 2) as 0 | 1 | 2,
            sessionExpirySeconds: intField(def.sessionExpiry, 86_400, 0, 4_294_967_295),
            receiveMaximum: Math.min(65_535, maxInFlight),
            directory: () => gateway.directory(),
            rate: gateway.rate,
            maxFrameBytes: gateway.limits.maxFrameBytes,
            onReadings: deliver,
            onRejected: (r: ClientRejection) =>
              report(`message on ${r.topic} dropped (${r.reason}): ${r.detail}`, { payload: r.detail, reason: r.reason, topic: r.topic, device: r.device }),
            onState: (s, detail) => {
              state = s;
              stateDetail = detail ?? '';
              if (detail && s !== 'closed') node.warn(`conflux-mqtt-in: ${url}: ${detail}`);
              status.soon();
            },
          }));
          c.start();
          status.now();
        } catch (err) {
          node.status({ fill: 'red', shape: 'ring', text: (err as Error).message.slice(0, 100) });
          node.error(`conflux-mqtt-in: ${(err as Error).message}`);
        }
      }
    }

    // ── Commands to devices: through the external broker, or the device's session on ours ──
    node.on('input', (input, _send, done) => {
      const publish = client ? client.publishCommand.bind(client) : undefined;
      sendCommandNow(input as CommandMessage, gateway.sessions, publish).then(() => done(), done);
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      status.close();
      handOff.close('the node is closing');
      Promise.all([broker?.close(), client?.close()])
        .catch((err: Error) => node.warn(`conflux-mqtt-in: ${err.message}`))
        .finally(() => {
          gateway.connection.remove(node);
          node.status({});
          done();
        });
    });
  }

  RED.nodes.registerType<Node<MqttInCredentials>, MqttInDef, unknown, MqttInCredentials>('conflux-mqtt-in', MqttInNode, {
    credentials: {
      user: { type: 'text' },
      password: { type: 'password' },
      observerUser: { type: 'text' },
      observerPassword: { type: 'password' },
    },
  });
};

type MqttBrokerClientTls = NonNullable<ConstructorParameters<typeof MqttBrokerClient>[0]['tls']>;
