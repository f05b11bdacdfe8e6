/**
 * FTP delivery's sender against real FTP servers (ftp-srv in this process) and the real
 * PostgreSQL outbox: a target that is down gets its files when it returns while the others are
 * served meanwhile; an upload cut off by a crash leaves no half file under the final name, and the
 * retry by another worker leaves exactly one whole file; implicit FTPS with a test CA, and a server
 * whose certificate the CA did not sign is refused.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import type { RemoteFile } from '../../nodes/core/ftp/package';
import { FtpPool } from '../../nodes/core/ftp/pool';
import { FtpSender, type NewDelivery, type SenderOptions } from '../../nodes/core/ftp/sender';
import { makeTarget, type FtpTarget } from '../../nodes/core/ftp/targets';
import { closeFtp, connectFtp, type FtpClient } from '../../nodes/core/ftp/upload';
import { FtpFarm } from '../support/ftp-farm';
import { freshDatabase, ftpsServer } from '../support/servers';
import { until } from '../support/wait';

const OPTIONS: Omit<SenderOptions, 'queue' | 'worker'> = {
  capacity: 100,
  leaseMs: 30_000,
  pollMs: 50,
  retry: { baseDelayMs: 50, maxDelayMs: 400, maxAttempts: 1_000 },
  targetBackoff: { baseDelayMs: 50, maxDelayMs: 400 },
  waitingPerTarget: 4,
};

function poolFor(connects?: FtpClient[]) {
  return new FtpPool<FtpClient, FtpTarget>({
    maxTotal: 10,
    maxPerTarget: 2,
    idleMs: 5_000,
    maxWaiting: 1_000,
    connect: async (t) => {
      const c = await connectFtp(t, 5_000);
      connects?.push(c);
      return c;
    },
    dispose: (c) => closeFtp(c, 2_000),
  });
}

const file = (name: string, bytes: number, fill: number): RemoteFile => ({ name, data: Buffer.alloc(bytes, fill) });

describe('FTP sender against real servers', function () {
  this.timeout(60_000);
  let db: SqlClient;
  let url: string;
  before(async () => {
    url = await freshDatabase();
    db = await openSql({ connectionString: url, poolSize: 4 });
    await migrate(db);
  });
  after(async () => db?.close());

  it('delivers to the targets that are up while one is down, and to that one when it returns', async () => {
    const farm = await FtpFarm.start(3);
    const targets = farm.servers.map((s) =>
      makeTarget({ name: `s${s.index}`, host: '127.0.0.1', port: s.port, user: s.user, password: s.password, folder: '/in' }),
    );
    const pool = poolFor();
    const sender = new FtpSender(
      db,
      { ...OPTIONS, queue: 'ftp:down', worker: 'w-down' },
      { pool, resolve: async (_t, ref) => targets[Number((ref as { id: string }).id)], onError: () => undefined },
    );
    try {
      await farm.stopOne(1);
      sender.start();
      const deliveries: NewDelivery[] = [];
      for (let t = 0; t < 3; t++)
        for (let k = 0; k < 5; k++)
          deliveries.push({ tenant: 'default', messageId: `d-${t}-${k}`, target: { kind: 'store', id: String(t) }, files: [file(`V${k}.zip`, 3_000, k)] });
      await sender.enqueue(deliveries);
      await until('the targets that are up have their files', () => farm.files(0).length === 5 && farm.files(2).length === 5);
      assert.equal(farm.servers[1].running, false);
      assert.ok(sender.stats.failed >= 1, 'the down target was tried');
      await farm.startOne(1);
      await until('the target that came back has its files', () => farm.files(1).length === 5);
      assert.deepEqual(farm.files(1), ['in/V0.zip', 'in/V1.zip', 'in/V2.zip', 'in/V3.zip', 'in/V4.zip']);
      for (let k = 0; k < 5; k++) assert.ok(farm.read(1, `in/V${k}.zip`).equals(Buffer.alloc(3_000, k)));
      await until('the outbox is empty', async () => (await sender.depth()) === 0);
      assert.equal(sender.stats.dead, 0);
    } finally {
      await sender.stop();
      await pool.close();
      await farm.stop();
    }
  });

  it('an upload cut off by a crash leaves no half file under its name; the retry leaves one whole file', async () => {
    const SIZE = 400_000;
    let stalled: (() => void) | undefined;
    const stalledNow = new Promise<void>((resolve) => (stalled = resolve));
    let first = true;
    // The first upload's bytes stop half-way, as when the sender dies mid-transfer.
    const farm = await FtpFarm.start(1, {
      onWrite: (_s, _name, real) => {
        if (!first) return real;
        first = false;
        let written = 0;
        return new Writable({
          write(chunk: Buffer, _enc, cb) {
            if (written >= SIZE / 2) return void stalled?.(); // never calls back: the upload hangs here
            written += chunk.length;
            real.write(chunk, cb);
          },
          final(cb) {
            real.end(cb);
          },
          destroy(err, cb) {
            real.end();
            cb(err);
          },
        });
      },
    });
    const s = farm.servers[0];
    const target = makeTarget({ host: '127.0.0.1', port: s.port, user: s.user, password: s.password, folder: '/in' });
    const payload = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i++) payload[i] = (i * 7) & 0xff;
    // Worker A has its own database connection: closing it is the crash (it cannot settle anything).
    const dbA = await openSql({ connectionString: url, poolSize: 2 });
    const clientsA: FtpClient[] = [];
    const poolA = poolFor(clientsA);
    const a = new FtpSender(
      dbA,
      { ...OPTIONS, queue: 'ftp:crash', worker: 'A', leaseMs: 1_500 },
      { pool: poolA, resolve: async () => target, onError: () => undefined },
    );
    const poolB = poolFor();
    const b = new FtpSender(
      db,
      { ...OPTIONS, queue: 'ftp:crash', worker: 'B', leaseMs: 1_500 },
      { pool: poolB, resolve: async () => target, onError: () => undefined },
    );
    try {
      a.start();
      await a.enqueue([{ tenant: 'default', messageId: 'vin-crash', target: { kind: 'node' }, files: [{ name: 'WVW1.zip', data: payload }] }]);
      await stalledNow;
      const partial = farm.files(0, true);
      assert.equal(partial.length, 1);
      assert.match(partial[0], /^in\/\.WVW1\.zip\.[a-z0-9]+\.part$/, 'the bytes go to a temporary name');
      assert.ok(fs.statSync(path.join(s.root, partial[0])).size < SIZE);
      assert.deepEqual(farm.files(0), [], 'a reader sees no file under the final name');

      // The crash: A's database and FTP connections are gone; its claim runs out after its lease.
      await a.stop(0).catch(() => undefined);
      await dbA.close();
      for (const c of clientsA) c.close();
      b.start();
      await until('B delivered after A died', () => farm.files(0).length === 1);
      await until('the outbox is empty', async () => (await b.depth()) === 0);
      assert.deepEqual(farm.files(0, true), ['in/WVW1.zip'], 'one file, no temporary left');
      assert.ok(farm.read(0, 'in/WVW1.zip').equals(payload), 'the whole file, byte for byte');
    } finally {
      await b.stop();
      await poolA.close();
      await poolB.close();
      await farm.stop();
    }
  });

  it('implicit FTPS with a test CA; a CA that did not sign the certificate is refused', async () => {
    // The key and certificate test/servers/servers.sh made for pure-ftpd, signed by its test CA.
    const dir = path.dirname(ftpsServer().ca);
    const tls = { key: fs.readFileSync(path.join(dir, 'server.key'), 'utf8'), cert: fs.readFileSync(path.join(dir, 'server.pem'), 'utf8') };
    const farm = await FtpFarm.start(1, { tls, implicit: true });
    const s = farm.servers[0];
    const spec = { host: '127.0.0.1', port: s.port, user: s.user, password: s.password, tls: 'implicit' as const };
    const good = makeTarget({ ...spec, ca: fs.readFileSync(ftpsServer().ca, 'utf8') });
    const wrong = makeTarget({ ...spec, ca: tls.cert }); // trusts only the server's own certificate, not its CA
    const pool = poolFor();
    const errors: string[] = [];
    const sender = new FtpSender(
      db,
      { ...OPTIONS, queue: 'ftp:tls', worker: 'w-tls', retry: { baseDelayMs: 10, maxDelayMs: 10, maxAttempts: 1 } },
      {
        pool,
        resolve: async (_t, ref) => ((ref as { id: string }).id === 'good' ? good : wrong),
        onError: () => undefined,
        onDead: (_id, reason) => errors.push(reason),
      },
    );
    try {
      sender.start();
      await sender.enqueue([
        { tenant: 'default', messageId: 'tls-good', target: { kind: 'store', id: 'good' }, files: [file('ok.zip', 10_000, 1)] },
        { tenant: 'default', messageId: 'tls-wrong', target: { kind: 'store', id: 'wrong' }, files: [file('no.zip', 10_000, 2)] },
      ]);
      await until('the good one delivered, the wrong one dead', () => farm.files(0).length === 1 && errors.length === 1);
      assert.deepEqual(farm.files(0), ['ok.zip']);
      assert.match(errors[0], /certificate/i);
    } finally {
      await sender.stop();
      await pool.close();
      await farm.stop();
    }
  });
});
