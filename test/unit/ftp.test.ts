/** FTP delivery's core without a server: naming rules, the folder guard, the zip, targets, the pool's bounds. */
import * as assert from 'node:assert/strict';
import { strFromU8, unzipSync } from 'fflate';
import { NamingError, remoteFolder, remotePath, renderName, safeRelative } from '../../nodes/core/ftp/naming';
import { buildDelivery, deliveryDate, deliveryId, filesOf, messageFields, type DeliveryInput } from '../../nodes/core/ftp/package';
import { FtpPool, PoolFullError, type PooledClient } from '../../nodes/core/ftp/pool';
import { makeTarget, TargetError, targetSecret } from '../../nodes/core/ftp/targets';

const DATE = new Date('2026-03-07T08:09:10.011Z');
const input = (msg: Record<string, unknown>): DeliveryInput => ({
  files: filesOf(msg),
  metadata: msg.metadata as Record<string, unknown> | undefined,
  field: messageFields(msg),
  date: DATE,
});

describe('ftp naming rules', () => {
  const msg = { vin: 'WVW123', metadata: { uploadedBy: 'ana', vehicle: { make: 'VW' } }, payload: { dealer: 7 } };

  it("names files by the seed's rules: VIN.zip, vin_01, vin_02, dates", () => {
    const field = messageFields(msg);
    assert.equal(renderName('{vin}.zip', field), 'WVW123.zip');
    const files = buildDelivery(
      input({
        ...msg,
        files: [
          { name: 'a.JPG', data: 'x' },
          { name: 'b.png', data: 'y' },
        ],
      }),
      { naming: '{vin}_{nn:02}.{ext}' },
      1e6,
    );
    assert.deepEqual(
      files.map((f) => f.name),
      ['WVW123_01.jpg', 'WVW123_02.png'],
    );
    const dated = buildDelivery(
      input({ ...msg, files: [{ data: 'x' }] }),
      { naming: '{date:YYYYMMDD}/{vehicle.make:upper}-{dealer}-{vin:lower}_{n:3}_{time}.{ext}' },
      1e6,
    );
    assert.equal(dated[0].name, '20260307/VW-7-wvw123_001_080910.bin');
    assert.equal(renderName('{{literal}}-{vin}', messageFields(msg)), '{literal}-WVW123');
  });

  it('refuses a missing field, a bad format and unbalanced braces with the reason', () => {
    const field = messageFields(msg);
    assert.throws(() => renderName('{plate}.zip', field), /the message has no plate/);
    assert.throws(() => renderName('{vin:xx}.zip', field), /unknown format "xx" for vin/);
    assert.throws(() => renderName('{vin.zip', field), /unbalanced brace/);
    assert.throws(() => renderName('{vin}}.zip', () => 'x'), NamingError);
  });

  it('refuses names that would leave the remote folder: .., absolute, NUL, backslash, drive letters', () => {
    for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'a\u0000b', 'a\\..\\b', '..\\x', 'C:/x', 'c:x', 'a//b', './x', 'a/.', ' a', '']) {
      assert.throws(() => safeRelative(bad), NamingError, JSON.stringify(bad));
    }
    assert.equal(safeRelative('in/2026/x.zip'), 'in/2026/x.zip');
    // A field cannot smuggle a path in: the value itself is refused.
    for (const vin of ['../../etc', 'a/b', 'a\\b', 'x\u0000'])
      assert.throws(() => renderName('{vin}.zip', () => vin), /slash, a backslash or a control character/);
    assert.equal(remotePath('/in/', 'x/y.zip'), '/in/x/y.zip');
    assert.equal(remoteFolder(''), '/');
    assert.equal(remoteFolder('in//sub/'), '/in/sub');
    assert.throws(() => remoteFolder('/in/../..'), /contains "\.\."/);
  });

  it('refuses two files with the same name in one delivery', () => {
    assert.throws(() => buildDelivery(input({ vin: 'V', files: [{ data: 'a' }, { data: 'b' }] }), { naming: '{vin}.jpg' }, 1e6), /add \{nn\}/);
  });

  it('takes msg.time as the date, ISO or epoch ms', () => {
    assert.equal(deliveryDate('2026-01-02T03:04:05Z').toISOString(), '2026-01-02T03:04:05.000Z');
    assert.equal(deliveryDate(0).getTime(), 0);
    assert.throws(() => deliveryDate('yesterday'), /not a date/);
  });
});

