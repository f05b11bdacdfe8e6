/**
 * conflux-webhook-in: a third party pushes its events to Conflux (docs/webhooks-in.md).
 *
 *   POST <path>   authenticated (basic, API key or a Standard Webhooks signature), decoded by the
 *                 chosen codec, stored in the inbox, then answered 202 (200 for a repeat)
 *
 * Two halves over one inbox queue. The route (nodes/core/webhooks/in-receiver.ts) answers 2xx
 * only once the event is in the inbox. The drain hands the queue's events to the flow and acks
 * each in the inbox only when the flow has finished with it (nodes/shared/completion.ts); a node
 * that fails it, or a flow that takes longer than the timeout, gives it back for a retry with
 * backoff (dead letters after the last try). A crash between the 2xx and the flow's end loses
 * nothing: the event is handed out again after the restart, once its lease has run out.
 */
import * as os from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { readBody } from '../core/protocol/http-ingest';
import { problem, type HttpResponse } from '../core/protocol/problem';
import { AUTH_MODES, createAuthenticator, type WebhookAuthMode } from '../core/webhooks/in-auth';
import { CODECS, createBodyDecoder, type WebhookCodec } from '../core/webhooks/in-decode';
import { InboxDrain } from '../core/webhooks/in-drain';
import { pruneReceipts, storeOnce } from '../core/webhooks/in-inbox';
import { createReceiver, type Receiver } from '../core/webhooks/in-receiver';
import { parseSenmlFormat } from '../core/convert/senml';
import { closeAfter, databaseOf } from '../shared/config-user';
import { trackCompletion } from '../shared/completion';
import { intField, textField } from '../shared/fields';
import { cleanPath, nodeRoutes, preParsed, reply, type RouteRequest } from '../shared/http-routes';
import { translator } from '../shared/i18n';
import { boundedReporter } from '../shared/reporter';
import { throttledStatus } from '../shared/status-fanout';

interface WebhookInDef extends NodeDef {
  database?: string;
  path?: string;
  auth?: string;
  tenant?: string;
  codec?: string;
  senmlFormat?: string;
  deviceId?: string;
  expression?: string;
  queue?: string;
  maxBodyKiB?: string;
  maxInFlight?: string;
  timeout?: string;
  maxAttempts?: string;
  keepDays?: string;
}

interface WebhookInCredentials {
  user?: string;
  password?: string;
  secrets?: string;
}

