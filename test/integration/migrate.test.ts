/** Schema migrations on PostgreSQL 15 and PGlite: apply, idempotence, races, and every table in use. */
import * as assert from 'node:assert/strict';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { checksum, migrate, MigrationError, type Migration } from '../../nodes/core/db/migrate';
import { MIGRATIONS } from '../../nodes/core/db/migrations';
import { freshDatabase } from '../support/servers';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';
import { BUSINESS_ENTITIES } from '../../nodes/core/stores/business-entities';

const TABLES = [
  'api_keys',
  'api_usage',
  'applications',
  'channels',
  'config',
  'consumers',
  'dead_letters',
  'device_commands',
  'device_keys',
  'device_sessions',
  'devices',
  'ftp_targets',
  'gateway_instances',
  'inbox',
  'outbox',
  'pull_sources',
  'rate_buckets',
  'readings',
  'rollups',
  'schedule_runs',
  'schema_migrations',
  'sensors',
  'tenants',
  'udp_tokens',
  'user_applications',
  'users',
  'webhook_deliveries',
  'webhook_events',
  'webhook_receipts',
  'webhook_subscriptions',
];

const code = (expected: string) => (err: { code?: string }) => err.code === expected;

for (const engine of ENGINES) {
  describe(`migrations on ${engine.name}`, function () {
    let db: SqlClient;
    let first: Awaited<ReturnType<typeof migrate>>;

    before(async function () {
      this.timeout(OPEN_TIMEOUT_MS);
      db = await engine.open();
      first = await migrate(db);
    });
    after(async () => db?.close());

    it('applies every migration to an empty database and records each one', async () => {
      assert.deepEqual(
        first.applied,
        MIGRATIONS.map((m) => m.version),
      );
      assert.equal(first.version, MIGRATIONS[MIGRATIONS.length - 1].version);
      const { rows } = await db.query<{ version: number; name: string; checksum: string }>(
        'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
      );
      assert.deepEqual(
        rows,
        MIGRATIONS.map((m) => ({ version: m.version, name: m.name, checksum: checksum(m.sql) })),
      );
      const tables = await db.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
      );
      assert.deepEqual(
        tables.rows.map((r) => r.table_name),
        TABLES,
      );
    });

    it('does nothing when run again', async () => {
      const again = await migrate(db);
      assert.deepEqual(again, { applied: [], version: first.version });
      assert.equal((await db.query('SELECT * FROM schema_migrations')).rowCount, MIGRATIONS.length);
    });

    it('rolls back a failing migration whole and records nothing for it', async () => {
      const broken: Migration = { version: 900, name: 'broken', sql: 'CREATE TABLE half_done (x int); SELECT no_such_function();' };
      await assert.rejects(migrate(db, [...MIGRATIONS, broken]), code('42883'));
      const left = await db.query(`SELECT 1 FROM information_schema.tables WHERE table_name = 'half_done'`);
      assert.equal(left.rowCount, 0);
      assert.equal((await db.query('SELECT * FROM schema_migrations WHERE version = 900')).rowCount, 0);
    });

    it('refuses to start when an applied migration was edited', async () => {
      const edited = MIGRATIONS.map((m, i) => (i === 0 ? { ...m, sql: m.sql + '\n-- edited' } : m));
      await assert.rejects(migrate(db, edited), (err) => err instanceof MigrationError && /changed after it was applied/.test(err.message));
    });

    it('stores and reads back a row in every table, tenant-scoped', async () => {
      await smoke(db);
    });

    it('004 removes the readings a repeat stored twice, keeping the first, and then stores each (tenant, name, t, unit) once', async function () {
      this.timeout(OPEN_TIMEOUT_MS);
      const old = await engine.open();
      try {
        await migrate(
          old,
          MIGRATIONS.filter((m) => m.version < 4),
        );
        // ids given explicitly: the lowest of each key is the first stored.
        await old.query(
          `INSERT INTO readings (id, tenant_id, name, t, v) VALUES
             (10, 'a', 'dev/t', to_timestamp(1000), 1), (11, 'a', 'dev/t', to_timestamp(1000), 2), (5, 'a', 'dev/t', to_timestamp(1000), 3),
             (12, 'a', 'dev/t', to_timestamp(1001), 4), (13, 'b', 'dev/t', to_timestamp(1000), 5), (14, 'a', 'dev/u', to_timestamp(1000), 6),
             (15, 'b', 'dev/t', to_timestamp(1000), 7), (16, 'a', 'dev/t', to_timestamp(1000.000001), 8)`,
        );
        // One name, one time, other units (RFC 8428 5.1.3): other readings, not repeats.
        await old.query(
          `INSERT INTO readings (id, tenant_id, name, t, v, u) VALUES
             (17, 'a', 'dev/t', to_timestamp(1000), 60.1, 'lat'), (18, 'a', 'dev/t', to_timestamp(1000), 24.3, 'lon'),
             (19, 'a', 'dev/t', to_timestamp(1000), 60.2, 'lat')`,
        );
        assert.deepEqual(
          (
            await migrate(
              old,
              MIGRATIONS.filter((m) => m.version <= 4),
            )
          ).applied,
          [4],
        );
        const { rows } = await old.query<{ id: number; v: number }>('SELECT id, v FROM readings ORDER BY id');
        assert.deepEqual(rows, [
          { id: 5, v: 3 },
          { id: 12, v: 4 },
          { id: 13, v: 5 },
          { id: 14, v: 6 },
          { id: 16, v: 8 },
          { id: 17, v: 60.1 },
          { id: 18, v: 24.3 },
        ]);
        await assert.rejects(old.query(`INSERT INTO readings (tenant_id, name, t, v) VALUES ('a', 'dev/t', to_timestamp(1000), 9)`), code('23505'));
        await assert.rejects(old.query(`INSERT INTO readings (tenant_id, name, t, v, u) VALUES ('a', 'dev/t', to_timestamp(1000), 9, 'lat')`), code('23505'));
        const indexes = await old.query<{ indexname: string; indexdef: string }>(
          `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'readings' ORDER BY indexname`,
        );
        assert.deepEqual(
          indexes.rows.map((r) => r.indexname),
          ['readings_key', 'readings_t', 'readings_tenant_t'],
        );
        assert.match(indexes.rows[0].indexdef, /UNIQUE INDEX readings_key ON public\.readings USING btree \(tenant_id, name, t, COALESCE\(u, ''::text\)\)/);
        const { rows: options } = await old.query<{ reloptions: string[] }>(`SELECT reloptions FROM pg_class WHERE relname = 'rollups'`);
        assert.deepEqual(options[0].reloptions, ['fillfactor=50']);
      } finally {
        await old.close();
      }
    });
  });
}

