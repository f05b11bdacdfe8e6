/**
 * One run of a pull: the source's pages from the stored watermark on, each page's new items
 * handed to the flow, and the watermark committed only once the flow has finished with them
 * (stored them). A failure anywhere — the source, the decoding, a node of the flow, the commit —
 * ends the run with the watermark where the last stored page left it, so the next run asks for
 * the same items again: nothing is skipped, and the boundary ids keep what was stored from
 * repeating. Pages are handed on one at a time, so at most one page is in the flow.
 *
 * Sources whose pages are bounded per run must return items in ascending watermark order (the
 * watermark after a page is the largest value on it).
 */
import type { PullClient } from './client';
import { paginate, type PagingConfig } from './pager';
import type { StoredWatermark } from './store';
import { admit, type WatermarkConfig, type WatermarkState } from './watermark';

export interface SourceConfig {
  url: string;
  /** The query parameter that carries the watermark; empty: never sent. */
  watermarkParam: string;
  watermark: WatermarkConfig;
  paging: PagingConfig;
}

export interface Batch {
  items: unknown[];
  /** The run's page number (1 = first). */
  page: number;
  url: string;
  /** The watermark the source was asked from, and where it will be once this batch is stored. */
  from: WatermarkState;
  to: WatermarkState;
}

export interface RunPorts {
  load(): Promise<StoredWatermark>;
  /** The stored watermark after the commit; undefined when the row moved meanwhile. */
  commit(from: StoredWatermark, next: WatermarkState): Promise<StoredWatermark | undefined>;
  /** Hands a batch to the flow; resolves once the flow has finished with it, rejects with why not. */
  deliver(batch: Batch): Promise<void>;
}

export interface RunResult {
  pages: number;
  items: number;
  duplicates: number;
  /** The page bound ended the run before the source's last page. */
  more: boolean;
  watermark: WatermarkState;
}

export class WatermarkMoved extends Error {
  override readonly name = 'WatermarkMoved';
}

/** The first request's URL: the source's, with the watermark parameter when there is one. */
export function startUrl(config: SourceConfig, state: WatermarkState): string {
  const url = new URL(config.url);
  if (config.watermarkParam && state.value !== null) url.searchParams.set(config.watermarkParam, String(state.value));
  return url.toString();
}

export async function runPull(client: PullClient, config: SourceConfig, ports: RunPorts, signal: AbortSignal): Promise<RunResult> {
  let state = await ports.load();
  const floor: WatermarkState = state;
  const seen = new Set<string>();
  const { pages, more } = paginate(client, startUrl(config, state), config.paging, signal);
  const result: RunResult = { pages: 0, items: 0, duplicates: 0, more: false, watermark: state };
  for await (const page of pages) {
    result.pages++;
    const admitted = admit(config.watermark, page.items, state, floor, seen, page.body);
    result.duplicates += admitted.duplicates;
    const moved = JSON.stringify(admitted.next) !== JSON.stringify({ value: state.value, boundary: state.boundary });
    if (admitted.fresh.length > 0) {
      await ports.deliver({ items: admitted.fresh, page: page.index, url: page.url, from: state, to: admitted.next });
      result.items += admitted.fresh.length;
    }
    if (moved) {
      const committed = await ports.commit(state, admitted.next);
      if (!committed) throw new WatermarkMoved('the watermark was moved by another pull of the same source meanwhile; this batch may be stored twice');
      state = committed;
    }
    result.watermark = state;
    if (signal.aborted) throw signal.reason as Error;
  }
  result.more = more();
  return result;
}