describe('ftp zip and metadata', () => {
  const msg = {
    vin: 'WVW9',
    metadata: { uploadedBy: 'ana', vin: 'WVW9' },
    files: [
      { name: 'f.jpg', data: Buffer.alloc(2_000, 7) },
      { name: 'r.jpg', base64: 'AAEC' },
    ],
  };
  const rules = { naming: '{vin}_{nn:02}.{ext}', archive: '{vin}.zip', metadata: '{vin}.json' };

  it('zips the files with the metadata JSON under their names, byte for byte the same each time', () => {
    const [zip] = buildDelivery(input(msg), rules, 1e6);
    assert.equal(zip.name, 'WVW9.zip');
    const entries = unzipSync(zip.data);
    assert.deepEqual(Object.keys(entries), ['WVW9_01.jpg', 'WVW9_02.jpg', 'WVW9.json']);
    assert.deepEqual(Buffer.from(entries['WVW9_01.jpg']), Buffer.alloc(2_000, 7));
    assert.deepEqual(Buffer.from(entries['WVW9_02.jpg']), Buffer.from([0, 1, 2]));
    assert.deepEqual(JSON.parse(strFromU8(entries['WVW9.json'])), { uploadedBy: 'ana', vin: 'WVW9' });
    const again = buildDelivery(input(structuredClone(msg)), rules, 1e6)[0];
    assert.ok(again.data.equals(zip.data), 'deterministic: a retried or re-sent delivery is byte-identical');
    assert.equal(deliveryId('t', [zip]), deliveryId('t', [again]));
    assert.notEqual(deliveryId('t', [zip]), deliveryId('u', [zip]));
  });

  it('without a zip, puts the metadata JSON beside the files; bounds the size', () => {
    const files = buildDelivery(input(msg), { ...rules, archive: null }, 1e6);
    assert.deepEqual(
      files.map((f) => f.name),
      ['WVW9_01.jpg', 'WVW9_02.jpg', 'WVW9.json'],
    );
    assert.throws(() => buildDelivery(input(msg), rules, 100), /more than the 100 allowed/);
    assert.throws(() => buildDelivery(input({ vin: 'x' }), { naming: '{vin}' }, 100), /nothing to deliver/);
    assert.throws(() => filesOf({ files: [{ name: 'x' }] }), /has no data/);
  });
});

describe('ftp targets', () => {
  it('checks a target and keys connections by server, login and TLS', () => {
    const t = makeTarget({ host: 'h', user: 'u', tls: 'implicit', folder: 'in/' });
    assert.deepEqual([t.port, t.folder, t.maxConnections, t.rejectUnauthorized], [990, '/in', 2, true]);
    assert.notEqual(makeTarget({ host: 'h', user: 'u' }).key, t.key);
    assert.throws(() => makeTarget({ host: '', user: 'u' }), TargetError);
    assert.throws(() => makeTarget({ host: 'h', user: 'u', folder: '../x' }), /\.\./);
    assert.throws(() => makeTarget({ host: 'h', user: 'u', rules: { naming: '{vin' } }), /unbalanced/);
  });

  it('reads the password from the row, or from an env:CONFLUX_FTP_* variable only', () => {
    assert.equal(targetSecret({ password: 'pw', secret_ref: 'env:CONFLUX_FTP_X' }, {}), 'pw');
    assert.equal(targetSecret({ password: null, secret_ref: 'env:CONFLUX_FTP_X' }, { CONFLUX_FTP_X: 'from-env' }), 'from-env');
    assert.throws(() => targetSecret({ secret_ref: 'env:CONFLUX_CREDENTIAL_SECRET' }, { CONFLUX_CREDENTIAL_SECRET: 's' }), /not env:CONFLUX_FTP_/);
    assert.throws(() => targetSecret({ secret_ref: 'env:CONFLUX_FTP_GONE' }, {}), /not set/);
  });
});

