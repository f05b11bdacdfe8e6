/** The demo API key of a fresh installation: created once, for tenant 'default', and it works. */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { authenticateApiKey } from '../../nodes/core/auth/api-key-store';
import { provisionDemoApiKey } from '../../nodes/core/devices/provision';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';

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
