/**
 * The Elasticsearch connection (DESIGN.md, "Embedded defaults and real servers": the bounded
 * time-series tier). Builds an `@elastic/elasticsearch` client from the settings a config node
 * holds; the stores built on it (time-series-es.ts) never close it, the config node does.
 * Framework-free.
 */
import type { Client, ClientOptions } from '@elastic/elasticsearch';

/**
 * The client library, loaded on first use: it is the largest module Conflux loads (about 30 MiB
 * resident) and a flow without an Elasticsearch node never needs it.
 */
export function elasticsearchLibrary(): typeof import('@elastic/elasticsearch') {
  return require('@elastic/elasticsearch') as typeof import('@elastic/elasticsearch');
}

export interface ElasticConfig {
  /** Node URLs, e.g. ['https://es1:9200', 'https://es2:9200'] (see parseNodes). */
  nodes: string[];
  /** An API key, as Elasticsearch returns it encoded ("id:api_key" in base64). Wins over username/password. */
  apiKey?: string;
  username?: string;
  password?: string;
  /** PEM text of the CA that signed the nodes' certificates. */
  ca?: string;
  /** false accepts any certificate: for tests only. */
  rejectUnauthorized?: boolean;
  /** Prefix of every index and template name; default 'conflux'. */
  indexPrefix?: string;
}

export const DEFAULT_INDEX_PREFIX = 'conflux';

/** The index prefix a config names, or the default. */
export function indexPrefixOf(config: Pick<ElasticConfig, 'indexPrefix'>): string {
  const prefix = config.indexPrefix?.trim();
  return prefix ? prefix : DEFAULT_INDEX_PREFIX;
}

/**
 * Splits a node list as an editor field or an environment variable holds it ("https://es1:9200,
 * https://es2:9200", commas and/or white space between) into URLs. Throws a TypeError naming the
 * first entry that is not an http(s) URL.
 */
export function parseNodes(text: string): string[] {
  const nodes = text.split(/[\s,]+/).filter((s) => s !== '');
  for (const node of nodes) {
    let url: URL;
    try {
      url = new URL(node);
    } catch {
      throw new TypeError(`Elasticsearch node "${node}" is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`Elasticsearch node "${node}" must be an http: or https: URL`);
    }
  }
  return nodes;
}

/**
 * A client for the configured cluster. `extra` is merged over the options built from config
 * (tests pass `{ Connection: mock.getConnection() }`). The caller owns the client and closes it.
 */
export function openElasticsearch(config: ElasticConfig, extra: Partial<ClientOptions> = {}): Client {
  if (!Array.isArray(config.nodes) || config.nodes.length === 0) {
    throw new TypeError('Elasticsearch needs at least one node URL');
  }
  const options: ClientOptions = { nodes: [...config.nodes] };
  if (config.apiKey) {
    options.auth = { apiKey: config.apiKey };
  } else if (config.username) {
    options.auth = { username: config.username, password: config.password ?? '' };
  }
  if (config.ca !== undefined || config.rejectUnauthorized !== undefined) {
    options.tls = {};
    if (config.ca !== undefined) options.tls.ca = config.ca;
    if (config.rejectUnauthorized !== undefined) options.tls.rejectUnauthorized = config.rejectUnauthorized;
  }
  return new (elasticsearchLibrary().Client)({ ...options, ...extra });
}
