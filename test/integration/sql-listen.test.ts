/**
 * SqlClient.listen and notify (nodes/core/db/sql.ts, listen.ts) on both engines: a NOTIFY reaches
 * the channel's subscribers and no one else's; stopping one subscriber leaves the others; bad
 * channel names and payloads over the limit are refused clearly; a transaction handle refuses to
 * listen. On PostgreSQL the LISTEN connection is not the pool's: when the server ends it, the client
 * reconnects, LISTENs again, tells its subscribers (onReconnect), and notifications flow again;
 * closing the client ends that connection.
 */
import { strict as assert } from 'node:assert';
import { Client } from 'pg';
import { notify, openSql, type SqlClient } from '../../nodes/core/db/sql';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';

describe('SqlClient listen and notify', function () {
  this.timeout(OPEN_TIMEOUT_MS);

  for (const engine of ENGINES) {
    describe(engine.name, () => {
      let db: SqlClient;
      before(async () => (db = await engine.open()));
      after(async () => db?.close());

      it('delivers a notification to the subscribers of its channel only, until they stop', async () => {
        const a: string[] = [];
        const a2: string[] = [];
        const b: string[] = [];
        const stopA = await db.listen('conflux_test_a', (p) => a.push(p));
        const stopA2 = await db.listen('conflux_test_a', (p) => a2.push(p));
        const stopB = await db.listen('conflux_test_b', (p) => b.push(p));
        await notify(db, 'conflux_test_a', '{"k":"one"}');
        await notify(db, 'conflux_test_b', 'two');
        await until('both notifications arrive', () => a.length === 1 && a2.length === 1 && b.length === 1);
        assert.deepEqual([a, a2, b], [['{"k":"one"}'], ['{"k":"one"}'], ['two']]);

        await stopA();
        await stopA(); // twice is harmless
        await notify(db, 'conflux_test_a', 'three');
        await until('the remaining subscriber gets it', () => a2.length === 2);
        assert.deepEqual(a, ['{"k":"one"}'], 'a stopped subscriber hears nothing');
        await stopA2();
        await stopB();
        // Sent in one transaction: delivered at its commit, in order.
        const heard: string[] = [];
        const stop = await db.listen('conflux_test_c', (p) => heard.push(p));
        await db.transaction(async (tx) => {
          await notify(tx, 'conflux_test_c', '1');
          await notify(tx, 'conflux_test_c', '2');
        });
        await until('the committed notifications arrive', () => heard.length === 2);
        assert.deepEqual(heard, ['1', '2']);
        await stop();
      });

      it('refuses channel names that would need quoting and payloads over the limit, and listening in a transaction', async () => {
        await assert.rejects(
          db.listen('Conflux-Test', () => undefined),
          /not a channel name/,
        );
        await assert.rejects(notify(db, 'conflux test', 'x'), /not a channel name/);
        await assert.rejects(notify(db, 'conflux_test_a', 'x'.repeat(8000)), /at most 7900 bytes; this one has 8000/);
        await assert.rejects(
          db.transaction((tx) => tx.listen('conflux_test_a', () => undefined)),
          /listen on the outer SqlClient/,
        );
      });
    });
  }

  describe('PostgreSQL: the LISTEN connection', () => {
    let url: string;
    let db: SqlClient;
    let admin: Client;
    const listeners = async () =>
      (
        await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'conflux-listen'`)
      ).rows.map((r) => r.pid);

    before(async () => {
      url = await freshDatabase();
      db = await openSql({ connectionString: url, poolSize: 2 });
      admin = new Client({ connectionString: url });
      await admin.connect();
    });
    after(async () => {
      await db?.close();
      await admin?.end();
    });

    it('reconnects after the server ends it, tells its subscribers, and hears notifications again', async () => {
      const heard: string[] = [];
      let reconnected = 0;
      const stop = await db.listen(
        'conflux_test_r',
        (p) => heard.push(p),
        () => reconnected++,
      );
      const [pid] = await listeners();
      assert.ok(pid, 'a connection of its own, named conflux-listen');
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await until('the subscriber is told of the reconnection', () => reconnected === 1);
      const now = await listeners();
      assert.equal(now.length, 1);
      assert.notEqual(now[0], pid, 'a new connection');
      await admin.query(`NOTIFY conflux_test_r, 'after'`);
      await until('a notification after the reconnection arrives', () => heard.includes('after'));
      await stop();
      await until('with no channel left, its connection closes', async () => (await listeners()).length === 0);
    });

    it('closing the client ends its LISTEN connection', async () => {
      const other = await openSql({ connectionString: url, poolSize: 1 });
      await other.listen('conflux_test_z', () => undefined);
      await until('listening', async () => (await listeners()).length === 1);
      await other.close();
      await until('the connection is gone', async () => (await listeners()).length === 0);
    });
  });
});