const BODY_IDLE_MS = 30_000;
const PRUNE_EVERY_MS = 3_600_000;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function WebhookInNode(this: Node<WebhookInCredentials>, def: WebhookInDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const fail = (status: string, reason: string) => {
      node.status({ fill: 'red', shape: 'ring', text: status });
      node.error(`conflux-webhook-in: ${reason}`);
      closeAfter(node, db, () => Promise.resolve());
    };
    if ((RED.settings as { httpNodeRoot?: unknown }).httpNodeRoot === false) {
      return fail('webhook-in.status.disabled', 'httpNodeRoot is false in the settings: no HTTP endpoint can be served');
    }
    const path = cleanPath(def.path, '/webhooks/in');
    if (!path) return fail('webhook-in.status.invalidPath', 'a path is made of /-separated parts of letters, digits and . _ ~ -');
    const queue = textField(def.queue) || `webhook:${path}`;
    const creds = node.credentials ?? {};
    const mode = (AUTH_MODES as readonly string[]).includes(def.auth ?? '') ? (def.auth as WebhookAuthMode) : 'signature';
    const codec = (CODECS as readonly string[]).includes(def.codec ?? '') ? (def.codec as WebhookCodec) : 'json';
    const maxBodyBytes = intField(def.maxBodyKiB, 1024, 1, 1024 * 1024) * 1024;
    const timeoutMs = intField(def.timeout, 60, 1, 3600) * 1000;
    const keepMs = intField(def.keepDays, 7, 1, 365) * 86_400_000;
    const sql = () => db.sql();

    const report = boundedReporter(node);
    let closing = false;
    let drainer: InboxDrain | undefined;
    /** The last database failure, shown until the database answers again. */
    let lastError = '';

    let receiver: Receiver;
    try {
      receiver = createReceiver({
        authenticate: createAuthenticator(
          { mode, tenant: textField(def.tenant) || 'default', user: creds.user, password: creds.password, secrets: creds.secrets },
          sql,
        ),
        decoder: createBodyDecoder({
          codec,
          senmlFormat: parseSenmlFormat(def.senmlFormat),
          deviceId: textField(def.deviceId),
          expression: def.expression,
        }),
        maxBodyBytes,
        store: async (tenant, messageId, stored) => {
          const outcome = await storeOnce(await sql(), tenant, queue, messageId, stored);
          lastError = '';
          if (outcome === 'stored') drainer?.wake(); // claim it now rather than at the next poll
          return outcome;
        },
        onInternalError: (err) => report(`conflux-webhook-in: ${err.message}`, { payload: err.message }),
        onInvalidBody: (err, tenant, id) =>
          report(`conflux-webhook-in: a body that cannot be decoded (${id}): ${err.message}`, { payload: err.message, tenant }),
      });
    } catch (err) {
      return fail(t('conflux.status.invalidConfig', { reason: (err as Error).message }).slice(0, 120), `invalid configuration: ${(err as Error).message}`);
    }

    let accepted = 0;
    let duplicates = 0;
    let delivered = 0;
    let routeError = '';
    const refused = new Map<number, number>();
    const completion = trackCompletion(RED, node, timeoutMs, () => status.soon());
    const status = throttledStatus(node, () => {
      if (routeError) return { fill: 'red', shape: 'ring', text: routeError };
      const parts = [t('conflux.status.accepted', { n: accepted })];
      if (duplicates > 0) parts.push(t('webhook-in.status.duplicates', { n: duplicates }));
      parts.push(t('webhook-in.status.delivered', { n: delivered }));
      if (completion.size > 0) parts.push(t('conflux.status.inFlight', { n: completion.size }));
      for (const [code, n] of [...refused].sort((a, b) => a[0] - b[0])) parts.push(`${n}×${code}`);
      if (lastError) parts.push(lastError);
      return { fill: lastError ? 'red' : 'green', shape: accepted > 0 ? 'dot' : 'ring', text: parts.join(', ').slice(0, 120) };
    });

    // ─── The drain: inbox → flow, acked once the flow has finished ───
    let retryStart: NodeJS.Timeout | undefined;
    function startDrain(): void {
      sql().then(
        (s) => {
          if (closing) return;
          drainer = new InboxDrain(s, {
            queue,
            worker: `${os.hostname()}:${process.pid}:${node.id}`,
            capacity: intField(def.maxInFlight, 100, 1, 10_000),
            timeoutMs,
            maxAttempts: intField(def.maxAttempts, 10, 1, 1_000),
            send: (msg) => completion.send(msg as unknown as NodeMessage),
            onDelivered: () => {
              delivered++;
              lastError = ''; // the database answers again
              status.soon();
            },
            onDead: (id, attempts, reason) => node.warn(`conflux-webhook-in: event ${id} moved to dead_letters after ${attempts} attempts: ${reason}`),
            onError: (err) => {
              lastError = err.message.slice(0, 60);
              status.soon();
            },
          });
          drainer.start();
        },
        (err: Error) => {
          lastError = err.message.slice(0, 60);
          status.soon();
          if (!closing) retryStart = setTimeout(startDrain, 5_000); // the database may come up later
        },
      );
    }
    startDrain();
    const prune = setInterval(() => {
      sql()
        .then((s) => pruneReceipts(s, queue, keepMs))
        .catch((err: Error) => node.warn(`conflux-webhook-in: pruning old webhook ids: ${err.message}`));
    }, PRUNE_EVERY_MS);

    // ─── The route: request → inbox, 2xx once stored ───
    async function serve(req: RouteRequest, res: ServerResponse): Promise<void> {
      let response: HttpResponse;
      try {
        const request = { method: req.method ?? 'GET', headers: req.headers };
        const early = closing ? problem('unavailable', 'the endpoint is stopping', { retryAfter: 5 }, { 'retry-after': '5' }) : receiver.precheck(request);
        if (early) response = !req.readableEnded ? { ...early, headers: { ...early.headers, connection: 'close' } } : early;
        else {
          const body = await bodyOf(req);
          response = Buffer.isBuffer(body) ? await receiver.handle({ ...request, body }) : body;
        }
      } catch (err) {
        node.error(`conflux-webhook-in: ${(err as Error).message}`);
        response = problem('internal-error', 'the request could not be handled; the operator has the details');
      }
      if (response.status === 202) accepted++;
      else if (response.status === 200) duplicates++;
      else refused.set(response.status, (refused.get(response.status) ?? 0) + 1);
      status.soon();
      reply(res, response);
    }

    async function bodyOf(req: IncomingMessage & { body?: unknown }): Promise<Buffer | HttpResponse> {
      if (!req.readableEnded) {
        const read = await readBody(req, req.headers, maxBodyBytes, BODY_IDLE_MS);
        return read.ok ? read.body : read.response;
      }
      // Another middleware read the body first (Node-RED's JSON parser, when the admin API shares the root).
      return preParsed(req.body) ?? problem('internal-error', 'the body was consumed by another middleware before this endpoint');
    }

    const routes = nodeRoutes(RED, node.id);
    try {
      routes.mount(path, (req, res) => void serve(req, res));
    } catch (err) {
      node.error(`conflux-webhook-in: ${(err as Error).message}`);
      routeError = t('webhook-in.status.pathInUse', { path });
    }
    status.now();

    closeAfter(node, db, async () => {
      closing = true;
      routes.unmount();
      clearInterval(prune);
      if (retryStart) clearTimeout(retryStart);
      const stopped = drainer?.stop();
      // What is in the flow goes back to the inbox for the next start (redeploy) to hand out again.
      completion.close('the node is stopping');
      await stopped;
      status.close();
      node.status({});
    });
  }
  RED.nodes.registerType<Node<WebhookInCredentials>, WebhookInDef, unknown, WebhookInCredentials>('conflux-webhook-in', WebhookInNode, {
    credentials: { user: { type: 'text' }, password: { type: 'password' }, secrets: { type: 'password' } },
  });
};
