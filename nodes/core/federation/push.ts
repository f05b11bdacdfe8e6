/**
 * Push Outbox for one consumer (seed 003): the new readings of the local system that the
 * consumer wants, extracted through the local system's API with the consumer's credentials, routed
 * into messages (routing.ts) and handed to the flow (conflux-xmpp-out stores them in the outbox).
 * This is conflux-http-pull's run (../pull/run.ts) with one watermark per consumer in pull_sources
 * (`federation/consumer/<id>`), committed only once the flow has finished with every message of
 * the batch: a crash before leaves the watermark, the next run extracts the same readings again,
 * and their message ids are the same, so the receiving proxy drops what it already has.
 */
import type { SqlClient } from '../db/sql';
import { createClient } from '../pull/client';
import { runPull, type SourceConfig } from '../pull/run';
import { commitWatermark, loadWatermark } from '../pull/store';
import type { PushConsumer } from './directory';
import { DatumError, parseDatum, route, type FederationMessage } from './routing';
import { localUrl, type FederationSettings } from './settings';

export const watermarkKey = (consumer: number | string): string => `federation/consumer/${String(consumer)}`;

export interface PushPorts {
  db: SqlClient;
  tenant: string;
  settings: FederationSettings;
  resolveSecret(ref: string): string | undefined;
  /** Hands the messages to the flow; resolves once the flow has finished with all of them. */
  deliver(messages: FederationMessage[]): Promise<void>;
  /** A reading the local system returned that is no datum (skipped, the watermark moves past it). */
  onRejected?(reason: string): void;
  timeoutMs: number;
  /** Requests per consumer and run at most (each asks for pageSize readings). */
  maxRequests: number;
  signal: AbortSignal;
}

export interface PushResult {
  readings: number;
  messages: number;
  duplicates: number;
  /** The request bound ended the run with readings left. */
  more: boolean;
}

/** The extraction request of a consumer: its selector as `object` and `name` parameters. */
export function sourceOf(settings: FederationSettings, consumer: PushConsumer): SourceConfig {
  const url = localUrl(settings, settings.readingsPath);
  for (const o of consumer.source.objects ?? []) url.searchParams.append('object', o);
  for (const n of consumer.source.names ?? []) url.searchParams.append('name', n);
  return {
    url: url.toString(),
    watermarkParam: settings.watermarkParam,
    watermark: { kind: settings.watermarkKind, idPath: 'id', valuePath: settings.watermarkPath },
    paging: { style: 'none', itemsPath: settings.itemsPath, pageSize: settings.pageSize, sizeParam: 'limit', maxPages: 1 },
  };
}

export async function pushConsumer(ports: PushPorts, consumer: PushConsumer): Promise<PushResult> {
  if (consumer.problem || !consumer.credentials) throw new Error(`consumer ${String(consumer.id)}: ${consumer.problem ?? 'no credentials'}`);
  const c = consumer.credentials;
  const password = c.password ?? (c.secretRef === undefined ? undefined : ports.resolveSecret(c.secretRef));
  if (password === undefined) throw new Error(`consumer ${String(consumer.id)}: the secret ${JSON.stringify(c.secretRef)} is not set`);
  const client = createClient({ auth: { mode: 'basic', user: c.login, password }, timeoutMs: ports.timeoutMs, maxAttempts: 3, maxBodyBytes: 16 * 1024 * 1024 });
  const source = sourceOf(ports.settings, consumer);
  const key = watermarkKey(consumer.id);
  const result: PushResult = { readings: 0, messages: 0, duplicates: 0, more: false };
  // One request per run of the pull (the source pages by watermark); again while readings came.
  for (let request = 1; request <= ports.maxRequests; request++) {
    const run = await runPull(
      client,
      source,
      {
        load: () => loadWatermark(ports.db, ports.tenant, key),
        commit: (from, next) => commitWatermark(ports.db, ports.tenant, key, from, next),
        deliver: async (batch) => {
          const messages: FederationMessage[] = [];
          for (const item of batch.items) {
            try {
              messages.push(...route(ports.tenant, parseDatum(item), [consumer]));
            } catch (err) {
              if (!(err instanceof DatumError)) throw err;
              ports.onRejected?.(err.message);
            }
          }
          if (messages.length > 0) await ports.deliver(messages);
          result.messages += messages.length;
        },
      },
      ports.signal,
    );
    result.readings += run.items;
    result.duplicates += run.duplicates;
    if (run.items === 0) return result;
    result.more = request === ports.maxRequests;
  }
  return result;
}
