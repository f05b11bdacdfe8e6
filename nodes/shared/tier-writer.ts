/**
 * The batching writer a tier node puts in front of its store: Batcher's bounds read from the
 * node's configuration, and the store's own refusals (AppendResult.rejected) mapped back to the
 * messages that carried them.
 */
import { Batcher } from '../core/stores/batcher';
import type { AppendResult, Reading } from '../core/stores/types';
import { intField } from './fields';

export interface WriterDef {
  batchSize?: string;
  batchDelay?: string;
  maxPending?: string;
}

export function tierWriter(
  def: WriterDef,
  defaults: { batchSize: number; batchDelayMs: number },
  append: (readings: Reading[]) => Promise<AppendResult | number | void>,
): Batcher<Reading> {
  const maxBatch = intField(def.batchSize, defaults.batchSize, 1, 50_000);
  return new Batcher<Reading>({
    maxBatch,
    maxDelayMs: intField(def.batchDelay, defaults.batchDelayMs, 0, 60_000),
    maxPending: Math.max(maxBatch, intField(def.maxPending, 50_000, 1, 10_000_000)),
    write: async (batch) => {
      const result = await append(batch);
      if (typeof result !== 'object' || result.rejected.length === 0) return;
      const index = new Map(batch.map((reading, i) => [reading, i]));
      return result.rejected.map((r) => ({ index: index.get(r.reading) ?? -1, reason: `${r.reading.record.n}: ${r.reason}` }));
    },
  });
}
