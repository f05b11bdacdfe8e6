/**
 * The Node-RED side of every storage tier node. A message either writes or asks:
 *
 *   msg.payload = canonical records   → written (batched by the tier), then passed on (output 1)
 *   msg.query   = { name | prefix, … } → answered in msg.payload and msg.cursor (output 2)
 *
 * Answers leave on their own output so that a chain of tiers (short-term → time series →
 * long-term, wired through output 1) never takes one tier's answer for readings to store.
 *
 * The tenant is msg.device.tenant (set by an authenticating listener), else msg.tenant, else the
 * node's own. done() and the pass-on wait for the write: a flow can only go as fast as its
 * store, and a full write queue fails the message to the Catch node instead of growing.
 * A tier may mark a message once stored (`stored`), and another may pass a marked message on
 * without writing (`skip`): conflux-time-series sets msg.rolledUp when its transaction already
 * updated the rollups, and conflux-long-term on that database then does not count it again.
 * A tier may also let a failed write pass (`passOnFailure`): the short-term cache does, so that a
 * cache that is down reports it (status, Catch) without stopping the readings on their way to the
 * durable tiers.
 */
import type { Node, NodeMessage } from 'node-red';
import { validateResolved, type ResolvedRecord } from '../core/model/senml';
import { QueueFullError } from '../core/stores/batcher';
import type { Reading } from '../core/stores/types';
import type { Translate } from './i18n';
import { boundedReporter } from './reporter';
import { throttledStatus } from './status-fanout';

export interface TierHandlers {
  /** Resolves when the readings are stored. */
  write?(readings: Reading[]): Promise<void>;
  /** Answers msg.query. */
  query?(tenant: string, query: unknown): Promise<{ items: unknown; cursor?: string }>;
  /** Items waiting to be written, for the status. */
  pending?(): number;
  /** Called with a message whose records are stored, before it is passed on (to mark it). */
  stored?(msg: NodeMessage): void;
  /** True: the message's records are already stored here; pass it on without writing. */
  skip?(msg: NodeMessage): boolean;
  /**
   * True: a message whose write failed with err is passed on and done() all the same; the failure
   * goes to the Catch node (at most a few a second) and to the status. For a tier that may lose
   * data without loss to the user (a cache): the next tiers still store the message.
   */
  passOnFailure?(err: Error): boolean;
}

type TierMessage = NodeMessage & {
  query?: unknown;
  tenant?: unknown;
  cursor?: string;
  device?: { tenant?: unknown };
};

export function tenantOf(msg: { device?: { tenant?: unknown }; tenant?: unknown }, fallback: string): string {
  const t = msg.device?.tenant ?? msg.tenant;
  return typeof t === 'string' && t !== '' ? t : fallback;
}

export function bindTier(node: Node, t: Translate, handlers: TierHandlers, defaultTenant: string): void {
  let written = 0;
  let skipped = 0;
  let failures = 0;
  let lastError = '';
  /** The last write failed: red until one succeeds again (then yellow, still counting the failures). */
  let failing = false;
  let full = false;
  const report = boundedReporter(node);

  const status = throttledStatus(node, () => {
    const pending = handlers.pending?.() ?? 0;
    const parts = [t('conflux.status.stored', { n: written })];
    if (skipped > 0) parts.push(t('conflux.status.already', { n: skipped }));
    if (pending > 0) parts.push(t('conflux.status.queued', { n: pending }));
    const text = parts.join(', ');
    const wasFull = full;
    full = false;
    if (pending > 0) status.soon(); // keep the queue count fresh while it drains
    if (wasFull) return { fill: 'yellow', shape: 'ring', text: `${text}, ${t('conflux.status.queueFull')}` };
    if (failures > 0)
      return {
        fill: failing ? 'red' : 'yellow',
        shape: failing ? 'ring' : 'dot',
        text: `${text}, ${t('conflux.status.failedBecause', { n: failures, reason: lastError })}`.slice(0, 120),
      };
    return { fill: 'green', shape: 'dot', text };
  });
  const scheduleStatus = () => status.soon();
  const fail = (err: Error, done: (err?: Error) => void) => {
    if (err instanceof QueueFullError) full = true;
    else {
      failures++;
      failing = true;
      lastError = err.message;
    }
    scheduleStatus();
    done(err);
  };

  node.on('input', (input, send, done) => {
    const msg = input as TierMessage;
    const tenant = tenantOf(msg, defaultTenant);
    if (msg.query !== undefined) {
      if (!handlers.query) return done(new Error('this node does not answer queries'));
      handlers.query(tenant, msg.query).then(
        ({ items, cursor }) => {
          msg.payload = items;
          if (cursor === undefined) delete msg.cursor;
          else msg.cursor = cursor;
          send([null, msg]);
          done();
        },
        (err: Error) => fail(err, done),
      );
      return;
    }
    if (!handlers.write) return done(new Error('this node only answers queries (msg.query)'));
    if (handlers.skip?.(msg)) {
      skipped += Array.isArray(msg.payload) ? msg.payload.length : 0;
      scheduleStatus();
      send([msg, null]);
      return done();
    }
    let records: ResolvedRecord[];
    try {
      records = validateResolved(msg.payload, 'canonical');
    } catch (err) {
      return fail(err as Error, done);
    }
    handlers.write(records.map((record) => ({ tenant, record }))).then(
      () => {
        written += records.length;
        failing = false;
        scheduleStatus();
        handlers.stored?.(msg);
        send([msg, null]);
        done();
      },
      (err: Error) => {
        if (!handlers.passOnFailure?.(err)) return fail(err, done);
        failures++;
        failing = true;
        lastError = err.message;
        scheduleStatus();
        report(`${err.message}; passed on without it`, { payload: msg.payload, device: msg.device, tenant });
        send([msg, null]);
        done();
      },
    );
  });

  node.on('close', () => {
    status.close();
  });
}
