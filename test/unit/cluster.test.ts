/**
 * GatewayCluster (nodes/core/devices/cluster.ts) without a database: what it does with what
 * arrives on its channel. Anything that is not one of its messages — an operator's NOTIFY, a
 * message missing a field — is ignored without a throw; a "drop" closes this instance's session of
 * the device only when it names that very session (a newer one here stays); "flush" for a device
 * not here makes the instance delete its stale row; "sent" and "done" reach the router's handlers.
 * The real LISTEN/NOTIFY path is test/integration/commands-cluster.test.ts.
 */
import { strict as assert } from 'node:assert';
import type { QueryResult, SqlClient } from '../../nodes/core/db/sql';
import { GatewayCluster, type PeerHandlers } from '../../nodes/core/devices/cluster';
import { SessionRegistry, type Session } from '../../nodes/core/devices/sessions';
import { until } from '../support/wait';

interface Fake {
  sql: SqlClient;
  queries: Array<{ text: string; params: readonly unknown[] }>;
  deliver(payload: string): void;
}

/** A SqlClient that records statements and answers them emptily; listen keeps the callback. */
function fakeSql(): Fake {
  const queries: Fake['queries'] = [];
  let onPayload: ((p: string) => void) | undefined;
  const sql: SqlClient = {
    kind: 'pglite',
    query: async <T>(text: string, params: readonly unknown[] = []): Promise<QueryResult<T>> => {
      queries.push({ text, params });
      const rows = /RETURNING \(xmax = 0\)/.test(text) ? [{ created: true }] : [];
      return { rows: rows as T[], rowCount: rows.length };
    },
    exec: async () => undefined,
    transaction: () => Promise.reject(new Error('not here')),
    listen: async (_channel, callback) => {
      onPayload = callback;
      return async () => undefined;
    },
    close: async () => undefined,
  };
  return { sql, queries, deliver: (p) => onPayload?.(p) };
}

function session(serial: string): Session & { closedWith?: string } {
  const s: Session & { closedWith?: string } = {
    device: { tenant: 'default', serial, id: 1 },
    transport: 'tcp',
    send: async () => undefined,
    close: (reason) => void (s.closedWith = reason),
  };
  return s;
}

describe('GatewayCluster: messages from other instances', () => {
  let cluster: GatewayCluster | undefined;
  afterEach(async () => cluster?.close());

  it('ignores what is not its message, closes only the session a drop names, and passes sent/done/flush to the router', async () => {
    const fake = fakeSql();
    const sessions = new SessionRegistry(10);
    cluster = new GatewayCluster({ sessions, sql: async () => fake.sql, heartbeatMs: 60_000 });
    const calls: string[] = [];
    const handlers: PeerHandlers = {
      flushDevice: (tenant, serial) => (calls.push(`flush ${serial}`), sessions.get(tenant, serial) !== undefined),
      sent: (id) => void calls.push(`sent ${id}`),
      done: (id) => void calls.push(`done ${id}`),
      recheck: () => undefined,
    };
    cluster.attach(handlers);
    const first = session('SN-1');
    sessions.add(first);
    const upsert = () => fake.queries.find((q) => /INSERT INTO device_sessions/.test(q.text));
    await until("the session's row is written", () => upsert() !== undefined);
    const [firstId] = upsert()!.params[3] as string[];

    for (const junk of ['not json', 'null', '42', '{"k":"drop"}', '{"k":"flush","t":1}', '{"k":"sent"}', '{"k":"unknown","id":"x"}']) fake.deliver(junk);
    assert.deepEqual(calls, []);
    assert.equal(first.closedWith, undefined);

    // A newer session here, then a drop naming the older one: the newer one stays.
    const second = session('SN-1');
    sessions.add(second);
    fake.deliver(JSON.stringify({ k: 'drop', t: 'default', s: 'SN-1', sid: firstId }));
    assert.equal(second.closedWith, undefined);
    assert.equal(sessions.get('default', 'SN-1'), second);
    await until('the newer session is written', () => fake.queries.filter((q) => /INSERT INTO device_sessions/.test(q.text)).length === 2);
    const secondId = (fake.queries.filter((q) => /INSERT INTO device_sessions/.test(q.text))[1].params[3] as string[])[0];
    assert.notEqual(secondId, firstId);
    fake.deliver(JSON.stringify({ k: 'drop', t: 'default', s: 'SN-1', sid: secondId }));
    assert.equal(second.closedWith, 'replaced by a newer session of this device on another instance');
    assert.equal(sessions.get('default', 'SN-1'), undefined);

    fake.deliver(JSON.stringify({ k: 'sent', id: 'c-1' }));
    fake.deliver(JSON.stringify({ k: 'done', id: 'c-1' }));
    fake.deliver(JSON.stringify({ k: 'flush', t: 'default', s: 'SN-9' }));
    assert.deepEqual(calls, ['sent c-1', 'done c-1', 'flush SN-9']);
    await until('a flush for a device not here deletes its stale row', () =>
      fake.queries.some((q) => /DELETE FROM device_sessions/.test(q.text) && (q.params[2] as string[]).includes('SN-9')),
    );
  });
});
