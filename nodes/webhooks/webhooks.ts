/**
 * conflux-webhooks: how webhooks leave — the database holding the subscriptions, the delivery
 * log and the outbox; whether private destinations are allowed; timeouts; the per-endpoint
 * concurrency and circuit breaker; the retry schedule. Shared by the conflux-webhook-out nodes
 * that name it.
 */
import type { NodeAPI, NodeDef } from 'node-red';
import { STANDARD_SCHEDULE_MS, parseSchedule, webhookRetryPolicy } from '../core/webhooks/out-retry';
import type { WebhooksConfigNode, WebhooksSettings } from '../shared/config-nodes';
import { boolField, intField, textField } from '../shared/fields';

interface WebhooksDef extends NodeDef {
  database?: string;
  allowPrivate?: boolean | string;
  connectTimeoutMs?: string;
  responseTimeoutMs?: string;
  concurrency?: string;
  failureThreshold?: string;
  openSeconds?: string;
  schedule?: string;
  capacity?: string;
}

export = function register(RED: NodeAPI): void {
  function WebhooksNode(this: WebhooksConfigNode, def: WebhooksDef) {
    RED.nodes.createNode(this, def);
    let schedule: readonly number[] = STANDARD_SCHEDULE_MS;
    let problem: string | undefined;
    const text = textField(def.schedule);
    if (text !== '') {
      try {
        schedule = parseSchedule(text);
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    const settings: WebhooksSettings = {
      allowPrivate: boolField(def.allowPrivate),
      connectTimeoutMs: intField(def.connectTimeoutMs, 5_000, 100, 120_000),
      responseTimeoutMs: intField(def.responseTimeoutMs, 15_000, 100, 600_000),
      concurrency: intField(def.concurrency, 8, 1, 1_000),
      failureThreshold: intField(def.failureThreshold, 5, 1, 1_000),
      openMs: intField(def.openSeconds, 30, 0, 86_400) * 1000,
      retry: webhookRetryPolicy(schedule),
      capacity: intField(def.capacity, 1_000, 1, 10_000),
    };
    Object.assign(this, { database: textField(def.database), settings, problem });
  }
  RED.nodes.registerType('conflux-webhooks', WebhooksNode);
};