describe('migrations racing on one PostgreSQL', function () {
  this.timeout(30_000);

  it('several instances migrating at once apply each migration exactly once', async () => {
    const url = await freshDatabase();
    // A slow extra migration widens the window; applied twice, its CREATE TABLE would fail.
    const slow: Migration = { version: 901, name: 'slow', sql: 'SELECT pg_sleep(0.2); CREATE TABLE race_marker (x int); INSERT INTO race_marker VALUES (1);' };
    const list = [...MIGRATIONS, slow];
    const instances = await Promise.all(Array.from({ length: 5 }, () => openSql({ connectionString: url, poolSize: 2 })));
    try {
      const results = await Promise.all(instances.map((db) => migrate(db, list)));
      const applied = results.flatMap((r) => r.applied).sort((a, b) => a - b);
      assert.deepEqual(
        applied,
        list.map((m) => m.version),
        'each version applied by exactly one instance',
      );
      for (const r of results) assert.equal(r.version, 901);
      const db = instances[0];
      assert.equal((await db.query('SELECT * FROM schema_migrations')).rowCount, list.length);
      assert.equal((await db.query('SELECT * FROM race_marker')).rowCount, 1);
      assert.equal((await db.query(`SELECT * FROM tenants WHERE id = 'default'`)).rowCount, 1);
    } finally {
      await Promise.all(instances.map((db) => db.close()));
    }
  });
});

