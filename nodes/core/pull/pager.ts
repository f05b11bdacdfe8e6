/**
 * Following a source's pagination within one run, up to a bound of pages:
 *
 *   none     one request
 *   page     ?page=1,2,... (and ?per_page=N): ends at an empty or short page
 *   offset   ?offset=0,N,2N ... &limit=N: ends at an empty or short page
 *   cursor   ?cursor=<the value at a body path of the previous page>: ends when it is absent or repeats
 *   link     the RFC 8288 `Link: <...>; rel="next"` header: ends without one
 */
import type { Fetched, PullClient } from './client';
import { PullError } from './client';
import { linkTarget } from './link';
import { keyOf, valueAt } from './path';

export type PageStyle = 'none' | 'page' | 'offset' | 'cursor' | 'link';
export const PAGE_STYLES: readonly PageStyle[] = ['none', 'page', 'offset', 'cursor', 'link'];

export interface PagingConfig {
  style: PageStyle;
  /** Where the items are in a page's body; empty: the body is the array. */
  itemsPath: string;
  /** Items per page, sent as sizeParam when that is set (offset style: the limit). */
  pageSize?: number;
  sizeParam?: string;
  /** page: the parameter and the first page's number. */
  pageParam?: string;
  firstPage?: number;
  /** offset: the parameter. */
  offsetParam?: string;
  /** cursor: the parameter sent, and the path of the next cursor in the body. */
  cursorParam?: string;
  cursorPath?: string;
  maxPages: number;
}

export interface Page extends Fetched {
  items: unknown[];
  /** 1 for the run's first page. */
  index: number;
}

function withParams(url: string, params: Record<string, string | number | undefined>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) if (k && v !== undefined) u.searchParams.set(k, String(v));
  return u.toString();
}

export function itemsOf(body: unknown, path: string): unknown[] {
  const items = valueAt(body, path);
  if (Array.isArray(items)) return items;
  // An empty answer (204) or null items is an empty page; a missing property is a wrong path.
  if (body === null || items === null) return [];
  throw new PullError(`the answer has no array of items at ${path === '' ? 'its top level' : JSON.stringify(path)}`);
}

/**
 * The run's pages in order. `firstUrl` already carries the watermark parameter. Ends on the
 * source's last page or after maxPages; `more()` then tells whether pages were left.
 */
export function paginate(client: PullClient, firstUrl: string, config: PagingConfig, signal: AbortSignal): { pages: AsyncGenerator<Page>; more(): boolean } {
  let left = false;
  const size = config.pageSize && config.pageSize > 0 ? config.pageSize : undefined;
  const sizeParams = { [config.sizeParam ?? '']: size };

  async function* pages(): AsyncGenerator<Page> {
    let page = config.firstPage ?? 1;
    let offset = 0;
    let url: string;
    switch (config.style) {
      case 'page':
        url = withParams(firstUrl, { [config.pageParam || 'page']: page, ...sizeParams });
        break;
      case 'offset':
        url = withParams(firstUrl, { [config.offsetParam || 'offset']: 0, [config.sizeParam || 'limit']: size });
        break;
      case 'cursor':
      case 'none':
      case 'link':
        url = withParams(firstUrl, sizeParams);
        break;
    }
    const visited = new Set<string>();
    for (let index = 1; ; index++) {
      visited.add(url);
      const fetched = await client.get(url, signal);
      const items = itemsOf(fetched.body, config.itemsPath);
      yield { ...fetched, items, index };
      let next: string | undefined;
      switch (config.style) {
        case 'page':
          if (items.length > 0 && (!size || items.length >= size)) next = withParams(url, { [config.pageParam || 'page']: ++page });
          break;
        case 'offset':
          offset += items.length;
          if (items.length > 0 && (!size || items.length >= size)) next = withParams(url, { [config.offsetParam || 'offset']: offset });
          break;
        case 'cursor': {
          const cursor = keyOf(valueAt(fetched.body, config.cursorPath ?? 'next_cursor'));
          if (cursor !== undefined) next = withParams(url, { [config.cursorParam || 'cursor']: cursor });
          break;
        }
        case 'link':
          next = linkTarget(fetched.headers.get('link'), 'next', fetched.url);
          break;
        case 'none':
          break;
      }
      if (next === undefined || visited.has(next)) return; // a source that points back at a page it served ends the run
      if (index >= config.maxPages) {
        left = true;
        return;
      }
      url = next;
    }
  }
  return { pages: pages(), more: () => left };
}
