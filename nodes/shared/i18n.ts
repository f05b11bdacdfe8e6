/**
 * Runtime texts (status, warnings) from the node's message catalog, through RED._ as Node-RED
 * asks. Where no catalog is registered (RED._ answers the key itself, as in
 * node-red-node-test-helper), the English catalog shipped beside the node answers instead, so a
 * user never sees a bare key.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { NodeAPI } from 'node-red';

export type Substitutions = Record<string, string | number>;
/** A catalog key ("tcp-in.status.sessions", "conflux.status.starting") and its substitutions. */
export type Translate = (key: string, subs?: Substitutions) => string;

const english = new Map<string, Record<string, unknown>>();

function englishCatalog(nodeFile: string): Record<string, unknown> {
  const file = path.join(path.dirname(nodeFile), 'locales', 'en-US', `${path.basename(nodeFile, '.js')}.json`);
  let catalog = english.get(file);
  if (!catalog) {
    try {
      catalog = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch {
      catalog = {};
    }
    english.set(file, catalog);
  }
  return catalog;
}

/** Node-RED's interpolation: __name__. */
export function interpolate(text: string, subs: Substitutions = {}): string {
  return text.replace(/__(\w+)__/g, (all, name: string) => (name in subs ? String(subs[name]) : all));
}

/** The translator of the node whose compiled file is `nodeFile` (pass __filename). */
export function translator(RED: NodeAPI, nodeFile: string): Translate {
  return (key, subs) => {
    const text = (RED._ as (key: string, subs?: Substitutions) => string)(key, subs);
    if (text !== key) return text;
    const found = key.split('.').reduce<unknown>((at, part) => (at as Record<string, unknown> | undefined)?.[part], englishCatalog(nodeFile));
    return typeof found === 'string' ? interpolate(found, subs) : key;
  };
}
