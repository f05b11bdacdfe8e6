import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { createBusinessStore, type BusinessStore } from '../core/stores/business';
import { businessEvent, emitTo } from '../core/events/platform';
import { closeAfter, databaseOf } from '../shared/config-user';
import { publishEvent } from '../shared/event-hub';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { textField } from '../shared/fields';
import { tenantOf } from '../shared/tier-node';

interface BusinessDef extends NodeDef {
  database?: string;
  entity?: string;
  action?: string;
  tenant?: string;
}

type BusinessMessage = NodeMessage & {
  action?: unknown;
  entity?: unknown;
  id?: unknown;
  filter?: unknown;
  limit?: unknown;
  cursor?: unknown;
  tenant?: unknown;
  device?: { tenant?: unknown };
};

const ACTIONS = ['create', 'read', 'update', 'delete', 'list', 'restart'] as const;
type Action = (typeof ACTIONS)[number];

function run(store: BusinessStore, action: Action, tenant: string, entity: string, msg: BusinessMessage): Promise<unknown> {
  const id = msg.id as string | number;
  switch (action) {
    case 'create':
      return store.create(tenant, entity, msg.payload as Record<string, unknown>);
    case 'read':
      return store.read(tenant, entity, id);
    case 'update':
      return store.update(tenant, entity, id, msg.payload as Record<string, unknown>);
    case 'delete':
      return store.delete(tenant, entity, id);
    case 'list':
      return store.list(tenant, entity, {
        filter: msg.filter as Record<string, string | number | boolean | null> | undefined,
        limit: msg.limit === undefined ? undefined : Number(msg.limit),
        cursor: typeof msg.cursor === 'string' ? msg.cursor : undefined,
      });
    case 'restart':
      return store.restartDevice(tenant, id);
  }
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function BusinessNode(this: Node, def: BusinessDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const store = db.sql().then((sql) => createBusinessStore(sql));
    store.catch((err: Error) => node.status({ fill: 'red', shape: 'ring', text: err.message.slice(0, 100) }));
    const defaultTenant = textField(def.tenant) || 'default';
    let done = 0;
    let failed = 0;
    let lastError = '';
    const status = throttledStatus(node, () => {
      const text = t('business.status.done', { n: done });
      if (lastError)
        return { fill: 'red', shape: 'ring', text: `${text}, ${t('conflux.status.failedBecause', { n: failed, reason: lastError })}`.slice(0, 120) };
      return { fill: 'green', shape: 'dot', text: failed ? `${text}, ${t('conflux.status.failed', { n: failed })}` : text };
    });

    node.on('input', (input, send, finish) => {
      const msg = input as BusinessMessage;
      // The node's settings win over the message: a flow fixed to one entity stays on it.
      const action = (textField(def.action) || msg.action) as Action;
      const entity = textField(def.entity) || (typeof msg.entity === 'string' ? msg.entity : '');
      if (!ACTIONS.includes(action)) return finish(new Error(`msg.action must be one of ${ACTIONS.join(', ')}`));
      if (action === 'restart' ? false : entity === '') return finish(new Error('msg.entity is missing'));
      const tenant = tenantOf(msg, defaultTenant);
      store
        .then((s) => run(s, action, tenant, action === 'restart' ? 'devices' : entity, msg))
        .then(
          (result) => {
            // Devices created, updated or deleted here are platform events (device.created…).
            emitTo(
              (event) => publishEvent(RED, event),
              () => businessEvent(action, entity, tenant, result, msg.payload),
            );
            if (action === 'list') {
              const page = result as { items: unknown[]; cursor?: string };
              msg.payload = page.items;
              if (page.cursor) msg.cursor = page.cursor;
              else delete msg.cursor;
            } else msg.payload = result;
            done++;
            lastError = '';
            status.soon();
            send(msg);
            finish();
          },
          (err: Error) => {
            failed++;
            lastError = err.message;
            status.soon();
            finish(err);
          },
        );
    });
    closeAfter(node, db, async () => status.close());
  }
  RED.nodes.registerType('conflux-business', BusinessNode);
};
