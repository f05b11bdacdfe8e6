/** The business-data store on PostgreSQL 15 and PGlite: CRUD, lists, tenancy, secrets, error codes, restarts. */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { deriveScramKeys, verifyClientProof, clientProof, scramClientKey, saltedPassword } from '../../nodes/core/auth/scram';
import { authenticateApiKey } from '../../nodes/core/auth/api-key-store';
import {
  BUSINESS_ENTITIES,
  BusinessError,
  createBusinessStore,
  createTenant,
  describeEntity,
  type BusinessErrorCode,
  type BusinessRow,
  type BusinessStore,
} from '../../nodes/core/stores/business';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';
import { elapse } from '../support/wait';

/** Asserts that promise rejects with a BusinessError of this code, whose field (if given) matches. */
async function rejectsWith(promise: Promise<unknown>, code: BusinessErrorCode, field?: string, message?: RegExp): Promise<BusinessError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof BusinessError, `expected a BusinessError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (field !== undefined) assert.equal(caught.field, field, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

const SECRET_FIELDS = ['salt', 'stored_key', 'server_key', 'hash', 'secret', 'password'];

function assertNoSecrets(row: BusinessRow): void {
  for (const f of SECRET_FIELDS) assert.ok(!(f in row), `row carries ${f}`);
}

for (const engine of ENGINES) {
  describe(`business store on ${engine.name}`, function () {
    let db: SqlClient;
    let store: BusinessStore;
    let n = 0;
    const uniq = (s: string) => `${s}-${++n}`;

    before(async function () {
      this.timeout(OPEN_TIMEOUT_MS);
      db = await engine.open();
      await migrate(db);
      store = createBusinessStore(db);
      await createTenant(db, { id: 'acme', name: 'Acme' });
      await createTenant(db, { id: 'globex', name: 'Globex', settings: { plan: 'gold' } });
    });
    after(async () => db?.close());

    const device = (tenant: string, extra: Record<string, unknown> = {}) => store.create(tenant, 'devices', { serial: uniq('SN'), ...extra });

    describe('tenants', () => {
      it('createTenant makes a tenant; a taken id is a conflict, a bad one invalid', async () => {
        const t = await createTenant(db, { id: 'initech', name: 'Initech', settings: { a: [1] } });
        assert.equal(t.id, 'initech');
        assert.deepEqual(t.settings, { a: [1] });
        assert.ok(t.created_at instanceof Date);
        await rejectsWith(createTenant(db, { id: 'initech', name: 'again' }), 'conflict');
        await rejectsWith(createTenant(db, { id: 'x'.repeat(65), name: 'long' }), 'invalid', 'tenant');
        await rejectsWith(createTenant(db, { id: 'y', name: 'Y', disabled_at: new Date() } as never), 'invalid', 'disabled_at');
        await rejectsWith(createTenant(db, { id: 'z' } as never), 'invalid', 'name');
      });

      it('a tenant reads, lists and updates its own row only', async () => {
        const own = await store.read('globex', 'tenants', 'globex');
        assert.deepEqual([own.id, own.name, own.settings], ['globex', 'Globex', { plan: 'gold' }]);
        await rejectsWith(store.read('globex', 'tenants', 'acme'), 'not-found');
        await rejectsWith(store.update('globex', 'tenants', 'acme', { name: 'pwned' }), 'not-found');
        assert.equal((await store.read('acme', 'tenants', 'acme')).name, 'Acme');
        const renamed = await store.update('globex', 'tenants', 'globex', { name: 'Globex Corp' });
        assert.equal(renamed.name, 'Globex Corp');
        assert.deepEqual(
          (await store.list('globex', 'tenants')).items.map((r) => r.id),
          ['globex'],
        );
        await rejectsWith(store.update('globex', 'tenants', 'globex', { disabled_at: new Date() }), 'invalid', 'disabled_at');
        await rejectsWith(store.update('globex', 'tenants', 'globex', { id: 'other' }), 'invalid', 'id');
      });

      it('tenants are neither created nor deleted through the store', async () => {
        await rejectsWith(store.create('acme', 'tenants', { id: 'new', name: 'New' }), 'invalid', 'entity');
        await rejectsWith(store.delete('acme', 'tenants', 'acme'), 'invalid', 'entity');
        assert.equal((await store.read('acme', 'tenants', 'acme')).id, 'acme');
      });

      it('writing into a tenant that does not exist is not-found', async () => {
        await rejectsWith(store.create('nobody', 'users', { username: 'u' }), 'not-found', 'tenant');
        await rejectsWith(store.read('nobody', 'tenants', 'nobody'), 'not-found');
      });
    });

    describe('CRUD', () => {
      it('config is keyed by key: create, read, update, list, delete', async () => {
        const created = await store.create('acme', 'config', { key: 'xmpp', value: { jid: 'a@b', port: 5222 } });
        assert.deepEqual([created.key, created.value], ['xmpp', { jid: 'a@b', port: 5222 }]);
        assert.ok(!('tenant_id' in created));
        await store.create('acme', 'config', { key: 'arr', value: [1, 'two'] });
        assert.deepEqual((await store.read('acme', 'config', 'arr')).value, [1, 'two']);
        await elapse(5);
        const updated = await store.update('acme', 'config', 'xmpp', { value: 'plain string' });
        assert.equal(updated.value, 'plain string');
        assert.ok((updated.updated_at as Date) > (created.updated_at as Date), 'updated_at moves');
        await rejectsWith(store.create('acme', 'config', { key: 'xmpp', value: 1 }), 'conflict');
        await rejectsWith(store.create('acme', 'config', { key: 'n', value: null }), 'invalid', 'value');
        await rejectsWith(store.update('acme', 'config', 'xmpp', { key: 'renamed' }), 'invalid', 'key');
        // The other tenant has its own keys.
        await rejectsWith(store.read('globex', 'config', 'xmpp'), 'not-found', 'key');
        await store.create('globex', 'config', { key: 'xmpp', value: true });
        assert.deepEqual(
          (await store.list('acme', 'config')).items.map((r) => r.key),
          ['arr', 'xmpp'],
        );
        assert.equal((await store.delete('acme', 'config', 'arr')).key, 'arr');
        await rejectsWith(store.read('acme', 'config', 'arr'), 'not-found');
        assert.equal((await store.read('globex', 'config', 'xmpp')).value, true);
      });

      it('users: create, read, update with updated_at, delete; unique username per tenant', async () => {
        const u = await store.create('acme', 'users', { username: 'ana', email: 'ana@example.com', attributes: { lang: 'es' } });
        assert.equal(typeof u.id, 'number');
        assert.deepEqual([u.username, u.email, u.attributes, u.federation_id, u.disabled_at], ['ana', 'ana@example.com', { lang: 'es' }, null, null]);
        assert.deepEqual(await store.read('acme', 'users', u.id as number), u);
        assert.deepEqual(await store.read('acme', 'users', String(u.id)), u);
        await elapse(5);
        const disabled = new Date('2030-01-02T03:04:05.678Z');
        const v = await store.update('acme', 'users', u.id as number, { display_name: 'Ana', email: null, disabled_at: disabled.toISOString() });
        assert.deepEqual([v.display_name, v.email, (v.disabled_at as Date).toISOString()], ['Ana', null, disabled.toISOString()]);
        assert.ok((v.updated_at as Date) > (u.updated_at as Date));
        assert.deepEqual((v.created_at as Date).getTime(), (u.created_at as Date).getTime());
        // An empty patch changes nothing.
        assert.deepEqual(await store.update('acme', 'users', u.id as number, {}), v);
        await rejectsWith(store.create('acme', 'users', { username: 'ana' }), 'conflict', 'username');
        await store.create('globex', 'users', { username: 'ana' });
        assert.deepEqual(await store.delete('acme', 'users', u.id as number), v);
        await rejectsWith(store.read('acme', 'users', u.id as number), 'not-found', 'id');
        await rejectsWith(store.delete('acme', 'users', u.id as number), 'not-found');
        await rejectsWith(store.update('acme', 'users', u.id as number, { display_name: 'x' }), 'not-found');
      });

      it('devices: create, update, delete; the serial is unique across tenants', async () => {
        const d = await store.create('acme', 'devices', { serial: 'SN-CRUD', model: 'X1', attributes: { fw: '1.2' } });
        assert.deepEqual([d.serial, d.model, d.name, d.attributes, d.last_seen_at], ['SN-CRUD', 'X1', null, { fw: '1.2' }, null]);
        const seen = new Date('2024-05-06T07:08:09Z');
        const e = await store.update('acme', 'devices', d.id as number, { name: 'Boiler', last_seen_at: seen });
        assert.deepEqual([e.name, (e.last_seen_at as Date).getTime()], ['Boiler', seen.getTime()]);
        await rejectsWith(store.create('globex', 'devices', { serial: 'SN-CRUD' }), 'conflict', 'serial');
        await store.delete('acme', 'devices', d.id as number);
        assert.equal((await store.list('acme', 'devices', { filter: { serial: 'SN-CRUD' } })).items.length, 0);
      });

      it('channels: create, update, delete; number unique per device; checks map to invalid', async () => {
        const d = await device('acme');
        const c = await store.create('acme', 'channels', { device_id: d.id, number: 1, interval_s: 60, config: { unit: 'Cel' } });
        assert.deepEqual([c.device_id, c.number, c.interval_s, c.config, c.name], [d.id, 1, 60, { unit: 'Cel' }, null]);
        assert.equal((await store.update('acme', 'channels', c.id as number, { name: 'temp', interval_s: null })).interval_s, null);
        await rejectsWith(store.create('acme', 'channels', { device_id: d.id, number: 1 }), 'conflict', 'number');
        await rejectsWith(store.create('acme', 'channels', { device_id: d.id, number: 2, interval_s: 0 }), 'invalid', 'interval_s');
        await rejectsWith(store.create('acme', 'channels', { device_id: d.id, number: -1 }), 'invalid', 'number');
        await rejectsWith(store.update('acme', 'channels', c.id as number, { device_id: d.id }), 'invalid', 'device_id', /only be set on create/);
        await rejectsWith(store.create('acme', 'channels', { device_id: 999_999, number: 3 }), 'invalid', 'device_id');
        await store.delete('acme', 'channels', c.id as number);
        await rejectsWith(store.read('acme', 'channels', c.id as number), 'not-found');
      });

      it('sensors: the device comes from the channel; one open sink per channel position', async () => {
        const d = await device('acme');
        const c = await store.create('acme', 'channels', { device_id: d.id, number: 0 });
        const s = await store.create('acme', 'sensors', { channel_id: c.id, kind: 'temperature', quantities: ['temp', 'hum'] });
        assert.deepEqual([s.device_id, s.channel_id, s.position, s.kind, s.quantities, s.ended_at], [d.id, c.id, 0, 'temperature', ['temp', 'hum'], null]);
        assert.ok(s.started_at instanceof Date);
        await rejectsWith(store.create('acme', 'sensors', { channel_id: c.id }), 'conflict', 'position');
        const other = await store.create('acme', 'sensors', { channel_id: c.id, device_id: d.id, position: 1 });
        assert.equal(other.position, 1);
        const ended = await store.update('acme', 'sensors', s.id as number, { ended_at: new Date(Date.now() + 1000) });
        assert.ok(ended.ended_at instanceof Date);
        await store.create('acme', 'sensors', { channel_id: c.id }); // position 0 is free again
        await rejectsWith(store.update('acme', 'sensors', other.id as number, { ended_at: '2000-01-01T00:00:00Z' }), 'invalid', 'ended_at');
        await rejectsWith(store.create('acme', 'sensors', { channel_id: 999_999 }), 'invalid', 'channel_id');
        const d2 = await device('acme');
        await rejectsWith(store.create('acme', 'sensors', { channel_id: c.id, device_id: d2.id, position: 5 }), 'invalid');
        await rejectsWith(store.create('acme', 'sensors', { channel_id: c.id, quantities: 'temp' }), 'invalid', 'quantities');
      });

      it('applications, user_applications (password hidden), consumers', async () => {
        const app = await store.create('acme', 'applications', { name: uniq('app'), jid: uniq('app') + '@xmpp.example', description: 'proxy' });
        assert.equal(app.description, 'proxy');
        await rejectsWith(store.create('acme', 'applications', { name: app.name, jid: 'other@x' }), 'conflict', 'name');
        const user = await store.create('acme', 'users', { username: uniq('u'), federation_id: uniq('fed') });
        await rejectsWith(store.create('acme', 'users', { username: uniq('u'), federation_id: user.federation_id }), 'conflict', 'federation_id');
        const ua = await store.create('acme', 'user_applications', {
          user_id: user.id,
          application_id: app.id,
          login: 'ana',
          password: 'pa55-word',
          roles: ['reader'],
        });
        assert.deepEqual([ua.login, ua.secret_ref, ua.roles, ua.has_password], ['ana', null, ['reader'], true]);
        assert.ok(!JSON.stringify(ua).includes('pa55-word'));
        assert.ok(!('password' in ua));
        const { rows } = await db.query<{ password: string }>('SELECT password FROM user_applications WHERE id = $1', [ua.id]);
        assert.equal(rows[0].password, 'pa55-word');
        const cleared = await store.update('acme', 'user_applications', ua.id as number, { password: null, secret_ref: 'LEGACY_ANA' });
        assert.deepEqual([cleared.has_password, cleared.secret_ref], [false, 'LEGACY_ANA']);
        assert.ok(!('password' in (await store.read('acme', 'user_applications', ua.id as number))));
        assert.ok(!('password' in (await store.list('acme', 'user_applications')).items[0]));
        await rejectsWith(store.update('acme', 'user_applications', ua.id as number, { password: 5 }), 'invalid', 'password');
        await rejectsWith(store.create('acme', 'user_applications', { user_id: user.id, application_id: app.id }), 'conflict');

        const consumer = await store.create('acme', 'consumers', {
          user_id: user.id,
          user_application_id: ua.id,
          target_application_id: app.id,
          source: { prefix: 'dev1/', quantities: ['temp'] },
          schedule: '*/5 * * * *',
        });
        assert.deepEqual([consumer.source, consumer.mapping, consumer.enabled], [{ prefix: 'dev1/', quantities: ['temp'] }, null, true]);
        const mapped = await store.update('acme', 'consumers', consumer.id as number, { mapping: { temp: 't' }, enabled: false });
        assert.deepEqual([mapped.mapping, mapped.enabled], [{ temp: 't' }, false]);
        await rejectsWith(store.update('acme', 'consumers', consumer.id as number, { enabled: 'no' }), 'invalid', 'enabled');
        await store.delete('acme', 'applications', app.id as number); // cascades
        await rejectsWith(store.read('acme', 'consumers', consumer.id as number), 'not-found');
        await rejectsWith(store.read('acme', 'user_applications', ua.id as number), 'not-found');
      });

      it('webhook_subscriptions and ftp_targets, with their checks', async () => {
        const hook = await store.create('acme', 'webhook_subscriptions', {
          url: 'https://example.com/hook',
          events: ['vehicle.created'],
          username: 'basic',
          secret_ref: 'cred:hook1',
          headers: { 'x-a': '1' },
        });
        assert.deepEqual([hook.events, hook.headers, hook.enabled], [['vehicle.created'], { 'x-a': '1' }, true]);
        assert.deepEqual((await store.update('acme', 'webhook_subscriptions', hook.id as number, { events: [] })).events, []);
        await rejectsWith(store.create('acme', 'webhook_subscriptions', { url: 'ftp://example.com' }), 'invalid', 'url');
        await rejectsWith(store.create('acme', 'webhook_subscriptions', { url: 'https://x', headers: ['a'] }), 'invalid', 'headers');
        await store.delete('acme', 'webhook_subscriptions', hook.id as number);

        const ftp = await store.create('acme', 'ftp_targets', { name: 'dealer', host: 'ftp.example.com', username: 'up', naming: '{vin}.zip' });
        assert.deepEqual([ftp.port, ftp.protocol, ftp.directory, ftp.naming], [21, 'ftps', '/', '{vin}.zip']);
        assert.equal((await store.update('acme', 'ftp_targets', ftp.id as number, { port: 990, protocol: 'ftp' })).port, 990);
        await rejectsWith(store.update('acme', 'ftp_targets', ftp.id as number, { port: 70_000 }), 'invalid', 'port');
        await rejectsWith(store.update('acme', 'ftp_targets', ftp.id as number, { protocol: 'sftp' }), 'invalid', 'protocol');
        await rejectsWith(store.update('acme', 'ftp_targets', ftp.id as number, { port: 21.5 }), 'invalid', 'port');
        await rejectsWith(store.create('acme', 'ftp_targets', { name: 'dealer', host: 'h', username: 'u' }), 'conflict', 'name');
        await store.delete('acme', 'ftp_targets', ftp.id as number);
      });
    });

    describe('device keys', () => {
      it('stores only the SCRAM-derived keys, and they verify a proof made with the key', async () => {
        const d = await device('acme');
        const k = await store.create('acme', 'device_keys', { device_id: d.id, key: 'correct horse battery staple', iterations: 5000 });
        assert.deepEqual([k.device_id, k.slot, k.mechanism, k.iterations, k.valid_until], [d.id, 1, 'SCRAM-SHA-256', 5000, null]);
        assertNoSecrets(k);
        assert.ok(!('key' in k));
        const { rows } = await db.query<Record<string, unknown>>('SELECT * FROM device_keys WHERE id = $1', [k.id]);
        const row = rows[0];
        const salt = row.salt as Buffer;
        assert.equal(salt.length, 16);
        const expected = deriveScramKeys('correct horse battery staple', { salt, iterations: 5000 });
        assert.deepEqual([row.stored_key, row.server_key], [expected.storedKey, expected.serverKey]);
        assert.ok(!JSON.stringify(row).includes('correct horse'), 'the key itself is stored nowhere');
        // A client holding the key proves it against what was stored.
        const auth = 'n=dev,r=abc,r=abcdef,s=x,i=5000,c=biws,r=abcdef';
        const proof = clientProof(scramClientKey(saltedPassword('correct horse battery staple', salt, 5000)), auth);
        assert.equal(verifyClientProof(row.stored_key as Buffer, auth, proof), true);
        assertNoSecrets(await store.read('acme', 'device_keys', k.id as number));
        for (const item of (await store.list('acme', 'device_keys', { filter: { device_id: d.id as number } })).items) assertNoSecrets(item);
      });

      it('fills slot 1 then 2, refuses a third key, and rotates through validity windows', async () => {
        const d = await device('acme');
        const until = new Date(Date.now() + 86_400_000);
        const k1 = await store.create('acme', 'device_keys', { device_id: d.id, key: 'k1', valid_until: until });
        const k2 = await store.create('acme', 'device_keys', { device_id: d.id, key: 'k2', valid_from: until.toISOString() });
        assert.deepEqual([k1.slot, k2.slot], [1, 2]);
        assert.equal((k2.valid_from as Date).getTime(), until.getTime());
        await rejectsWith(store.create('acme', 'device_keys', { device_id: d.id, key: 'k3' }), 'conflict', 'slot', /two keys/);
        await store.delete('acme', 'device_keys', k1.id as number);
        await rejectsWith(store.create('acme', 'device_keys', { device_id: d.id, key: 'k3', slot: 2 }), 'conflict', 'slot');
        const k3 = await store.create('acme', 'device_keys', { device_id: d.id, key: 'k3' });
        assert.equal(k3.slot, 1);
        const moved = await store.update('acme', 'device_keys', k3.id as number, { valid_until: new Date(Date.now() + 3_600_000) });
        assert.ok(moved.valid_until instanceof Date);
        await rejectsWith(store.update('acme', 'device_keys', k3.id as number, { valid_until: '2000-01-01T00:00:00Z' }), 'invalid', 'valid_until');
        await rejectsWith(store.update('acme', 'device_keys', k3.id as number, { key: 'new' }), 'invalid', 'key');
        await rejectsWith(store.update('acme', 'device_keys', k3.id as number, { stored_key: Buffer.alloc(32) }), 'invalid', 'stored_key');
      });

      it('refuses a missing key, too few iterations, a bad slot, a bad key', async () => {
        const d = await device('acme');
        await rejectsWith(store.create('acme', 'device_keys', { device_id: d.id }), 'invalid', 'key', /required/);
        await rejectsWith(store.create('acme', 'device_keys', { device_id: d.id, key: 'k', iterations: 1000 }), 'invalid', 'iterations');
        await rejectsWith(store.create('acme', 'device_keys', { device_id: d.id, key: 'k', slot: 3 }), 'invalid', 'slot');
        await rejectsWith(store.create('acme', 'device_keys', { device_id: d.id, key: 'bell\u0007' }), 'invalid', 'key');
        await rejectsWith(store.create('acme', 'device_keys', { device_id: d.id, key: 'k', salt: Buffer.alloc(16) }), 'invalid', 'salt');
        assert.equal((await store.list('acme', 'device_keys', { filter: { device_id: d.id as number } })).items.length, 0);
      });
    });

    describe('api keys', () => {
      it('returns the key once and stores only its SHA-256 and prefix', async () => {
        const user = await store.create('acme', 'users', { username: uniq('api') });
        const created = await store.create('acme', 'api_keys', { name: 'ci', user_id: user.id, scopes: ['read', 'write'] });
        const key = created.key as string;
        assert.match(key, /^cfx_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{43}$/);
        assert.equal(created.prefix, key.slice(0, 12));
        assert.deepEqual([created.name, created.user_id, created.scopes, created.revoked_at], ['ci', user.id, ['read', 'write'], null]);
        assertNoSecrets(created);
        const read = await store.read('acme', 'api_keys', created.id as number);
        assert.ok(!('key' in read));
        assertNoSecrets(read);
        const { rows } = await db.query<Record<string, unknown>>('SELECT * FROM api_keys WHERE id = $1', [created.id]);
        assert.deepEqual(rows[0].hash, createHash('sha256').update(key).digest());
        assert.ok(!Object.values(rows[0]).some((v) => typeof v === 'string' && v.includes(key.slice(13))), 'the secret part is stored nowhere');
        for (const item of (await store.list('acme', 'api_keys')).items) assert.ok(!('key' in item) && !('hash' in item));
        const other = await store.create('acme', 'api_keys', {});
        assert.notEqual(other.key, key);
        await rejectsWith(store.create('acme', 'api_keys', { prefix: 'cfx_mine0000' }), 'invalid', 'prefix');
        await rejectsWith(store.create('acme', 'api_keys', { hash: Buffer.alloc(32) }), 'invalid', 'hash');
      });

      it('authenticates a key to its tenant until revoked or expired', async () => {
        const created = await store.create('globex', 'api_keys', { scopes: ['read'] });
        const key = created.key as string;
        assert.deepEqual(await authenticateApiKey(db, key), { tenant: 'globex', id: created.id, user_id: null, scopes: ['read'] });
        assert.ok((await store.read('globex', 'api_keys', created.id as number)).last_used_at instanceof Date);
        const wrong = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
        assert.equal(await authenticateApiKey(db, wrong), undefined);
        assert.equal(await authenticateApiKey(db, 'not a key'), undefined);
        await store.update('globex', 'api_keys', created.id as number, { revoked_at: new Date() });
        assert.equal(await authenticateApiKey(db, key), undefined);
        const expiring = await store.create('globex', 'api_keys', { expires_at: new Date(Date.now() - 1000) });
        assert.equal(await authenticateApiKey(db, expiring.key as string), undefined);
      });
    });

    describe('tenant isolation', () => {
      it("tenant B cannot read, update, delete or list tenant A's device", async () => {
        const d = await device('acme', { name: 'mine' });
        await rejectsWith(store.read('globex', 'devices', d.id as number), 'not-found');
        await rejectsWith(store.update('globex', 'devices', d.id as number, { name: 'stolen' }), 'not-found');
        await rejectsWith(store.delete('globex', 'devices', d.id as number), 'not-found');
        assert.ok(!(await store.list('globex', 'devices', { limit: 1000 })).items.some((r) => r.id === d.id));
        assert.equal((await store.list('globex', 'devices', { filter: { id: d.id as number } })).items.length, 0);
        assert.equal((await store.read('acme', 'devices', d.id as number)).name, 'mine');
      });

      it("tenant B cannot point a channel, key, sensor or consumer at tenant A's rows", async () => {
        const d = await device('acme');
        const c = await store.create('acme', 'channels', { device_id: d.id, number: 0 });
        await rejectsWith(store.create('globex', 'channels', { device_id: d.id, number: 7 }), 'invalid', 'device_id');
        await rejectsWith(store.create('globex', 'device_keys', { device_id: d.id, key: 'k' }), 'invalid', 'device_id');
        await rejectsWith(store.create('globex', 'sensors', { channel_id: c.id }), 'invalid', 'channel_id');
        const bDevice = await device('globex');
        await rejectsWith(store.create('globex', 'sensors', { channel_id: c.id, device_id: bDevice.id }), 'invalid');
        const aUser = await store.create('acme', 'users', { username: uniq('victim') });
        const bApp = await store.create('globex', 'applications', { name: uniq('b'), jid: uniq('b') + '@x' });
        await rejectsWith(store.create('globex', 'consumers', { user_id: aUser.id, target_application_id: bApp.id, source: {} }), 'invalid', 'user_id');
        await rejectsWith(store.create('globex', 'api_keys', { user_id: aUser.id }), 'invalid', 'user_id');
        await rejectsWith(store.restartDevice('globex', d.id as number), 'not-found');
        assert.equal((await store.list('acme', 'channels', { filter: { device_id: d.id as number } })).items.length, 1);
      });

      it('tenant_id and id never come from the input', async () => {
        await rejectsWith(store.create('globex', 'devices', { serial: uniq('SN'), tenant_id: 'acme' }), 'invalid', 'tenant_id');
        await rejectsWith(store.create('globex', 'devices', { serial: uniq('SN'), id: 1 }), 'invalid', 'id');
        const d = await device('globex');
        await rejectsWith(store.update('globex', 'devices', d.id as number, { tenant_id: 'acme' }), 'invalid', 'tenant_id');
        await rejectsWith(store.update('globex', 'devices', d.id as number, { created_at: new Date() }), 'invalid', 'created_at');
        await rejectsWith(store.update('globex', 'devices', d.id as number, { updated_at: new Date() }), 'invalid', 'updated_at');
      });
    });

    describe('lists', () => {
      let tenant: string;
      const ids: number[] = [];
      before(async () => {
        tenant = uniq('lists');
        await createTenant(db, { id: tenant, name: 'Lists' });
        for (let i = 0; i < 25; i++) ids.push((await device(tenant, { model: i % 2 ? 'odd' : 'even', name: i < 5 ? null : `d${i}` })).id as number);
      });

      it('pages by id with a cursor until the end', async () => {
        const seen: unknown[] = [];
        let cursor: string | undefined;
        const sizes: number[] = [];
        for (let page = 0; page < 10; page++) {
          const result = await store.list(tenant, 'devices', { limit: 10, cursor });
          sizes.push(result.items.length);
          seen.push(...result.items.map((r) => r.id));
          cursor = result.cursor;
          if (!cursor) break;
        }
        assert.deepEqual(sizes, [10, 10, 5]);
        assert.deepEqual(seen, ids);
        // Exactly a full last page has no cursor after it.
        const all = await store.list(tenant, 'devices', { limit: 25 });
        assert.equal(all.items.length, 25);
        assert.equal(all.cursor, undefined);
        assert.equal((await store.list(tenant, 'devices')).items.length, 25);
      });

      it('filters on scalar fields, null meaning IS NULL, across pages', async () => {
        const first = await store.list(tenant, 'devices', { filter: { model: 'odd' }, limit: 5 });
        assert.equal(first.items.length, 5);
        assert.ok(first.items.every((r) => r.model === 'odd'));
        const rest = await store.list(tenant, 'devices', { filter: { model: 'odd' }, limit: 100, cursor: first.cursor });
        assert.equal(first.items.length + rest.items.length, 12);
        assert.deepEqual(
          (await store.list(tenant, 'devices', { filter: { name: null } })).items.map((r) => r.id),
          ids.slice(0, 5),
        );
        assert.deepEqual(
          (await store.list(tenant, 'devices', { filter: { id: String(ids[3]) } })).items.map((r) => r.id),
          [ids[3]],
        );
      });

      it('refuses bad limits, cursors and filters', async () => {
        for (const limit of [0, 1001, 2.5, '10']) await rejectsWith(store.list(tenant, 'devices', { limit: limit as number }), 'invalid', 'limit');
        await rejectsWith(store.list(tenant, 'devices', { cursor: 'garbage!' }), 'invalid', 'cursor');
        const { cursor } = await store.list(tenant, 'devices', { limit: 1 });
        await rejectsWith(store.list(tenant, 'users', { cursor }), 'invalid', 'cursor');
        await rejectsWith(store.list(tenant, 'devices', { filter: { attributes: 'x' } }), 'invalid', 'attributes');
        await rejectsWith(store.list(tenant, 'api_keys', { filter: { hash: 'x' } }), 'invalid', 'hash');
        await rejectsWith(store.list(tenant, 'devices', { filter: { nope: 1 } }), 'invalid', 'nope');
        await rejectsWith(store.list(tenant, 'devices', { filter: { id: 'abc' } }), 'invalid', 'id');
      });
    });

    describe('input checks', () => {
      it('an unknown entity, field, wrong type or missing field is invalid, naming it', async () => {
        await rejectsWith(store.create('acme', 'readings', {}), 'invalid', 'entity', /unknown entity/);
        await rejectsWith(store.list('acme', '__proto__'), 'invalid', 'entity');
        await rejectsWith(store.create('acme', 'users', { username: 'x', nickname: 'y' }), 'invalid', 'nickname', /"nickname" is unknown/);
        await rejectsWith(store.create('acme', 'users', { username: 42 }), 'invalid', 'username', /must be a string/);
        await rejectsWith(store.create('acme', 'users', {}), 'invalid', 'username', /required/);
        await rejectsWith(store.create('acme', 'users', { username: '' }), 'invalid', 'username');
        await rejectsWith(store.create('acme', 'users', { username: 'x', attributes: [1] }), 'invalid', 'attributes');
        await rejectsWith(store.create('acme', 'users', { username: 'x', attributes: null }), 'invalid', 'attributes', /null/);
        await rejectsWith(store.create('acme', 'users', { username: 'x', disabled_at: 'yesterday' }), 'invalid', 'disabled_at');
        await rejectsWith(store.create('acme', 'users', { username: 'x', disabled_at: '2024-01-01T10:00' }), 'invalid', 'disabled_at');
        await rejectsWith(store.create('acme', 'users', 'x' as never), 'invalid');
        await rejectsWith(store.read('acme', 'users', 'abc'), 'invalid', 'id');
        await rejectsWith(store.read('acme', 'users', 0), 'invalid', 'id');
        await rejectsWith(store.read('', 'users', 1), 'invalid', 'tenant');
        await rejectsWith(store.create('acme', 'channels', { device_id: 1, number: 2 ** 31 }), 'invalid', 'number');
      });

      it('values are parameters: quotes and injection attempts are stored as text', async () => {
        const evil = `x'); DROP TABLE users; --"`;
        const u = await store.create('acme', 'users', { username: evil, attributes: { "a'b": "c'd" } });
        assert.deepEqual([u.username, u.attributes], [evil, { "a'b": "c'd" }]);
        assert.equal((await store.list('acme', 'users', { filter: { username: evil } })).items.length, 1);
        await rejectsWith(store.create('acme', 'users', { username: 'y', 'username" = 1; --': 'z' }), 'invalid');
      });

      it('no entity returns a secret column', () => {
        for (const name of BUSINESS_ENTITIES) {
          const d = describeEntity(name)!;
          for (const f of SECRET_FIELDS) assert.ok(!d.returned.includes(f), `${name} returns ${f}`);
          assert.ok(!d.create.includes('tenant_id') && !d.update.includes('tenant_id') && !d.update.includes('id'));
        }
        assert.deepEqual(describeEntity('device_keys')!.update, ['valid_from', 'valid_until']);
        assert.equal(describeEntity('nope'), undefined);
      });
    });

    describe('restartDevice', () => {
      it('ends every open sink of the device and opens a new one per sink, in one transaction', async () => {
        const d = await device('acme');
        const other = await device('acme');
        const c0 = await store.create('acme', 'channels', { device_id: d.id, number: 0 });
        const c1 = await store.create('acme', 'channels', { device_id: d.id, number: 1 });
        const oc = await store.create('acme', 'channels', { device_id: other.id, number: 0 });
        const s1 = await store.create('acme', 'sensors', { channel_id: c0.id, kind: 'temp', quantities: ['t'] });
        const s2 = await store.create('acme', 'sensors', { channel_id: c1.id, position: 2, kind: 'gps', quantities: ['lat', 'lon'] });
        const closed = await store.create('acme', 'sensors', { channel_id: c1.id, position: 3, ended_at: new Date(Date.now() + 1000) });
        const untouched = await store.create('acme', 'sensors', { channel_id: oc.id });

        const fresh = await store.restartDevice('acme', d.id as number);
        assert.equal(fresh.length, 2);
        assert.ok(!fresh.includes(s1.id as number) && !fresh.includes(s2.id as number));
        const [n1, n2] = await Promise.all(fresh.map((id) => store.read('acme', 'sensors', id)));
        assert.deepEqual([n1.channel_id, n1.position, n1.kind, n1.quantities, n1.ended_at], [c0.id, 0, 'temp', ['t'], null]);
        assert.deepEqual([n2.channel_id, n2.position, n2.kind, n2.quantities, n2.ended_at], [c1.id, 2, 'gps', ['lat', 'lon'], null]);
        for (const old of [s1, s2]) assert.ok((await store.read('acme', 'sensors', old.id as number)).ended_at instanceof Date);
        assert.deepEqual((await store.read('acme', 'sensors', closed.id as number)).ended_at, closed.ended_at);
        assert.equal((await store.read('acme', 'sensors', untouched.id as number)).ended_at, null);
        const open = await store.list('acme', 'sensors', { filter: { device_id: d.id as number, ended_at: null } });
        assert.deepEqual(
          open.items.map((r) => r.id),
          fresh,
        );

        // Restarting again rolls the sinks once more; a device without open sinks gets none.
        const again = await store.restartDevice('acme', d.id as number);
        assert.equal(again.length, 2);
        assert.ok(again.every((id) => !fresh.includes(id)));
        const empty = await device('acme');
        assert.deepEqual(await store.restartDevice('acme', empty.id as number), []);
        await rejectsWith(store.restartDevice('acme', 999_999), 'not-found');
        await rejectsWith(store.restartDevice('acme', 'x'), 'invalid', 'id');
      });
    });
  });
}
