/**
 * Draining one mailbox from several places at once, on the real PostgreSQL server:
 *  - two drainers (two pools, several workers each) share 10,000 messages: each delivered exactly once;
 *  - a drainer process killed with SIGKILL mid-batch: a new drainer finishes the box, every message
 *    is delivered at least once, and the only duplicates are messages of the batch the killed one held.
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { Mailbox } from '../../nodes/core/mailbox/mailbox';
import { freshDatabase } from '../support/servers';
import { elapse } from '../support/wait';

const TOTAL = 10_000;
const ids = (count: number, prefix = 'm') => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(5, '0')}`);

describe('mailbox drained concurrently on PostgreSQL', function () {
  let url: string;
  let admin: SqlClient;

  before(async function () {
    this.timeout(30_000);
    url = await freshDatabase();
    admin = await openSql({ connectionString: url, poolSize: 2 });
    await migrate(admin);
    await admin.exec(`CREATE TABLE deliveries (
      message_id text NOT NULL,
      worker     text NOT NULL,
      at         timestamptz NOT NULL DEFAULT clock_timestamp()
    )`);
  });
  after(async () => admin?.close());

  it(`two drainers on two pools deliver ${TOTAL.toLocaleString('en')} messages exactly once`, async function () {
    this.timeout(120_000);
    const queue = 'two-drainers';
    const box = new Mailbox(admin, 'outbox');
    const all = ids(TOTAL);
    let t = Date.now();
    assert.equal(
      await box.enqueue(
        'default',
        queue,
        all.map((id) => ({ messageId: id, payload: { id } })),
      ),
      TOTAL,
    );
    assert.equal(
      await box.enqueue(
        'default',
        queue,
        all.slice(0, 100).map((id) => ({ messageId: id, payload: {} })),
      ),
      0,
    );
    const enqueueMs = Date.now() - t;

    const delivered = new Map<string, string[]>(); // messageId → workers that got it
    const perDrainer = new Map<string, number>();
    const deadline = Date.now() + 90_000;
    const pools = [await openSql({ connectionString: url, poolSize: 4 }), await openSql({ connectionString: url, poolSize: 4 })];
    t = Date.now();
    try {
      // Each drainer: its own pool, four workers claiming batches of 50 concurrently.
      const workers = pools.flatMap((pool, d) => {
        const mb = new Mailbox(pool, 'outbox');
        return [0, 1, 2, 3].map(async (w) => {
          const worker = `drainer${d}-w${w}`;
          for (let round = 0; round < TOTAL && Date.now() < deadline; round++) {
            const batch = await mb.claim(queue, { limit: 50, leaseMs: 60_000, worker });
            if (batch.length === 0) {
              if ((await mb.depth(queue)) === 0) return;
              await elapse(5);
              continue;
            }
            for (const m of batch) delivered.set(m.messageId, [...(delivered.get(m.messageId) ?? []), worker]);
            perDrainer.set(`drainer${d}`, (perDrainer.get(`drainer${d}`) ?? 0) + batch.length);
            assert.equal(
              await mb.ack(
                batch.map((m) => m.id),
                worker,
              ),
              batch.length,
              'every ack finds its rows still held',
            );
          }
        });
      });
      await Promise.all(workers);
    } finally {
      await Promise.all(pools.map((p) => p.close()));
    }
    const drainMs = Date.now() - t;

    assert.equal(delivered.size, TOTAL, 'every message delivered');
    const twice = [...delivered].filter(([, by]) => by.length > 1);
    assert.deepEqual(twice, [], 'no message delivered twice');
    assert.deepEqual([...delivered.keys()].sort(), all);
    assert.equal(await box.depth(queue), 0);
    assert.ok((perDrainer.get('drainer0') ?? 0) > 0 && (perDrainer.get('drainer1') ?? 0) > 0, `both drainers took a share: ${JSON.stringify([...perDrainer])}`);
    console.log(
      `      enqueue ${TOTAL}: ${enqueueMs} ms; drain: ${drainMs} ms (${Math.round((TOTAL / drainMs) * 1000)}/s); shares ${JSON.stringify(Object.fromEntries(perDrainer))}`,
    );
  });

  it('a drainer killed with SIGKILL mid-batch: the next one finishes, duplicates only from the held batch', async function () {
    this.timeout(120_000);
    const queue = 'default';
    const count = 600;
    const batch = 50;
    const box = new Mailbox(admin, 'outbox');
    const all = ids(count, 'k');
    assert.equal(
      await box.enqueue(
        'default',
        queue,
        all.map((id) => ({ messageId: id, payload: { id } })),
      ),
      count,
    );
    const drainer = path.join(__dirname, 'fixtures', 'mailbox-drainer.js');

    // 1. The first drainer: a 3 s lease, 5 ms per delivery; killed halfway through its fourth batch.
    const t0 = Date.now();
    const victim = spawn(process.execPath, [drainer, url, 'worker=victim', 'lease=3000', `batch=${batch}`, 'delay=5', 'deadline=60000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    victim.stderr!.on('data', (c) => (stderr += c));
    const killedAt = await new Promise<{ batches: number; inBatch: number }>((resolve, reject) => {
      let buffered = '';
      let batches = 0;
      let inBatch = 0;
      const timer = setTimeout(() => reject(new Error(`drainer never reached the fourth batch; stderr: ${stderr}`)), 30_000);
      victim.on('exit', (code) => reject(new Error(`drainer exited early (${code}); stderr: ${stderr}`)));
      victim.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith('claim ')) [batches, inBatch] = [batches + 1, 0];
          else if (line.startsWith('d ')) inBatch++;
          if (batches === 4 && inBatch === batch / 2) {
            victim.kill('SIGKILL');
            clearTimeout(timer);
            resolve({ batches, inBatch });
            return;
          }
        }
      });
    });
    const killMs = Date.now() - t0;
    await exited(victim, 5_000);
    assert.equal(victim.signalCode, 'SIGKILL');

    // What the killed drainer held: still leased to it, never acked.
    const { rows: heldRows } = await admin.query<{ message_id: string }>(
      `SELECT message_id FROM outbox WHERE claimed_by = 'victim' AND lease_until > now() ORDER BY id`,
    );
    const held = new Set(heldRows.map((r) => r.message_id));
    assert.equal(held.size, batch, 'the killed drainer held one whole batch');
    const before = await deliveryCounts(admin);
    const deliveredOfHeld = [...before.keys()].filter((id) => held.has(id));
    assert.ok(deliveredOfHeld.length >= killedAt.inBatch, `killed mid-batch: ${deliveredOfHeld.length} of the held batch already delivered`);
    assert.ok(deliveredOfHeld.length < batch, 'and some of it not yet');

    // 2. A new drainer with a short lease finishes the box once the killed one's lease expires.
    const t1 = Date.now();
    const successor = spawn(process.execPath, [drainer, url, 'worker=successor', 'lease=1000', 'batch=100', 'delay=0', 'deadline=45000'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr2 = '';
    successor.stderr!.on('data', (c) => (stderr2 += c));
    const code = await exited(successor, 60_000);
    assert.equal(code, 0, `successor drained the box (exit ${code}); stderr: ${stderr2}`);
    const successorMs = Date.now() - t1;

    assert.equal(await box.depth(queue), 0);
    const after = await deliveryCounts(admin);
    const missing = all.filter((id) => !after.has(id));
    assert.deepEqual(missing, [], 'every message delivered at least once');
    const duplicates = [...after].filter(([, n]) => n > 1).map(([id]) => id);
    assert.deepEqual(
      duplicates.filter((id) => !held.has(id)),
      [],
      'duplicates only among the held batch',
    );
    assert.deepEqual(duplicates.sort(), deliveredOfHeld.sort(), 'exactly the held messages delivered before the kill came twice');
    assert.ok([...after.values()].every((n) => n <= 2));
    console.log(
      `      victim killed after ${killMs} ms at batch ${killedAt.batches}, ${deliveredOfHeld.length}/${batch} of it delivered; ` +
        `successor finished in ${successorMs} ms; ${duplicates.length} duplicates`,
    );
  });
});

async function deliveryCounts(db: SqlClient): Promise<Map<string, number>> {
  const { rows } = await db.query<{ message_id: string; n: number }>('SELECT message_id, count(*) AS n FROM deliveries GROUP BY message_id');
  return new Map(rows.map((r) => [r.message_id, Number(r.n)]));
}

/** Resolves with the exit code once the child has exited; kills it and rejects after timeoutMs. */
function exited(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child ${child.pid} still running after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}
