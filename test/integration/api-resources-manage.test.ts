/**
 * The REST API's management resources on PostgreSQL, through their handlers with a real
 * ApiContext: webhook subscriptions (a user's own only; secrets, passwords and header values
 * never returned; a test event queued for that one subscription; the delivery log), FTP targets
 * (the secret reference write-only) and API keys (the key shown once, working with
 * authenticateApiKey, and no longer after revoke; no more scopes than the caller's). Every answer
 * is validated against its operation's response schema.
 */
import * as assert from 'node:assert/strict';
import type { ApiStores } from '../../nodes/core/api/operation';
import { authenticateApiKey, type ApiKeyIdentity } from '../../nodes/core/auth/api-key-store';
import type { SqlClient } from '../../nodes/core/db/sql';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import { SubscriptionStore } from '../../nodes/core/webhooks/out-store';
import { WEBHOOK_QUEUE } from '../../nodes/core/webhooks/out-sender';
import { allPages, call, fails } from '../support/api-resources';
import { ENGINES, withMigratedDatabase } from '../support/engines';

const SECRETS = ['password', 'secret', 'secret_ref', 'secretRef', 'hash', 'headers'];
const noSecrets = (body: Record<string, unknown> | undefined) => {
  const text = JSON.stringify(body);
  for (const s of ['s3cret-pw', 'whsec_', 'env:CONFLUX_FTP', 'k-123']) assert.ok(!text.includes(s), `answer carries ${s}: ${text}`);
  for (const f of SECRETS) assert.ok(!(f in (body ?? {})), `answer has ${f}`);
};

const postgres = ENGINES.find((e) => e.name === 'PostgreSQL')!;

