/**
 * conflux-http-pull: on each input (typically from conflux-schedule) pulls a third party's REST
 * API from the source's watermark on, hands each page's new items to the flow as one message
 * (decoded by a Conflux codec or passed on as JSON), and commits the watermark in the database
 * only once the flow has finished with that message (nodes/shared/completion.ts): a Catch, a
 * timeout or a crash leaves it, and the next run asks again. The input's done() comes after the
 * run, so a schedule sees when it has ended. Logic: nodes/core/pull/*.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { AUTH_MODES, createClient, type AuthMode, type PullClient } from '../core/pull/client';
import { createBatchDecoder, PULL_CODECS, type BatchDecoder, type PullCodec } from '../core/pull/decode';
import { PAGE_STYLES, type PageStyle } from '../core/pull/pager';
import { expandVariables, unsetVariableIn } from '../core/pull/path';
import { runPull, type SourceConfig } from '../core/pull/run';
import { commitWatermark, loadWatermark } from '../core/pull/store';
import { WATERMARK_KINDS, type WatermarkKind } from '../core/pull/watermark';
import { parseSenmlFormat } from '../core/convert/senml';
import { closeAfter, databaseOf } from '../shared/config-user';
import { trackCompletion } from '../shared/completion';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { notConfigured, reportNotConfigured } from '../shared/not-configured';
import { throttledStatus } from '../shared/status-fanout';

type Fields = 'database' | 'tenant' | 'sourceKey' | 'url' | 'auth' | 'user' | 'apiKeyName' | 'apiKeyIn' | 'tokenUrl' | 'clientId' | 'scope' | 'audience';
type More = 'clientAuth' | 'paging' | 'itemsPath' | 'pageSize' | 'sizeParam' | 'pageParam' | 'firstPage' | 'offsetParam' | 'cursorParam' | 'cursorPath';
type Rest =
  | 'maxPages'
  | 'watermark'
  | 'watermarkPath'
  | 'watermarkParam'
  | 'idPath'
  | 'codec'
  | 'senmlFormat'
  | 'deviceId'
  | 'expression'
  | 'timeout'
  | 'attempts'
  | 'flowTimeout';
type HttpPullDef = NodeDef & Partial<Record<Fields | More | Rest, string>>;

interface HttpPullCredentials {
  password?: string;
  token?: string;
  apiKey?: string;
  clientSecret?: string;
}

const oneOf = <T extends string>(all: readonly T[], value: string | undefined, fallback: T): T =>
  (all as readonly string[]).includes(value ?? '') ? (value as T) : fallback;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function HttpPullNode(this: Node<HttpPullCredentials>, def: HttpPullDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const env = (name: string) =>
      (RED.util as unknown as { getSetting?(n: Node, name: string): unknown }).getSetting?.(node, name)?.toString() ?? process.env[name];
    const unset = unsetVariableIn(String(def.url ?? ''), env);
    if (!textField(def.url) || unset) {
      // No partner yet (CONFLUX_PULL_URL unset): say what to set; each run fails to a Catch node.
      const missing = reportNotConfigured(node, notConfigured(t, unset ? `\${${unset}}` : def.url, 'url', 'http-pull.label.url'));
      node.status(missing.status);
      node.on('input', (_msg, _send, done) => done(new Error(`conflux-http-pull: ${missing.reason}`)));
      return;
    }
    const db = databaseOf(RED, t, node, def.database);
    if (!db) return;
    const creds = node.credentials ?? {};
    const tenant = textField(def.tenant) || 'default';
    const timeoutMs = intField(def.timeout, 30, 1, 600) * 1000;

    let source: SourceConfig;
    let client: PullClient;
    let decoder: BatchDecoder;
    let key: string;
    try {
      const expand = (text: string | undefined) => expandVariables(textField(text), env);
      const url = expand(def.url);
      if (!/^https?:\/\//i.test(url)) throw new Error('the URL must start with http:// or https://');
      const kind = oneOf<WatermarkKind>(WATERMARK_KINDS, def.watermark, 'timestamp');
      const style = oneOf<PageStyle>(PAGE_STYLES, def.paging, 'none');
      source = {
        url,
        watermarkParam: textField(def.watermarkParam),
        watermark: { kind, idPath: textField(def.idPath), valuePath: textField(def.watermarkPath) },
        paging: {
          style,
          itemsPath: textField(def.itemsPath),
          pageSize: intField(def.pageSize, 0, 0, 100_000) || undefined,
          sizeParam: textField(def.sizeParam) || undefined,
          pageParam: textField(def.pageParam) || undefined,
          firstPage: intField(def.firstPage, 1, 0, 1_000_000),
          offsetParam: textField(def.offsetParam) || undefined,
          cursorParam: textField(def.cursorParam) || undefined,
          cursorPath: textField(def.cursorPath) || undefined,
          maxPages: intField(def.maxPages, 10, 1, 10_000),
        },
      };
      const mode = oneOf<AuthMode>(AUTH_MODES, def.auth, 'none');
      client = createClient({
        auth: {
          mode,
          user: textField(def.user),
          password: creds.password,
          token: creds.token,
          apiKeyName: textField(def.apiKeyName),
          apiKeyIn: def.apiKeyIn === 'query' ? 'query' : 'header',
          apiKey: creds.apiKey,
          oauth2:
            mode === 'oauth2'
              ? {
                  tokenUrl: expand(def.tokenUrl),
                  clientId: textField(def.clientId),
                  clientSecret: creds.clientSecret ?? '',
                  scope: textField(def.scope) || undefined,
                  audience: textField(def.audience) || undefined,
                  clientAuth: def.clientAuth === 'body' ? 'body' : 'basic',
                }
              : undefined,
        },
        timeoutMs,
        maxAttempts: intField(def.attempts, 5, 1, 100),
        maxBodyBytes: 16 * 1024 * 1024,
        onRetry: (reason) => {
          lastRetry = reason.slice(0, 40);
          status.soon();
        },
      });
      decoder = createBatchDecoder({
        codec: oneOf<PullCodec>(PULL_CODECS, def.codec, 'json'),
        senmlFormat: parseSenmlFormat(def.senmlFormat),
        deviceId: textField(def.deviceId),
        expression: def.expression,
      });
      const u = new URL(url);
      key = textField(def.sourceKey) || `${u.host}${u.pathname}`;
    } catch (err) {
      const reason = (err as Error).message;
      node.status({ fill: 'red', shape: 'ring', text: t('conflux.status.invalidConfig', { reason }).slice(0, 120) });
      node.error(`conflux-http-pull: invalid configuration: ${reason}`);
      node.on('input', (_msg, _send, done) => done(new Error(`invalid configuration: ${reason}`)));
      closeAfter(node, db, () => Promise.resolve());
      return;
    }

    let closing = false;
    let running: Promise<void> | undefined;
    const abort = new AbortController();
    let pulled = 0;
    let skipped = 0;
    let lastError = '';
    let lastRetry = '';
    let watermark: string | number | null = null;
    const completion = trackCompletion(RED, node, intField(def.flowTimeout, 300, 1, 86_400) * 1000, () => status.soon());
    const status = throttledStatus(node, () => {
      const parts = [t('http-pull.status.pulled', { n: pulled })];
      if (running) parts.push(t('http-pull.status.running'));
      if (skipped > 0) parts.push(t('http-pull.status.skipped', { n: skipped }));
      if (watermark !== null) parts.push(t('http-pull.status.watermark', { value: String(watermark).slice(0, 30) }));
      if (lastRetry && running) parts.push(t('http-pull.status.retrying', { reason: lastRetry }));
      if (lastError) parts.push(lastError);
      return { fill: lastError ? 'red' : running ? 'blue' : 'green', shape: pulled > 0 ? 'dot' : 'ring', text: parts.join(', ').slice(0, 120) };
    });

    async function pull(input: NodeMessage): Promise<void> {
      const sql = await db!.sql();
      const { _msgid: _ignored, ...carried } = input as NodeMessage & Record<string, unknown>;
      const result = await runPull(
        client,
        source,
        {
          load: () => loadWatermark(sql, tenant, key),
          commit: async (from, next) => {
            const committed = await commitWatermark(sql, tenant, key, from, next);
            if (committed) watermark = committed.value;
            return committed;
          },
          deliver: async (batch) => {
            const now = Date.now();
            const decoded = await decoder.decode(batch.items, tenant, now);
            await completion.send({
              ...carried,
              payload: decoded.payload,
              device: decoded.device,
              source: { transport: 'pull', format: decoded.format, receivedAt: now },
              pull: { source: key, tenant, page: batch.page, url: batch.url, items: batch.items.length, from: batch.from.value, watermark: batch.to.value },
            });
            pulled += batch.items.length;
            status.soon();
          },
        },
        abort.signal,
      );
      watermark = result.watermark.value;
    }

    node.on('input', (msg, _send, done) => {
      if (closing) return done(new Error('the node is stopping'));
      // One run at a time: a second would read the watermark the first has not committed yet.
      if (running) {
        skipped++;
        status.soon();
        return done();
      }
      lastRetry = '';
      running = pull(msg)
        .then(
          () => {
            lastError = '';
            done();
          },
          (err: Error) => {
            lastError = err.message.slice(0, 60);
            done(new Error(`conflux-http-pull ${key}: ${err.message}`));
          },
        )
        .finally(() => {
          running = undefined;
          status.soon();
        });
      status.soon();
    });
    status.now();

    closeAfter(node, db, async () => {
      closing = true;
      abort.abort(new Error('the node is stopping'));
      // What is in the flow stays uncommitted: the next start pulls it again.
      completion.close('the node is stopping');
      await running;
      status.close();
      node.status({});
    });
  }
  RED.nodes.registerType<Node<HttpPullCredentials>, HttpPullDef, unknown, HttpPullCredentials>('conflux-http-pull', HttpPullNode, {
    credentials: { password: { type: 'password' }, token: { type: 'password' }, apiKey: { type: 'password' }, clientSecret: { type: 'password' } },
  });
};
