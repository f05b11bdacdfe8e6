/**
 * The operator dashboard's data, one answer per request: msg.topic names what is asked, and the
 * answer is shaped for Dashboard 2.0's widgets (rows for ui-table, points for ui-chart, options
 * for ui-dropdown, numbers for ui-text). Every read and change names the tenant of the node.
 *
 *   devices       payload: device rows; summary: {online, offline, readingsPerSecond}; refusals: rows
 *   latest        payload: the latest value of every name
 *   sensors       payload: names with numeric readings; options: the same for ui-dropdown
 *   series        payload {sensor, from?, to?, rollup?}: chart points (readings, or rollup avg/min/max)
 *   mailboxes     payload: queues with depth, oldest age, dead letters
 *   deliveries    payload: per connector: waiting, dead letters, delivered, failed
 *   dead-letters  payload: the dead letters
 *   retry, drop   payload {id}: acts, then answers as dead-letters with outcome {action, id, outcome}
 *
 * Framework-free.
 */
import type { SqlClient } from '../db/sql';
import type { LongTermStore, ShortTermStore, TimeSeriesStore } from '../stores/types';
import { deviceMessagesTotal, RateMeter, refusals } from './counters';
import { dropDeadLetter, listDeadLetters, parseDeadLetterId, retryDeadLetter } from './dead-letters';
import { deviceCounts, listDevices, type SessionLookup } from './devices';
import { connectorRows, mailboxDepths } from './mailboxes';
import { latestValues, OpsInputError, parseSeriesRequest, sensorNames, seriesPoints } from './readings';

export { OpsInputError } from './readings';

export const TOPICS = ['devices', 'latest', 'sensors', 'series', 'mailboxes', 'deliveries', 'dead-letters', 'retry', 'drop'] as const;
export type OpsTopic = (typeof TOPICS)[number];

export interface OpsSources {
  tenant: string;
  db: SqlClient;
  timeSeries: TimeSeriesStore;
  longTerm: LongTermStore;
  /** The short-term tier, for latest values; without it the daily rollups' last values. */
  shortTerm?: ShortTermStore;
  /** The gateway's live sessions; without them every device is offline. */
  sessions?: SessionLookup;
}

/** What goes onto the outgoing message: topic and payload, and any extra properties. */
export interface OpsAnswer {
  topic: OpsTopic;
  payload: unknown;
  [property: string]: unknown;
}

export class Ops {
  private readonly readings = new RateMeter();

  constructor(
    private readonly sources: OpsSources,
    private readonly now: () => number = Date.now,
  ) {}

  async answer(topic: unknown, payload: unknown): Promise<OpsAnswer> {
    const { tenant, db } = this.sources;
    switch (topic) {
      case 'devices': {
        const [rows, total, refused] = await Promise.all([listDevices(db, tenant, this.sources.sessions), deviceMessagesTotal(), refusals()]);
        const readingsPerSecond = Math.round(this.readings.sample(total, this.now()) * 10) / 10;
        return { topic, payload: rows, summary: { ...deviceCounts(rows), readingsPerSecond, readings: total }, refusals: refused };
      }
      case 'latest':
        return { topic, payload: await latestValues(tenant, this.sources) };
      case 'sensors': {
        const names = await sensorNames(db, tenant);
        return { topic, payload: names, options: names.map((n) => ({ value: n, label: n })) };
      }
      case 'series': {
        const request = parseSeriesRequest(payload, this.now() / 1000);
        const { points, truncated } = await seriesPoints(tenant, request, this.sources);
        return { topic, payload: points, action: 'replace', sensor: request.sensor, rollup: request.rollup ?? 'none', truncated };
      }
      case 'mailboxes':
        return { topic, payload: await mailboxDepths(db, tenant) };
      case 'deliveries':
        return { topic, payload: await connectorRows(db, tenant) };
      case 'dead-letters':
        return { topic, payload: await listDeadLetters(db, tenant) };
      case 'retry':
      case 'drop': {
        const id = parseDeadLetterId(payload);
        const outcome = topic === 'retry' ? await retryDeadLetter(db, tenant, id) : await dropDeadLetter(db, tenant, id);
        return { topic: 'dead-letters', payload: await listDeadLetters(db, tenant), outcome: { action: topic, id, outcome } };
      }
      default:
        throw new OpsInputError(`msg.topic must be one of ${TOPICS.join(', ')}; got ${JSON.stringify(topic)}`);
    }
  }
}
