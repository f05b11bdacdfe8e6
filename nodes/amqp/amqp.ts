/**
 * conflux-amqp: the connection to a RabbitMQ (AMQP 0-9-1) broker — one or more URLs tried in turn,
 * vhost, heartbeat, user and password (credentials), TLS from a tls-config node (CA, client
 * certificate and key). It reconnects by itself with backoff (nodes/core/amqp/connection.ts) and
 * shows its state on every node that uses it.
 */
import type { NodeAPI, NodeDef } from 'node-red';
import { AmqpConnection, type AmqpState } from '../core/amqp/connection';
import type { AmqpConfigNode, AmqpCredentials } from '../shared/config-nodes';
import { intField, listField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { notConfigured, reportNotConfigured } from '../shared/not-configured';
import { StatusFanout } from '../shared/status-fanout';
import { tlsConfigOf } from '../shared/tls-config';

interface AmqpDef extends NodeDef {
  urls?: string;
  vhost?: string;
  heartbeat?: string;
  tls?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function AmqpNode(this: AmqpConfigNode, def: AmqpDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const creds = node.credentials ?? {};
    const connection = new StatusFanout();
    (node as { connection: StatusFanout }).connection = connection;
    const invalid = (reason: string) => {
      (node as { problem: string }).problem = `invalid AMQP configuration: ${reason}`;
      connection.failed(t('conflux.status.invalidConfig', { reason }));
    };
    const urls = listField(def.urls);
    if (urls.length === 0) {
      // Nothing to connect to (CONFLUX_AMQP_URL unset): the users say what to set, messages wait in the outbox.
      const missing = reportNotConfigured(node, notConfigured(t, def.urls, 'urls', 'amqp.label.urls'));
      Object.assign(node, { problem: missing.reason, notConfigured: missing });
      connection.set(missing.status);
      return;
    }
    let amqp: AmqpConnection;
    try {
      amqp = new AmqpConnection({
        urls,
        vhost: textField(def.vhost) || undefined,
        username: textField(creds.user) || undefined,
        password: creds.password || undefined,
        heartbeat: intField(def.heartbeat, 30, 0, 3_600),
        tls: tlsConfigOf(RED, textField(def.tls) || undefined).client(),
        name: `conflux ${node.name || node.id}`,
        onState: (state: AmqpState, detail?: string) => {
          if (state === 'connected') connection.connected(`AMQP ${amqp?.current ?? ''}${detail?.startsWith('blocked') ? ` (${detail})` : ''}`.slice(0, 100));
          else if (state === 'closed') connection.set({ fill: 'grey', shape: 'ring', text: 'conflux.status.disconnected' });
          else if (state === 'reconnecting') {
            connection.set({ fill: 'yellow', shape: 'ring', text: `${t('conflux.status.reconnecting')}: ${detail ?? ''}`.slice(0, 100) });
            if (detail) node.debug(`conflux-amqp: ${detail}`);
          }
        },
      });
    } catch (err) {
      return invalid((err as Error).message);
    }
    (node as { amqp: AmqpConnection }).amqp = amqp;
    connection.set({ fill: 'yellow', shape: 'ring', text: 'amqp.status.connecting' });
    amqp.start();
    node.on('close', (_removed: boolean, done: () => void) => {
      void connection
        .drained()
        .then(() => amqp.close())
        .finally(done);
    });
  }

  RED.nodes.registerType<AmqpConfigNode, AmqpDef, unknown, AmqpCredentials>('conflux-amqp', AmqpNode, {
    credentials: { user: { type: 'text' }, password: { type: 'password' } },
  });
};
