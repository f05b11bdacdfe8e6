/**
 * conflux-api: the REST API's configuration (docs/api.md): base path, key headers, quotas,
 * maintenance mode and page limits, and the stores it reads. It owns the server core
 * (nodes/core/api/server.ts) and mounts it on Node-RED's HTTP server once a conflux-rest-api or
 * conflux-api-endpoint serves operations on it, and with them the self-service page for third
 * parties under `<base>/self-service/` (docs/self-service.md). The stores are the config nodes the storage tiers
 * use: with their server fields empty they are the embedded PGlite and the in-process cache that
 * `npm start` writes to.
 */
import type { ServerResponse } from 'node:http';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { selfServiceAnswer } from '../core/api/self-service';
import { ApiServer } from '../core/api/server';
import { provisionDemoApiKey } from '../core/devices/provision';
import type { ApiOperation, ApiStores } from '../core/api/operation';
import { fullCatalogue } from '../core/events/catalogue';
import { readBody } from '../core/protocol/http-ingest';
import { problem } from '../core/protocol/problem';
import { createSqlLongTerm } from '../core/stores/long-term-sql';
import { createElasticTimeSeries } from '../core/stores/time-series-es';
import { createSqlTimeSeries } from '../core/stores/time-series-sql';
import type { ElasticConfigNode, PostgresConfigNode, RedisConfigNode } from '../shared/config-nodes';
import { customTypesOf, publishEvent } from '../shared/event-hub';
import { boolField, intField, listField, textField } from '../shared/fields';
import { cleanPath, nodeRoutes, preParsed, reply, type RouteRequest } from '../shared/http-routes';
import type { ApiConfigNode } from './api-config';

interface ApiDef extends NodeDef {
  database?: string;
  cache?: string;
  elasticsearch?: string;
  base?: string;
  keyHeaders?: string;
  bearer?: boolean | string;
  quotaRequests?: string;
  quotaMiB?: string;
  quotaPeriod?: string;
  maintenance?: boolean | string;
  retryAfter?: string;
  pageDefault?: string;
  pageMax?: string;
  maxBodyKiB?: string;
  /** Create a key for tenant 'default' (logged once) when the database holds no API key. */
  demoKey?: boolean | string;
}

/** Paths deeper than this under `<base>/v<n>` are not mounted (no operation is that deep). */
const MAX_DEPTH = 8;
const BODY_IDLE_MS = 30_000;
/** A key's identity is reused this long: one database round trip less per request; a revoked key stops within it. */
const KEY_CACHE_MS = 5_000;