describe('ftp connection pool', () => {
  class Fake implements PooledClient {
    closed = false;
    constructor(readonly target: string) {}
    close() {
      this.closed = true;
    }
  }
  const target = (key: string, maxConnections = 10) => ({ key, maxConnections });

  it('never opens more than the bound in all and per target, reuses idle connections, serves waiters in order', async () => {
    let connects = 0;
    const pool = new FtpPool<Fake, { key: string; maxConnections: number }>({
      maxTotal: 5,
      maxPerTarget: 2,
      idleMs: 60_000,
      maxWaiting: 1_000,
      connect: async (t) => (connects++, new Fake(t.key)),
    });
    let busy = 0;
    let most = 0;
    const perTarget = new Map<string, number>();
    let mostPerTarget = 0;
    const work = async (key: string) =>
      pool.use(target(key), async (c) => {
        assert.equal(c.target, key);
        busy++;
        perTarget.set(key, (perTarget.get(key) ?? 0) + 1);
        most = Math.max(most, busy);
        mostPerTarget = Math.max(mostPerTarget, perTarget.get(key)!);
        await new Promise((r) => setImmediate(r));
        busy--;
        perTarget.set(key, perTarget.get(key)! - 1);
      });
    await Promise.all(Array.from({ length: 200 }, (_, i) => work(`t${i % 8}`)));
    assert.ok(pool.peak <= 5 && most <= 5, `peak ${pool.peak}, most busy ${most}`);
    assert.ok(mostPerTarget <= 2);
    assert.ok(connects < 200, `connections reused (${connects} opened for 200 uses)`);
    await work('z');
    const before = connects;
    await work('z');
    assert.equal(connects, before, 'an idle connection of the target is reused');
    await pool.close();
    assert.equal(pool.open, 0);
  });

  it("makes room for another target by closing an idle connection; a target's own bound wins", async () => {
    const pool = new FtpPool<Fake, { key: string; maxConnections: number }>({
      maxTotal: 1,
      maxPerTarget: 4,
      idleMs: 60_000,
      maxWaiting: 1,
      connect: async (t) => new Fake(t.key),
    });
    let first: Fake | undefined;
    await pool.use(target('a'), async (c) => void (first = c));
    await pool.use(target('b'), async (c) => assert.equal(c.target, 'b'));
    assert.equal(first!.closed, true, "a's idle connection was closed for b");
    const hold = pool.acquire(target('b', 1));
    const lease = await hold;
    const waiting = pool.acquire(target('b', 1));
    await assert.rejects(pool.acquire(target('c')), PoolFullError);
    pool.release(target('b', 1), lease.client, true);
    assert.equal((await waiting).client, lease.client);
    await pool.close();
  });

  it('frees the slot of a connection that failed to open', async () => {
    let fail = true;
    const pool = new FtpPool<Fake, { key: string; maxConnections: number }>({
      maxTotal: 1,
      maxPerTarget: 1,
      idleMs: 10,
      maxWaiting: 10,
      connect: async (t) => {
        if (fail) throw new Error('refused');
        return new Fake(t.key);
      },
    });
    await assert.rejects(
      pool.use(target('a'), async () => undefined),
      /refused/,
    );
    fail = false;
    await pool.use(target('a'), async () => undefined);
    assert.equal(pool.open, 1);
    await pool.close();
  });
});
