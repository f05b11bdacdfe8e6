/** The demo API key of a fresh installation: created once, for tenant 'default', and it works. */
import * as assert from 'node:assert/strict';
import { migrate } from '../../nodes/core/db/migrate';
import { authenticateApiKey } from '../../nodes/core/auth/api-key-store';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { provisionDemoApiKey, provisionDemoDevice } from '../../nodes/core/devices/provision';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';
import { freshDatabase } from '../support/servers';

for (const engine of ENGINES) {
  describe(`demo API key on ${engine.name}`, function () {
    let db: SqlClient;

    before(async function () {
      this.timeout(OPEN_TIMEOUT_MS);
      db = await engine.open();
      await migrate(db);
    });
    after(async () => db?.close());

    it('is created on a database with no key, authenticates for tenant default, and is not created again', async () => {
      const key = await provisionDemoApiKey(db);
      assert.ok(key, 'no key was created');
      const identity = await authenticateApiKey(db, key);
      assert.equal(identity?.tenant, 'default');
      assert.deepEqual(identity?.scopes, []);
      assert.equal(await provisionDemoApiKey(db), undefined);
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys');
      assert.equal(rows[0].n, 1);
    });
  });
}

describe('demo key and device with two instances starting together on one PostgreSQL', function () {
  this.timeout(120_000);
  const clients: SqlClient[] = [];
  after(async () => Promise.all(clients.map((c) => c.close())));

  it('creates one API key and one device, not one per instance', async () => {
    const url = await freshDatabase();
    for (let i = 0; i < 2; i++) clients.push(await openSql({ connectionString: url }));
    await migrate(clients[0]);
    await Promise.all(clients.map((c) => c.query('SELECT 1'))); // both connected: neither waits on its connect
    const keys = await Promise.all(clients.map((c) => provisionDemoApiKey(c)));
    const devices = await Promise.all(clients.map((c) => provisionDemoDevice(c)));
    assert.equal(keys.filter((k) => k !== undefined).length, 1, 'each instance created a key');
    assert.equal(devices.filter((d) => d !== undefined).length, 1, 'each instance created a device');
    const { rows } = await clients[1].query<{ keys: number; devices: number }>(
      'SELECT (SELECT count(*)::int FROM api_keys) AS keys, (SELECT count(*)::int FROM devices) AS devices',
    );
    assert.deepEqual(rows[0], { keys: 1, devices: 1 });
  });
});