describe('REST API management resources on PostgreSQL', function () {
  let db: SqlClient;
  let stores: ApiStores;
  let alice: ApiKeyIdentity;
  let bob: ApiKeyIdentity;
  const tenantWide: ApiKeyIdentity = { tenant: 'acme', id: 3, user_id: null, scopes: [] };
  const globex: ApiKeyIdentity = { tenant: 'globex', id: 4, user_id: null, scopes: [] };

  withMigratedDatabase(postgres, (opened) => (db = opened));

  before(async () => {
    const business = createBusinessStore(db);
    await createTenant(db, { id: 'acme', name: 'Acme' });
    await createTenant(db, { id: 'globex', name: 'Globex' });
    const a = await business.create('acme', 'users', { username: 'alice' });
    const b = await business.create('acme', 'users', { username: 'bob' });
    alice = { tenant: 'acme', id: 1, user_id: a.id as number, scopes: ['manage', 'keys'] };
    bob = { tenant: 'acme', id: 2, user_id: b.id as number, scopes: [] };
    stores = { db, catalogue: () => [] };
  });

  describe('webhook subscriptions', () => {
    const create = (identity: ApiKeyIdentity, body: Record<string, unknown>, version: 1 | 2 = 1) => call(stores, 'createWebhook', { identity, body, version });

    it('creates, reads, changes and deletes a user’s own subscription; secrets never come back', async () => {
      const made = await create(alice, {
        url: 'https://hooks.example.com/in',
        events: ['device.*'],
        username: 'partner',
        password: 's3cret-pw',
        secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        headers: { 'x-api-key': 'k-123' },
      });
      assert.equal(made.status, 201);
      noSecrets(made.body);
      assert.deepEqual([made.body!.hasPassword, made.body!.hasSecret, made.body!.headerNames], [true, true, ['x-api-key']]);
      const id = String(made.body!.id);

      const read = await call(stores, 'getWebhook', { identity: alice, version: 2, params: { id } });
      noSecrets(read.body);
      assert.equal(read.body!.disabledAt, null);
      const changed = await call(stores, 'updateWebhook', { identity: alice, params: { id }, body: { password: null, events: ['*'] } });
      assert.deepEqual([changed.body!.hasPassword, changed.body!.hasSecret, changed.body!.events], [false, true, ['*']]);

      // Not Bob's, not the tenant-wide key's, not another tenant's: 404 all round.
      for (const other of [bob, tenantWide, globex]) {
        await fails(stores, 'getWebhook', { identity: other, params: { id } }, 'not-found');
        await fails(stores, 'updateWebhook', { identity: other, params: { id }, body: { enabled: false } }, 'not-found');
        await fails(stores, 'deleteWebhook', { identity: other, params: { id } }, 'not-found');
        await fails(stores, 'testWebhook', { identity: other, params: { id } }, 'not-found');
        await fails(stores, 'listWebhookDeliveries', { identity: other, params: { id } }, 'not-found');
      }
      const { items } = await allPages(stores, 'listWebhooks', { identity: bob }, 10);
      assert.equal(items.length, 0);

      const deleted = await call(stores, 'deleteWebhook', { identity: alice, params: { id } });
      assert.equal(deleted.status, 204);
      await fails(stores, 'getWebhook', { identity: alice, params: { id } }, 'not-found');
    });

    it('refuses bad input, naming the property', async () => {
      await fails(stores, 'createWebhook', { identity: alice, body: { events: ['*'] } }, 'invalid-request', 'url');
      await fails(stores, 'createWebhook', { identity: alice, body: { url: 'ftp://x.example', events: ['*'] } }, 'invalid-request', 'url');
      await fails(stores, 'createWebhook', { identity: alice, body: { url: 'https://u:p@x.example', events: ['*'] } }, 'invalid-request', 'url');
      await fails(stores, 'createWebhook', { identity: alice, body: { url: 'https://x.example', events: ['Not A Type'] } }, 'invalid-request', 'events');
      await fails(
        stores,
        'createWebhook',
        { identity: alice, body: { url: 'https://x.example', events: ['*'], secret: 'plain' } },
        'invalid-request',
        'secret',
      );
      await fails(stores, 'createWebhook', { identity: alice, body: { url: 'https://x.example', events: ['*'], colour: 'red' } }, 'invalid-request', 'colour');
      await fails(stores, 'getWebhook', { identity: alice, params: { id: '0' } }, 'invalid-request', 'id');
    });

    it('lists one’s subscriptions page by page; the tenant-wide key sees the tenant-wide ones', async () => {
      for (let i = 0; i < 3; i++) await create(bob, { url: `https://b${i}.example.com/`, events: ['*'] });
      await create(tenantWide, { url: 'https://all.example.com/', events: ['*'] }, 2);
      const mine = await allPages(stores, 'listWebhooks', { identity: bob, version: 2 }, 2);
      assert.deepEqual(
        mine.items.map((s) => s.url),
        ['https://b0.example.com/', 'https://b1.example.com/', 'https://b2.example.com/'],
      );
      const wide = await allPages(stores, 'listWebhooks', { identity: tenantWide }, 10);
      assert.deepEqual(
        wide.items.map((s) => s.url),
        ['https://all.example.com/'],
      );
    });

    it('queues a test event for that subscription only, and lists its deliveries', async () => {
      const target = await create(alice, { url: 'https://target.example.com/', events: ['device.connected'] });
      await create(alice, { url: 'https://every.example.com/', events: ['*'] });
      const id = String(target.body!.id);
      const answer = await call(stores, 'testWebhook', { identity: alice, params: { id } });
      assert.equal(answer.status, 202);
      assert.equal(answer.body!.eventType, 'webhook.test');
      const { rows } = await db.query<{ message_id: string; payload: { subscription: number; body: string } }>(
        'SELECT message_id, payload FROM outbox WHERE tenant_id = $1 AND queue = $2',
        ['acme', WEBHOOK_QUEUE],
      );
      assert.deepEqual(
        rows.map((r) => r.message_id),
        [`${id}:${answer.body!.eventId as string}`],
      );
      const event = JSON.parse(rows[0].payload.body) as { id: string; type: string; tenant: string };
      assert.deepEqual([event.id, event.type, event.tenant, rows[0].payload.subscription], [answer.body!.eventId, 'webhook.test', 'acme', Number(id)]);

      // The sender logs its attempts; the API lists them, oldest first.
      const log = new SubscriptionStore(db, 1000, 'test-worker');
      for (const [attempt, outcome, status] of [
        [1, 'retry', 503],
        [2, 'delivered', 204],
      ] as const) {
        await log.record({
          tenant: 'acme',
          subscriptionId: Number(id),
          eventId: event.id,
          eventType: event.type,
          attempt,
          status,
          outcome,
          durationMs: 12,
          response: null,
          error: null,
        });
      }
      await log.close();
      const deliveries = await allPages(stores, 'listWebhookDeliveries', { identity: alice, params: { id } }, 1);
      assert.deepEqual(
        deliveries.items.map((d) => [d.attempt, d.outcome, d.status, d.eventId]),
        [
          [1, 'retry', 503, event.id],
          [2, 'delivered', 204, event.id],
        ],
      );

      await call(stores, 'updateWebhook', { identity: alice, params: { id }, body: { enabled: false } });
      await fails(stores, 'testWebhook', { identity: alice, params: { id } }, 'conflict');
    });
  });

  describe('FTP targets', () => {
    it('creates, lists, changes and deletes; the secret reference is write-only; another tenant gets 404', async () => {
      const made = await call(stores, 'createFtpTarget', {
        identity: alice,
        version: 2,
        body: { name: 'archive', host: 'files.example.com', port: 990, username: 'acme', secretref: 'env:CONFLUX_FTP_ACME' },
      });
      assert.equal(made.status, 201);
      noSecrets(made.body);
      assert.deepEqual([made.body!.hasSecret, made.body!.protocol, made.body!.directory], [true, 'ftps', '/']);
      assert.equal(made.body!.url, 'ftps://files.example.com:990/');
      const id = String(made.body!.id);
      await fails(stores, 'createFtpTarget', { identity: alice, body: { name: 'archive', host: 'h', username: 'u' } }, 'conflict');
      await fails(
        stores,
        'createFtpTarget',
        { identity: alice, body: { name: 'x', host: 'h', username: 'u', protocol: 'sftp' } },
        'invalid-request',
        'protocol',
      );
      await fails(stores, 'createFtpTarget', { identity: alice, body: { name: 'x', username: 'u' } }, 'invalid-request', 'host');
      await fails(
        stores,
        'createFtpTarget',
        { identity: alice, body: { name: 'x', host: 'h', username: 'u', secretref: 'vault:ftp/acme' } },
        'invalid-request',
        'secretRef',
      );
      await fails(
        stores,
        'createFtpTarget',
        { identity: alice, body: { name: 'x', host: 'h', username: 'u', naming: '{vin_{nn}.jpg' } },
        'invalid-request',
        'naming',
      );
      await fails(
        stores,
        'createFtpTarget',
        { identity: alice, body: { name: 'x', host: 'h', username: 'u', maxconnections: 99 } },
        'invalid-request',
        'maxConnections',
      );
      const changed = await call(stores, 'updateFtpTarget', { identity: alice, params: { id }, body: { secretref: null, directory: '/in' } });
      assert.deepEqual([changed.body!.hasSecret, changed.body!.directory], [false, '/in']);
      const list = await allPages(stores, 'listFtpTargets', { identity: alice }, 10);
      assert.equal(list.items.length, 1);
      noSecrets(list.items[0]);
      await fails(stores, 'getFtpTarget', { identity: globex, params: { id } }, 'not-found');

      // Seed 002: one client's target with its rules, the password write-only; one target per client.
      const client = await call(stores, 'createFtpTarget', {
        identity: alice,
        body: {
          name: 'dealer-7',
          client: 'd7',
          host: 'ftp.d7.example',
          protocol: 'ftpes',
          port: 21,
          username: 'up',
          password: 's3cret-pw',
          archive: '{vin}.zip',
          metadata: '{vin}.json',
        },
      });
      noSecrets(client.body);
      assert.deepEqual(
        [client.body!.client, client.body!.userRef, client.body!.hasSecret, client.body!.archive, client.body!.naming, client.body!.maxConnections],
        ['d7', null, true, '{vin}.zip', '{vin}_{nn:02}.{ext}', 2],
      );
      await fails(stores, 'createFtpTarget', { identity: alice, body: { name: 'dealer-7b', client: 'd7', host: 'h', username: 'u' } }, 'conflict', 'client');
      const own = await call(stores, 'createFtpTarget', { identity: alice, body: { name: 'ana', client: 'd7', userref: 'ana', host: 'h', username: 'u' } });
      assert.equal(own.body!.userRef, 'ana');
      await call(stores, 'deleteFtpTarget', { identity: alice, params: { id: String(client.body!.id) } });
      await call(stores, 'deleteFtpTarget', { identity: alice, params: { id: String(own.body!.id) } });
      await fails(stores, 'deleteFtpTarget', { identity: globex, params: { id } }, 'not-found');
      assert.equal((await call(stores, 'deleteFtpTarget', { identity: alice, params: { id } })).status, 204);
      await fails(stores, 'getFtpTarget', { identity: alice, params: { id } }, 'not-found');
    });
  });

  describe('API keys', () => {
    it('shows a new key once; it works until revoked; lists never carry the hash or the key', async () => {
      const made = await call(stores, 'createApiKey', { identity: alice, version: 2, body: { name: 'reporting', scopes: ['manage'] } });
      assert.equal(made.status, 201);
      const key = made.body!.key as string;
      const who = await authenticateApiKey(db, key);
      assert.deepEqual([who?.tenant, who?.scopes, String(who?.user_id)], ['acme', ['manage'], String(alice.user_id)]);
      assert.equal(made.body!.active, true);

      const list = await allPages(stores, 'listApiKeys', { identity: alice }, 10);
      const listed = list.items.find((k) => k.id === made.body!.id)!;
      assert.equal(listed.prefix, key.slice(0, 12));
      assert.ok(list.items.every((k) => !('key' in k) && !('hash' in k)));
      assert.ok(!JSON.stringify(list.items).includes(key));

      const revoked = await call(stores, 'revokeApiKey', { identity: alice, version: 2, params: { id: String(made.body!.id) } });
      assert.notEqual(revoked.body!.revokedAt, null);
      assert.equal(revoked.body!.active, false);
      assert.equal(await authenticateApiKey(db, key), undefined);
      await fails(stores, 'revokeApiKey', { identity: globex, params: { id: String(made.body!.id) } }, 'not-found');
    });

    it('never hands out more scopes than the caller has', async () => {
      await fails(stores, 'createApiKey', { identity: alice, body: { scopes: ['*'] } }, 'invalid-request', 'scopes');
      await fails(stores, 'createApiKey', { identity: alice, body: { scopes: ['fly'] } }, 'invalid-request', 'scopes');
      const same = await call(stores, 'createApiKey', { identity: alice, body: {} });
      assert.deepEqual(same.body!.scopes, ['manage', 'keys']);
      const any = await call(stores, 'createApiKey', { identity: bob, body: { scopes: ['read'], expiresat: '2999-01-01T00:00:00Z' } });
      assert.equal(any.body!.expiresAt, '2999-01-01T00:00:00+00:00');
      await fails(stores, 'createApiKey', { identity: bob, body: { expiresat: '2000-01-01T00:00:00Z' } }, 'invalid-request', 'expiresAt');
    });
  });
});
