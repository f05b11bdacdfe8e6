/**
 * The first flow: on a data dir without a flow file, the shipped flows (flows/default.json, the
 * getting-started flow, and flows/dashboard.json, the operator dashboard) are written into it as
 * one flow file, each on its own tab. A config node both ship (the same id: the database, cache,
 * gateway) is written once, as the first file has it. An existing flow file, whatever the user
 * made of it (even an empty one), is never replaced. Framework-free.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type FirstFlowResult = 'installed' | 'kept';

/** What `npm start` deploys on a new data dir, in flows/: the getting-started flow and the operator dashboard. */
export const FIRST_FLOWS: readonly string[] = ['default.json', 'dashboard.json'];

/** The flows of `sources` as one array: every node once by id, the first file's copy winning. */
export function mergeFlows(sources: readonly string[]): unknown[] {
  const seen = new Set<string>();
  const merged: unknown[] = [];
  for (const source of sources) {
    const flow = JSON.parse(fs.readFileSync(source, 'utf8')) as unknown;
    if (!Array.isArray(flow)) throw new Error(`${source} is not a flow (an array of nodes)`);
    for (const node of flow as { id?: unknown }[]) {
      const id = typeof node?.id === 'string' ? node.id : undefined;
      if (id === undefined) throw new Error(`${source} holds a node without an id`);
      if (seen.has(id)) continue;
      seen.add(id);
      merged.push(node);
    }
  }
  return merged;
}

export function installFirstFlow(dataDir: string, flowFile: string, sources: string | readonly string[]): FirstFlowResult {
  const target = path.join(dataDir, flowFile);
  if (fs.existsSync(target)) return 'kept';
  const text = JSON.stringify(mergeFlows(typeof sources === 'string' ? [sources] : sources), null, 2);
  fs.mkdirSync(dataDir, { recursive: true });
  try {
    // 'wx': if something wrote the flow file meanwhile, keep it. Flows are the owner's only.
    fs.writeFileSync(target, text, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return 'kept';
    throw err;
  }
  return 'installed';
}
