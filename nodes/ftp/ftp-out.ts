/**
 * conflux-ftp-out: delivers a message's files to an FTP/FTPS target, at least once (docs/ftp.md).
 * The target is the node's conflux-ftp, or, without one, the business store's target for the
 * message's user or client (msg.user, msg.client; or msg.ftpTarget by name or id). The files are
 * named by the naming rules (the target's own in the store, else the node's), zipped with the
 * metadata JSON when asked, written to the outbox, and only then done() and passed on. In the
 * background the node's sender uploads them over a bounded pool of connections, each file under
 * a temporary name then renamed (nodes/core/ftp/sender.ts).
 */
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { buildDelivery, deliveryDate, deliveryId, filesOf, messageFields, type NamingRules } from '../core/ftp/package';
import { FtpPool } from '../core/ftp/pool';
import { FtpSender, type TargetRef } from '../core/ftp/sender';
import { TargetStore, targetOfRow, type FtpTarget } from '../core/ftp/targets';
import { ftpConnections, type FtpClient } from '../core/ftp/upload';
import type { FtpConfigNode } from '../shared/config-nodes';
import { closeAfter, configOf, databaseOf } from '../shared/config-user';
import { boolField, intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { tenantOf } from '../shared/tier-node';

interface FtpOutDef extends NodeDef {
  ftp?: string;
  database?: string;
  tenant?: string;
  naming?: string;
  zip?: boolean | string;
  archive?: string;
  metadata?: string;
  maxConnections?: string;
  perTarget?: string;
  maxAttempts?: string;
  timeoutSeconds?: string;
  maxMegabytes?: string;
}

type FtpMessage = NodeMessage & Record<string, unknown>;

const DEPTH_EVERY_MS = 2_000;
const scalar = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined);

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function FtpOutNode(this: Node, def: FtpOutDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const configId = textField(def.ftp);
    const config = configId ? configOf<FtpConfigNode>(RED, t, node, configId, 'conflux-ftp') : undefined;
    if (configId && !config) return;
    if (config && !config.target) {
      const reason = config.problem ?? 'invalid FTP configuration';
      node.status(config.notConfigured?.status ?? { fill: 'red', shape: 'ring', text: t('conflux.status.invalidConfig', { reason }).slice(0, 100) });
      node.on('input', (_msg, _send, done) => done(new Error(reason)));
      return;
    }
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const fixed = config?.target;
    const defaultTenant = textField(def.tenant) || 'default';
    const nodeRules: NamingRules = {
      naming: textField(def.naming) || '{vin}_{nn:02}.{ext}',
      archive: boolField(def.zip) ? textField(def.archive) || '{vin}.zip' : null,
      metadata: textField(def.metadata) || null,
    };
    const maxBytes = intField(def.maxMegabytes, 64, 1, 1_024) * 1024 * 1024;
    const timeoutMs = intField(def.timeoutSeconds, 30, 1, 600) * 1000;
    const pool = new FtpPool<FtpClient, FtpTarget>({
      maxTotal: intField(def.maxConnections, 50, 1, 2_000),
      maxPerTarget: intField(def.perTarget, 4, 1, 16),
      idleMs: 30_000,
      maxWaiting: 10_000,
      ...ftpConnections(timeoutMs),
    });
    let store: TargetStore | undefined;
    let sender: FtpSender | undefined;
    let depth: number | undefined;
    let closing = false;

    const status = throttledStatus(node, () => {
      if (!sender) return undefined;
      const { delivered, failed, dead, inFlight, lastError } = sender.stats;
      const text = [
        t('ftp-out.status.delivered', { n: delivered }),
        t('conflux.status.queued', { n: depth ?? '?' }),
        inFlight ? t('conflux.status.inFlight', { n: inFlight }) : '',
        failed ? t('conflux.status.failed', { n: failed }) : '',
        dead ? t('ftp-out.status.dead', { n: dead }) : '',
        lastError,
      ]
        .filter((x) => x !== '')
        .join(', ');
      const bad = lastError !== '' || dead > 0;
      return { fill: bad ? 'red' : failed > 0 ? 'yellow' : 'green', shape: bad ? 'ring' : 'dot', text: text.slice(0, 120) };
    });

    const ready = db.sql().then((sql) => {
      if (closing) return undefined;
      const targets = (store = new TargetStore(sql, 2_000));
      sender = new FtpSender(
        sql,
        {
          queue: `ftp:${node.id}`,
          worker: `${os.hostname()}:${process.pid}:${node.id}`,
          capacity: 1_000,
          leaseMs: Math.max(120_000, 4 * timeoutMs),
          pollMs: 500,
          retry: { baseDelayMs: 1_000, maxDelayMs: 600_000, maxAttempts: intField(def.maxAttempts, 100, 1, 10_000), jitter: 0.2 },
          targetBackoff: { baseDelayMs: 500, maxDelayMs: 60_000 },
          waitingPerTarget: 8,
        },
        {
          pool,
          resolve: async (tenant, ref: TargetRef) => {
            if (ref.kind === 'node') return fixed;
            const row = await targets.byRef(tenant, ref.id);
            return row && row.enabled ? targetOfRow(row) : undefined;
          },
          onError: (err) => node.debug(`conflux-ftp-out: ${err.message}`),
          onDead: (messageId, reason) => node.warn(`conflux-ftp-out: delivery ${messageId} moved to the outbox's dead letters: ${reason}`),
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

    /** The target, where the delivery is stored for it, and its naming rules. */
    async function targetFor(msg: FtpMessage, tenant: string): Promise<{ ref: TargetRef; label: string; rules: NamingRules }> {
      if (fixed) return { ref: { kind: 'node' }, label: fixed.label, rules: nodeRules };
      await ready;
      if (!store) throw new Error('the node is closing');
      const explicit = scalar(msg.ftpTarget);
      const user = scalar(msg.user);
      const client = scalar(msg.client);
      const row = explicit ? await store.byRef(tenant, explicit) : await store.forOwner(tenant, { user, client });
      if (!row || !row.enabled)
        throw new Error(
          `no enabled FTP target ${explicit ? JSON.stringify(explicit) : `for user ${JSON.stringify(user ?? null)} or client ${JSON.stringify(client ?? null)}`} in tenant ${tenant}`,
        );
      return { ref: { kind: 'store', id: String(row.id) }, label: row.name, rules: { naming: row.naming, archive: row.archive, metadata: row.metadata } };
    }

    node.on('input', (input, send, done) => {
      const msg = input as FtpMessage;
      const tenant = tenantOf(msg as Parameters<typeof tenantOf>[0], defaultTenant);
      targetFor(msg, tenant)
        .then(async ({ ref, label, rules }) => {
          const metadata = msg.metadata !== null && typeof msg.metadata === 'object' ? (msg.metadata as Record<string, unknown>) : undefined;
          const files = buildDelivery({ files: filesOf(msg), metadata, field: messageFields(msg), date: deliveryDate(msg.time) }, rules, maxBytes);
          const refKey = ref.kind === 'node' ? `node:${node.id}` : `store:${ref.id}`;
          const messageId = scalar(msg.messageId) ?? deliveryId(refKey, files);
          const out = await ready;
          if (!out) throw new Error('the node is closing');
          await out.enqueue([{ tenant, messageId, target: ref, files }]);
          status.soon();
          msg.ftp = { messageId, target: label, files: files.map((f) => f.name) };
          send(msg);
          done();
        })
        .catch((err: Error) => done(err));
    });

    closeAfter(node, db, async () => {
      closing = true;
      clearInterval(depthTimer);
      status.close();
      await (sender ? sender.stop(10_000) : pool.close());
    });
  }
  RED.nodes.registerType('conflux-ftp-out', FtpOutNode);
};
