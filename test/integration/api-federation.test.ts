/**
 * The federation's configuration through the REST API as a third party meets it: conflux-api and
 * conflux-rest-api on Node-RED's HTTP server, a fresh database on the real PostgreSQL, and real
 * HTTP requests through test/support/api-client.ts, which checks every answer against the OpenAPI
 * document the API serves. Settings, apps, users, user logins (secrets write-only) and consumers
 * (mapping as pairs, v2's watermark) of one organisation; another organisation sees none of them,
 * and a key without the manage scope changes nothing.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NodeAPI } from 'node-red';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import { ApiClient, type ApiAnswer } from '../support/api-client';
import { helper } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import postgresNode = require('../../nodes/storage/postgres');
import apiNode = require('../../nodes/api/api');
import restApiNode = require('../../nodes/api/rest-api');

let httpApp: http.RequestListener | undefined;
function api(RED: NodeAPI): void {
  httpApp = RED.httpNode as unknown as http.RequestListener;
  apiNode(RED);
}

describe('REST API: the federation’s settings, apps, users, logins and consumers (PostgreSQL)', function () {
  this.timeout(60_000);
  let server: http.Server;
  let sql: SqlClient;
  let client: ApiClient;
  let acme: string;
  let globex: string;
  let reader: string;

  before(async () => {
    const url = await freshDatabase();
    const flow = [
      { id: 'tab', type: 'tab' },
      { id: 'db', type: 'conflux-postgres', url },
      { id: 'api', type: 'conflux-api' },
      { id: 'rest', type: 'conflux-rest-api', z: 'tab', api: 'api' },
    ];
    await helper.load([postgresNode, api, restApiNode], flow as never);
    sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
    await createTenant(sql, { id: 'acme', name: 'Acme' });
    await createTenant(sql, { id: 'globex', name: 'Globex' });
    const store = createBusinessStore(sql);
    acme = (await store.create('acme', 'api_keys', { name: 'admin', scopes: ['manage'] })).key as string;
    reader = (await store.create('acme', 'api_keys', { name: 'reader', scopes: ['read'] })).key as string;
    globex = (await store.create('globex', 'api_keys', { name: 'admin', scopes: ['manage'] })).key as string;
    server = http.createServer(httpApp!);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = await ApiClient.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, '/api');
  });
  after(async () => {
    await helper.unload();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  });

  const call = (method: string, path: string, key: string, body?: unknown): Promise<ApiAnswer> => client.request(method, path, { key, body });
  const created = async (path: string, body: unknown, v = 'v1'): Promise<Record<string, any>> => {
    const a = await call('POST', `/${v}${path}`, acme, body);
    assert.equal(a.status, 201, a.text);
    return a.body;
  };

  it('settings: 404 until set, then PUT with defaults filled, validated', async () => {
    assert.equal((await call('GET', '/v1/federation/settings', acme)).status, 404);
    const put = await call('PUT', '/v2/federation/settings', acme, { application: 'legacy', baseUrl: 'http://legacy.example:8080' });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(
      { ...put.body, updatedAt: undefined, version: undefined },
      {
        application: 'legacy',
        baseUrl: 'http://legacy.example:8080',
        readingsPath: '/api/readings',
        itemsPath: '',
        ingestPath: '/api/ingest',
        watermarkParam: 'after',
        watermarkKind: 'id',
        watermarkPath: 'id',
        pageSize: 500,
        updatedAt: undefined,
        version: undefined,
      },
    );
    const bad = await call('PUT', '/v1/federation/settings', acme, { application: 'legacy', baseUrl: 'ftp://x' });
    assert.equal(bad.status, 400);
    assert.equal((await call('GET', '/v1/federation/settings', acme)).body.baseUrl, 'http://legacy.example:8080');
    assert.equal((await call('GET', '/v1/federation/settings', globex)).status, 404, 'another organisation has none');
  });

  it('apps, users, logins and consumers: create, read, change, list, delete; secrets never come back', async () => {
    const legacy = await created('/federation/apps', { name: 'legacy', jid: 'proxy-a@fed.example' });
    const partner = await created('/federation/apps', { name: 'partner', jid: 'proxy-b@fed.example', description: 'the partner proxy' });
    assert.deepEqual([partner.name, partner.jid, partner.description], ['partner', 'proxy-b@fed.example', 'the partner proxy']);
    assert.equal((await call('POST', '/v1/federation/apps', acme, { name: 'partner', jid: 'x@fed.example' })).status, 409);

    const alice = await created('/federation/users', { username: 'alice', federationId: 'alice@fed', displayName: 'Alice' });
    assert.deepEqual([alice.federationId, alice.displayName], ['alice@fed', 'Alice']);
    const dup = await call('POST', '/v1/federation/users', acme, { username: 'alice2', federationId: 'alice@fed' });
    assert.equal(dup.status, 409, 'a federation id is unique in the organisation');

    const login = await created(
      '/federation/user-apps',
      { userId: alice.id, appId: legacy.id, login: 'alice', password: 's3cret-pw', roles: ['reader'] },
      'v2',
    );
    assert.deepEqual([login.login, login.hasPassword, login.hasSecretRef, login.roles], ['alice', true, false, ['reader']]);
    const changed = await call('PATCH', `/v1/federation/user-apps/${login.id}`, acme, { password: null, secretRef: 'LEGACY_ALICE' });
    assert.deepEqual([changed.body.hasPassword, changed.body.hasSecretRef, 'roles' in changed.body], [false, true, false]);
    const listed = await call('GET', '/v2/federation/user-apps', acme);
    assert.ok(!/s3cret-pw|LEGACY_ALICE|password"|secretRef"/.test(listed.text), listed.text);
    assert.equal((await call('PATCH', `/v1/federation/user-apps/${login.id}`, acme, { userId: 7 })).status, 400, 'the owner is fixed');

    const consumer = await created('/federation/consumers', {
      userId: alice.id,
      targetAppId: partner.id,
      source: { objects: ['5368'], names: ['temperature'] },
      mapping: [{ from: '5368', to: 'Room-1' }],
    });
    assert.deepEqual(
      [consumer.userAppId, consumer.source, consumer.mapping, consumer.enabled],
      [null, { objects: ['5368'], names: ['temperature'] }, [{ from: '5368', to: 'Room-1' }], true],
    );
    assert.deepEqual((await sql.query('SELECT mapping FROM consumers WHERE id = $1', [consumer.id])).rows[0].mapping, { '5368': 'Room-1' });
    const v2 = await call('GET', `/v2/federation/consumers/${consumer.id}`, acme);
    assert.equal(v2.body.watermark, null, 'nothing pushed yet');
    await sql.query("INSERT INTO pull_sources (tenant_id, key, watermark) VALUES ('acme', $1, '42')", [`federation/consumer/${consumer.id}`]);
    assert.equal((await call('GET', `/v2/federation/consumers/${consumer.id}`, acme)).body.watermark, 42);
    assert.ok(!('watermark' in (await call('GET', `/v1/federation/consumers/${consumer.id}`, acme)).body), 'v1 is frozen');
    const off = await call('PATCH', `/v1/federation/consumers/${consumer.id}`, acme, { enabled: false, mapping: null, userAppId: login.id });
    assert.deepEqual([off.body.enabled, off.body.mapping, off.body.userAppId], [false, [], login.id]);
    assert.equal((await call('POST', '/v1/federation/consumers', acme, { userId: alice.id, targetAppId: 999_999, source: {} })).status, 400);

    assert.equal((await call('GET', '/v1/federation/consumers', acme)).body.items.length, 1);
    assert.equal((await call('DELETE', `/v1/federation/apps/${partner.id}`, acme)).status, 204);
    assert.equal((await call('GET', `/v1/federation/consumers/${consumer.id}`, acme)).status, 404, 'its consumers went with it');
  });

  it('another organisation sees and changes none of it; a key without manage changes nothing', async () => {
    const app = await created('/federation/apps', { name: 'crm', jid: 'crm@fed.example' });
    for (const [method, body] of [
      ['GET', undefined],
      ['PATCH', { name: 'mine' }],
      ['DELETE', undefined],
    ] as const) {
      assert.equal((await call(method, `/v1/federation/apps/${app.id}`, globex, body)).status, 404, method);
    }
    assert.deepEqual((await call('GET', '/v1/federation/apps', globex)).body.items, []);
    assert.deepEqual((await call('GET', '/v1/federation/users', globex)).body.items, []);
    const user = (await call('GET', '/v1/federation/users', acme)).body.items[0] as { id: number };
    const crossed = await call('POST', '/v1/federation/consumers', globex, { userId: user.id, targetAppId: app.id, source: {} });
    assert.equal(crossed.status, 400, 'ids of another organisation are refused');
    assert.equal((await call('POST', '/v1/federation/apps', reader, { name: 'x', jid: 'x@fed.example' })).status, 403);
    assert.equal((await call('GET', `/v1/federation/apps/${app.id}`, acme)).body.name, 'crm');
    assert.ok(client.validated >= 10, 'every answer was checked against the served document');
  });
});