/** One insert and select per table, plus the constraints the schema promises. */
async function smoke(db: SqlClient): Promise<void> {
  const one = async <T = Record<string, unknown>>(text: string, params: unknown[] = []) => {
    const { rows } = await db.query<T>(text, params);
    assert.equal(rows.length, 1, text);
    return rows[0];
  };
  const T = 'acme';

  await one(`INSERT INTO tenants (id, name) VALUES ($1, 'ACME') RETURNING id`, [T]);
  await one(`INSERT INTO config (tenant_id, key, value) VALUES ($1, 'xmpp', $2) RETURNING key`, [T, JSON.stringify({ jid: 'proxy@acme' })]);
  assert.deepEqual((await one<{ value: unknown }>(`SELECT value FROM config WHERE tenant_id = $1 AND key = 'xmpp'`, [T])).value, { jid: 'proxy@acme' });

  const user = await one<{ id: number }>(`INSERT INTO users (tenant_id, username, federation_id) VALUES ($1, 'alice', 'alice@fed') RETURNING id`, [T]);
  assert.equal(typeof user.id, 'number');
  await assert.rejects(db.query(`INSERT INTO users (tenant_id, username) VALUES ($1, 'alice')`, [T]), code('23505'));
  // 010: an incoming Sen1Message names its user by federation_id, so it is unique per tenant.
  await assert.rejects(db.query(`INSERT INTO users (tenant_id, username, federation_id) VALUES ($1, 'alice2', 'alice@fed')`, [T]), code('23505'));

  const device = await one<{ id: number }>(`INSERT INTO devices (tenant_id, serial, model) VALUES ($1, '951FF00000340', 'ECOLOG') RETURNING id`, [T]);
  // Serial numbers name devices before their tenant is known: unique across tenants.
  await assert.rejects(db.query(`INSERT INTO devices (tenant_id, serial) VALUES ('default', '951FF00000340')`), code('23505'));

  const key = (slot: number) => [T, device.id, slot, Buffer.alloc(16, slot), 4096, Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
  const keySql = `INSERT INTO device_keys (tenant_id, device_id, slot, salt, iterations, stored_key, server_key, valid_until)
                  VALUES ($1, $2, $3, $4, $5, $6, $7, now() + interval '1 day') RETURNING slot`;
  await one(keySql, key(1));
  await one(keySql, key(2));
  await assert.rejects(db.query(keySql, key(3)), code('23514')); // a third key: no slot for it
  await assert.rejects(db.query(keySql, key(1)), code('23505')); // a slot holds one key
  const k = await one<{ salt: Buffer; iterations: number }>(`SELECT salt, iterations FROM device_keys WHERE device_id = $1 AND slot = 1`, [device.id]);
  assert.deepEqual(k.salt, Buffer.alloc(16, 1));
  // Tenant-scoped references: a channel of tenant 'default' cannot point at acme's device.
  await assert.rejects(db.query(`INSERT INTO channels (tenant_id, device_id, number) VALUES ('default', $1, 9)`, [device.id]), code('23503'));

  const channel = await one<{ id: number }>(`INSERT INTO channels (tenant_id, device_id, number, interval_s) VALUES ($1, $2, 0, 60) RETURNING id`, [
    T,
    device.id,
  ]);
  const sensorSql = `INSERT INTO sensors (tenant_id, device_id, channel_id, kind, quantities) VALUES ($1, $2, $3, 'rH', $4) RETURNING id`;
  const run1 = await one<{ id: number }>(sensorSql, [T, device.id, channel.id, ['humidity', 'temperature']]);
  // One open data sink per channel position; a restart ends it and opens a new sensor id.
  await assert.rejects(db.query(sensorSql, [T, device.id, channel.id, []]), code('23505'));
  await db.query(`UPDATE sensors SET ended_at = now() WHERE id = $1`, [run1.id]);
  const run2 = await one<{ id: number }>(sensorSql, [T, device.id, channel.id, ['humidity', 'temperature']]);
  assert.notEqual(run2.id, run1.id);
  const open = await one<{ id: number; quantities: string[] }>(`SELECT id, quantities FROM sensors WHERE channel_id = $1 AND ended_at IS NULL`, [channel.id]);
  assert.deepEqual(open, { id: run2.id, quantities: ['humidity', 'temperature'] });

  const app = await one<{ id: number }>(`INSERT INTO applications (tenant_id, name, jid) VALUES ($1, 'crm', 'crm@fed.example') RETURNING id`, [T]);
  const ua = await one<{ id: number }>(
    `INSERT INTO user_applications (tenant_id, user_id, application_id, login, password, secret_ref) VALUES ($1, $2, $3, 'alice', 'pw', NULL) RETURNING id`,
    [T, user.id, app.id],
  );
  await assert.rejects(
    db.query(`INSERT INTO user_applications (tenant_id, user_id, application_id) VALUES ($1, $2, $3)`, [T, user.id, app.id]),
    code('23505'), // one login per user and application
  );
  const consumer = await one<{ mapping: unknown }>(
    `INSERT INTO consumers (tenant_id, user_id, user_application_id, target_application_id, source, mapping) VALUES ($1, $2, $3, $4, $5, $6) RETURNING mapping`,
    [T, user.id, ua.id, app.id, JSON.stringify({ device: '951FF00000340', name: 'temperature' }), JSON.stringify({ '5368': 'room-1' })],
  );
  assert.deepEqual(consumer.mapping, { '5368': 'room-1' });

  await one(`INSERT INTO api_keys (tenant_id, prefix, hash, scopes, user_id) VALUES ($1, 'cfx_abcd', $2, $3, $4) RETURNING id`, [
    T,
    Buffer.alloc(32, 7),
    ['read', 'write'],
    user.id,
  ]);
  assert.deepEqual((await one<{ scopes: string[] }>(`SELECT scopes FROM api_keys WHERE prefix = 'cfx_abcd' AND revoked_at IS NULL`)).scopes, ['read', 'write']);

  await one(
    `INSERT INTO webhook_subscriptions (tenant_id, url, events, username, secret_ref) VALUES ($1, 'https://hooks.example/in', $2, 'hook', 'cred:hook') RETURNING id`,
    [T, ['measurement.new']],
  );
  await assert.rejects(db.query(`INSERT INTO webhook_subscriptions (tenant_id, url) VALUES ($1, 'file:///etc/passwd')`, [T]), code('23514'));

  await one(`INSERT INTO ftp_targets (tenant_id, name, host, username, secret_ref) VALUES ($1, 'archive', 'ftp.example', 'up', 'cred:ftp') RETURNING port`, [
    T,
  ]);
  assert.equal((await one<{ port: number; protocol: string }>(`SELECT port, protocol FROM ftp_targets WHERE tenant_id = $1`, [T])).port, 21);
  // 011: a client's target and a user's own; one of each per tenant at most.
  const clientTarget = await one<{ naming: string; max_connections: number }>(
    `INSERT INTO ftp_targets (tenant_id, name, client, host, username, password, archive) VALUES ($1, 'd7', 'dealer-7', 'ftp.d7', 'up', 'pw', '{vin}.zip') RETURNING naming, max_connections`,
    [T],
  );
  assert.deepEqual([clientTarget.naming, clientTarget.max_connections], ['{vin}_{nn:02}.{ext}', 2]);
  await assert.rejects(
    db.query(`INSERT INTO ftp_targets (tenant_id, name, client, host, username) VALUES ($1, 'd7b', 'dealer-7', 'h', 'u')`, [T]),
    code('23505'),
  );
  await one(`INSERT INTO ftp_targets (tenant_id, name, client, user_ref, host, username) VALUES ($1, 'ana', 'dealer-7', 'ana', 'h', 'u') RETURNING id`, [T]);
  await assert.rejects(
    db.query(`INSERT INTO ftp_targets (tenant_id, name, user_ref, host, username) VALUES ($1, 'ana2', 'ana', 'h', 'u')`, [T]),
    code('23505'),
  );
  await assert.rejects(
    db.query(`INSERT INTO ftp_targets (tenant_id, name, host, username, max_connections) VALUES ($1, 'big', 'h', 'u', 99)`, [T]),
    code('23514'),
  );

  // 012: one body per tenant and event id.
  const storeBody = `INSERT INTO webhook_events (tenant_id, event_id, event_type, body) VALUES ($1, 'evt_1', 'device.created', $2) ON CONFLICT DO NOTHING`;
  assert.equal((await db.query(storeBody, [T, '{"id":"evt_1"}'])).rowCount, 1);
  assert.equal((await db.query(storeBody, [T, '{"id":"evt_1","again":true}'])).rowCount, 0, 'same event: kept once');

  for (const box of ['inbox', 'outbox']) {
    const enqueue = `INSERT INTO ${box} (tenant_id, message_id, payload, headers) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, queue, message_id) DO NOTHING`;
    assert.equal((await db.query(enqueue, [T, 'm-1', JSON.stringify([{ n: 'x', v: 1 }]), JSON.stringify({ to: 'crm@fed.example' })])).rowCount, 1);
    assert.equal((await db.query(enqueue, [T, 'm-1', JSON.stringify([{ n: 'x', v: 2 }]), '{}'])).rowCount, 0, 'same message id: stored once');
    await db.query(enqueue, [T, 'm-2', '[]', '{}']);
    const claimed = await db.transaction((tx) =>
      tx.query<{ id: number; message_id: string; payload: unknown; attempts: number }>(
        `UPDATE ${box} SET lease_until = now() + interval '30 seconds', claimed_by = 'test', attempts = attempts + 1
         WHERE id IN (SELECT id FROM ${box}
                      WHERE queue = 'default' AND available_at <= now() AND (lease_until IS NULL OR lease_until < now())
                      ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED)
         RETURNING id, message_id, payload, attempts`,
      ),
    );
    assert.deepEqual(claimed.rows.map((r) => [r.message_id, r.attempts]).sort(), [
      ['m-1', 1],
      ['m-2', 1],
    ]);
    assert.deepEqual(claimed.rows.find((r) => r.message_id === 'm-1')?.payload, [{ n: 'x', v: 1 }]);
    const again = await db.query(`SELECT id FROM ${box} WHERE available_at <= now() AND (lease_until IS NULL OR lease_until < now())`);
    assert.equal(again.rowCount, 0, 'leased messages are not claimable');
  }

  await one(
    `INSERT INTO dead_letters (box, original_id, tenant_id, queue, message_id, payload, attempts, last_error, created_at)
     SELECT 'outbox', id, tenant_id, queue, message_id, payload, attempts, 'gave up', created_at FROM outbox WHERE message_id = 'm-1' RETURNING id`,
  );
  assert.equal((await one<{ last_error: string }>(`SELECT last_error FROM dead_letters WHERE tenant_id = $1`, [T])).last_error, 'gave up');

  const t0 = 1_700_000_000.123456;
  await db.query(
    `INSERT INTO readings (tenant_id, name, t, v, vs, vb, vd, s, u) VALUES
       ($1, 'dev1/temp/t', to_timestamp($2), 21.5, NULL, NULL, NULL, NULL, 'Cel'),
       ($1, 'dev1/door/open', to_timestamp($2), NULL, NULL, true, NULL, NULL, NULL),
       ($1, 'dev1/log/msg', to_timestamp($2 + 1), NULL, 'LogArrived', NULL, NULL, NULL, NULL),
       ($1, 'dev1/raw/blob', to_timestamp($2 + 2), NULL, NULL, NULL, 'AQID', NULL, NULL),
       ($1, 'dev2/temp/t', to_timestamp($2), 19, NULL, NULL, NULL, 42.5, 'Cel'),
       ('default', 'dev1/temp/t', to_timestamp($2), 99, NULL, NULL, NULL, NULL, 'Cel')`,
    [T, t0],
  );
  await assert.rejects(db.query(`INSERT INTO readings (tenant_id, name, t, v, vs) VALUES ($1, 'bad', now(), 1, 'two values')`, [T]), code('23514'));
  // A reading is stored once: (tenant, name, t, unit) is its key.
  await assert.rejects(
    db.query(`INSERT INTO readings (tenant_id, name, t, v, u) VALUES ($1, 'dev1/temp/t', to_timestamp($2), 22, 'Cel')`, [T, t0]),
    code('23505'),
  );
  const prefix = await db.query<{ name: string; secs: number; v: number | null; vb: boolean | null; vs: string | null; vd: string | null }>(
    `SELECT name, extract(epoch FROM t)::float8 AS secs, v, vb, vs, vd FROM readings
     WHERE tenant_id = $1 AND name LIKE $2 AND t >= to_timestamp($3) ORDER BY name, t`,
    [T, 'dev1/%', t0],
  );
  assert.deepEqual(
    prefix.rows.map((r) => r.name),
    ['dev1/door/open', 'dev1/log/msg', 'dev1/raw/blob', 'dev1/temp/t'],
  );
  const temp = prefix.rows[3];
  assert.equal(temp.v, 21.5);
  assert.ok(Math.abs(temp.secs - t0) < 1e-6, `microsecond time: ${temp.secs}`);
  assert.equal(prefix.rows[0].vb, true);
  assert.equal(prefix.rows[2].vd, 'AQID');

  const upsert = `INSERT INTO rollups (tenant_id, name, size, bucket, count, min, max, sum, last, last_t)
                  VALUES ($1, $2, 'hour', date_trunc('hour', to_timestamp($3)), 1, $4, $4, $4, $4, to_timestamp($3))
                  ON CONFLICT (tenant_id, name, size, bucket) DO UPDATE SET
                    count = rollups.count + 1, min = least(rollups.min, excluded.min), max = greatest(rollups.max, excluded.max),
                    sum = rollups.sum + excluded.sum,
                    last = CASE WHEN excluded.last_t >= rollups.last_t THEN excluded.last ELSE rollups.last END,
                    last_t = greatest(rollups.last_t, excluded.last_t)`;
  await db.query(upsert, [T, 'dev1/temp/t', t0, 20]);
  await db.query(upsert, [T, 'dev1/temp/t', t0 + 60, 24]);
  await db.query(upsert, [T, 'dev1/temp/t', t0 - 60, 18]);
  const r = await one<{ count: number; min: number; max: number; sum: number; last: number }>(
    `SELECT count, min, max, sum, last FROM rollups WHERE tenant_id = $1 AND name = 'dev1/temp/t' AND size = 'hour'`,
    [T],
  );
  assert.deepEqual(r, { count: 3, min: 18, max: 24, sum: 62, last: 24 });
  await assert.rejects(db.query(`INSERT INTO rollups (tenant_id, name, size, bucket) VALUES ($1, 'x', 'week', now())`, [T]), code('23514'));

  // Deleting a tenant takes its business rows with it.
  await db.query(`DELETE FROM tenants WHERE id = $1`, [T]);
  for (const table of BUSINESS_ENTITIES.filter((e) => e !== 'tenants')) {
    assert.equal((await db.query(`SELECT 1 FROM ${table} WHERE tenant_id = $1`, [T])).rowCount, 0, table);
  }
}
