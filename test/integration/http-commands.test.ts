/**
 * The command endpoint's core (nodes/core/protocol/http-commands.ts) on PGlite: a body that is
 * not JSON is a 400 problem, whether the endpoint reads it or another middleware already did;
 * keys and scopes are checked before the body is read.
 */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { CommandRouter } from '../../nodes/core/devices/commands';
import { SessionRegistry } from '../../nodes/core/devices/sessions';
import { createCommandEndpoint, type CommandEndpoint, type CommandRequest } from '../../nodes/core/protocol/http-commands';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';

const PGLITE = ENGINES.find((e) => e.name === 'PGlite')!;

describe('command endpoint (core)', function () {
  this.timeout(OPEN_TIMEOUT_MS);
  let db: SqlClient;
  let router: CommandRouter;
  let endpoint: CommandEndpoint;
  let key: string;
  let readOnlyKey: string;

  before(async () => {
    db = await PGLITE.open();
    await migrate(db);
    const store = createBusinessStore(db);
    key = (await store.create('default', 'api_keys', { name: 'central', scopes: ['commands'] })).key as string;
    readOnlyKey = (await store.create('default', 'api_keys', { name: 'reader', scopes: ['read'] })).key as string;
    router = new CommandRouter({ sessions: new SessionRegistry(10), sql: async () => db, lookup: async () => undefined });
    endpoint = createCommandEndpoint({ router, sql: async () => db, timeoutMs: 1000, queueIfOffline: true, expiresInMs: 60_000 });
  });
  after(async () => {
    endpoint?.close('done');
    router?.close();
    await db?.close();
  });

  function request(body: Buffer, apiKey = key): CommandRequest & { bodyRead: () => boolean } {
    let read = false;
    return {
      method: 'POST',
      serial: 'SN-1',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      body: async () => {
        read = true;
        return body;
      },
      onHangUp: () => undefined,
      bodyRead: () => read,
    };
  }

  for (const [what, body] of [
    ['broken JSON', '{not json'],
    ['an empty body (another middleware consumed it)', ''],
    ['a truncated object', '{"name":"reboot"'],
  ] as const) {
    it(`answers ${what} with 400 problem+json, not 500`, async () => {
      const response = await endpoint.handle(request(Buffer.from(body)));
      assert.equal(response.status, 400);
      assert.match(response.headers['content-type'], /^application\/problem\+json/);
      const doc = JSON.parse(String(response.body)) as { type: string; detail: string };
      assert.equal(doc.type, 'https://conflux.dev/problems/invalid-body');
      assert.match(doc.detail, /not JSON/);
    });
  }

  it('a JSON body that is not a command is 400 invalid-request; a good one reaches the router (unknown device: 404)', async () => {
    const notCommand = await endpoint.handle(request(Buffer.from('[1,2]')));
    assert.equal(notCommand.status, 400);
    assert.equal(JSON.parse(String(notCommand.body)).type, 'https://conflux.dev/problems/invalid-request');
    const unknown = await endpoint.handle(request(Buffer.from('{"name":"reboot"}')));
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(String(unknown.body)).type, 'https://conflux.dev/problems/unknown-device');
  });

  it('checks the key and its scopes before reading the body', async () => {
    const wrong = request(Buffer.from('{not json'), 'cfx_wrong');
    assert.equal((await endpoint.handle(wrong)).status, 401);
    const forbidden = request(Buffer.from('{not json'), readOnlyKey);
    const answer = await endpoint.handle(forbidden);
    assert.equal(answer.status, 403);
    assert.match(JSON.parse(String(answer.body)).detail, /include none of commands/);
    assert.equal(wrong.bodyRead() || forbidden.bodyRead(), false);
  });
});