export = function register(RED: NodeAPI): void {
  function ApiNode(this: ApiConfigNode, def: ApiDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const set = (k: string, v: unknown) => ((node as unknown as Record<string, unknown>)[k] = v);
    const base = cleanPath(def.base, '/api');
    const database = configNode<PostgresConfigNode>(def.database, 'conflux-postgres');
    if (base === undefined) set('problem', 'the base path is /-separated parts of letters, digits and . _ ~ -');
    else if (!database) set('problem', 'no conflux-postgres configured');
    set('base', base ?? '/api');
    const maintenance = boolField(def.maintenance);
    set('maintenance', maintenance);
    const cache = configNode<RedisConfigNode>(def.cache, 'conflux-redis');
    const elastic = configNode<ElasticConfigNode>(def.elasticsearch, 'conflux-elasticsearch');
    const maxBodyBytes = intField(def.maxBodyKiB, 256, 1, 64 * 1024) * 1024;
    const pageMax = intField(def.pageMax, 1000, 1, 100_000);

    let stores: Promise<ApiStores> | undefined;
    function openStores(): Promise<ApiStores> {
      if (!database) return Promise.reject(new Error('no conflux-postgres configured'));
      stores ??= Promise.all([database.sql(), database.copier()]).then(([db, copier]) => ({
        db,
        timeSeries: elastic?.configured ? createElasticTimeSeries(elastic.client(), { indexPrefix: elastic.indexPrefix }) : createSqlTimeSeries(db, { copier }),
        longTerm: createSqlLongTerm(db),
        shortTerm: cache?.store,
        catalogue: () => fullCatalogue(customTypesOf(RED)),
        publishEvent: (event) => publishEvent(RED, event),
      }));
      stores.catch(() => (stores = undefined)); // the database may come up later
      return stores;
    }

    // The first start's key, so that the API can be tried at once (as the gateway's demo device).
    if (database && boolField(def.demoKey))
      database
        .sql()
        .then(provisionDemoApiKey)
        .then((key) => key && node.log(`created an API key for tenant "default"; shown only this once: ${key}`))
        .catch((err: Error) => node.warn(`conflux-api: the demo key: ${err.message}`));

    const server = new ApiServer({
      base: base ?? '/api',
      keyHeaders: listField(def.keyHeaders || 'EAPI-ELCLV2'),
      bearer: boolField(def.bearer, true),
      quota: {
        requests: intField(def.quotaRequests, 0, 0, 1e12),
        bytes: intField(def.quotaMiB, 0, 0, 1e9) * 1024 * 1024,
        periodSeconds: intField(def.quotaPeriod, 86_400, 1, 366 * 86_400),
      },
      pageLimits: { default: Math.min(intField(def.pageDefault, 100, 1, 100_000), pageMax), max: pageMax },
      maxBodyBytes,
      identityCacheMs: KEY_CACHE_MS,
      maintenance: maintenance ? intField(def.retryAfter, 600, 1, 86_400) : undefined,
      db: () => (database ? database.sql() : Promise.reject(new Error('no conflux-postgres configured'))),
      stores: openStores,
      onInternalError: (err, id, request) => node.error(`conflux-api: internal error ${id} on ${request}: ${(err as Error)?.stack ?? String(err)}`),
      serverUrl: joinRoot((RED.settings as { httpNodeRoot?: unknown }).httpNodeRoot, base ?? '/api'),
      title: textField(def.name) || undefined,
    });

    async function serve(req: RouteRequest, res: ServerResponse): Promise<void> {
      let bodyRead = req.readableEnded;
      const response = await server.handle({
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        body: async () => {
          bodyRead = true;
          if (req.readableEnded) return preParsed(req.body) ?? Buffer.alloc(0);
          const read = await readBody(req, req.headers, maxBodyBytes, BODY_IDLE_MS);
          return read.ok ? read.body : read.response;
        },
      });
      // A body left unread (a refusal before it was needed) would hold up the connection's next request.
      if (!bodyRead && !req.readableEnded && (req.headers['content-length'] ?? req.headers['transfer-encoding'])) response.headers.connection = 'close';
      reply(res, response);
    }

    const routes = nodeRoutes(RED, node.id);
    const users = new Set<string>();
    node.serve = (user: Node, operations: readonly ApiOperation[]) => {
      if (node.problem) throw new Error(node.problem);
      server.add(user.id, operations);
      users.add(user.id);
      if (users.size > 1) return;
      try {
        for (const version of [1, 2]) {
          let path = `${base}/v${version}`;
          for (let depth = 0; depth <= MAX_DEPTH; depth++, path += `/:p${depth}`) {
            routes.mount(path, (req, res) => {
              serve(req, res).catch((err: Error) => {
                node.error(`conflux-api: ${err.message}`);
                reply(res, problem('internal-error'));
              });
            });
          }
        }
        const page = `${base}/self-service`;
        const servePage = (req: RouteRequest, res: ServerResponse) =>
          reply(res, selfServiceAnswer(req.method ?? 'GET', (req.url ?? '').split('?')[0].slice(page.length)));
        routes.mount(page, servePage);
        routes.mount(`${page}/:file`, servePage);
      } catch (err) {
        server.remove(user.id);
        users.delete(user.id);
        routes.unmount();
        throw err;
      }
    };
    node.unserve = (user: Node) => {
      server.remove(user.id);
      users.delete(user.id);
      if (users.size === 0) routes.unmount();
    };
    node.on('close', (done: () => void) => {
      routes.unmount();
      server
        .close()
        .catch((err: Error) => node.warn(`conflux-api: counting the last bytes: ${err.message}`))
        .finally(done);
    });
  }

  /**
   * The config node id names; when none is chosen, the first of that type in the flows: the API
   * then reads the stores the storage tiers write to (in the shipped flow, with no server set, the
   * embedded PGlite and the in-process cache).
   */
  function configNode<T>(id: string | undefined, type: string): T | null {
    let chosen = id;
    if (!chosen) {
      RED.nodes.eachNode((n: { id: string; type: string }) => {
        if (!chosen && n.type === type) chosen = n.id;
      });
    }
    return chosen ? (RED.nodes.getNode(chosen) as T | null) : null;
  }

  /** The API's URL path as a client sees it: under Node-RED's httpNodeRoot. */
  function joinRoot(root: unknown, base: string): string {
    const r = typeof root === 'string' ? root.replace(/\/+$/, '') : '';
    return `${r}${base}` || '/';
  }

  RED.nodes.registerType('conflux-api', ApiNode as unknown as (this: Node, def: NodeDef) => void);
};
