/** Backup and restore of the embedded PGlite database, in code and through the compiled CLIs. */
import * as assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { BackupError, backupEmbedded, embeddedDir, restoreEmbedded, type BackupErrorCode } from '../../launcher/backup';
import { claimPlatformPidFile, isPlatformRunning, platformPidFile, processesUsing } from '../../launcher/pid-file';
import { migrate } from '../../nodes/core/db/migrate';
import { MIGRATIONS } from '../../nodes/core/db/migrations';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { OPEN_TIMEOUT_MS } from '../support/engines';

const LATEST = MIGRATIONS[MIGRATIONS.length - 1].version;
/** Compiled beside this test: <out>/test/integration/ → <out>/scripts/. */
const SCRIPTS = path.resolve(__dirname, '..', '..', 'scripts');

const failsWith = (code: BackupErrorCode, pattern?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof BackupError, `expected a BackupError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (pattern) assert.match(err.message, pattern);
  return true;
};

async function withDb<T>(dir: string, fn: (db: SqlClient) => Promise<T>): Promise<T> {
  const db = await openSql({ dataDir: dir });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** The business rows the tests compare: tenants and their devices. */
async function snapshot(dir: string): Promise<{ tenants: string[]; devices: string[] }> {
  return withDb(dir, async (db) => ({
    tenants: (await db.query<{ id: string }>('SELECT id FROM tenants ORDER BY id')).rows.map((r) => r.id),
    devices: (await db.query<{ serial: string }>('SELECT serial FROM devices ORDER BY serial')).rows.map((r) => r.serial),
  }));
}

async function createDatabase(dir: string): Promise<void> {
  await withDb(dir, async (db) => {
    await migrate(db);
    await db.query(`INSERT INTO tenants (id, name) VALUES ('acme', 'Acme')`);
    await db.query(`INSERT INTO devices (tenant_id, serial, name) VALUES ('acme', 'SN-1', 'boiler'), ('acme', 'SN-2', 'meter')`);
  });
}

const ORIGINAL = { tenants: ['acme', 'default'], devices: ['SN-1', 'SN-2'] };

/** A pid that no process has any longer. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  const pid = child.pid!;
  await new Promise((resolve) => child.once('exit', resolve));
  return pid;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(script: 'backup' | 'restore', args: string[], cwd: string, dataDir: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CONFLUX_')) env[k] = v;
  env.CONFLUX_DATA_DIR = dataDir;
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(SCRIPTS, `${script}.js`), ...args], { cwd, env, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('embedded database backup and restore', function () {
  this.timeout(6 * OPEN_TIMEOUT_MS);
  let root: string;
  let dataDir: string;
  let dbDir: string;

  beforeEach(async function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-backup-'));
    dataDir = path.join(root, 'data');
    dbDir = embeddedDir(dataDir);
    await createDatabase(dbDir);
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const leftovers = () => fs.readdirSync(dataDir).filter((name) => name !== 'pglite' && !name.startsWith('pglite.before-restore-'));

  it('backs up, and a forced restore brings back exactly the backed-up rows', async () => {
    const file = path.join(root, 'out', 'one.tar.gz');
    const info = await backupEmbedded(dbDir, file);
    assert.equal(info.file, file);
    assert.equal(info.schemaVersion, LATEST);
    assert.equal(info.bytes, fs.statSync(file).size);
    assert.ok(info.bytes > 0);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['one.tar.gz'], 'no partial file left');
    assert.ok(!fs.existsSync(path.join(dbDir, 'postmaster.pid')), 'the backup closed the database');
    await assert.rejects(backupEmbedded(dbDir, file), failsWith('TARGET_EXISTS'), 'never overwrites a backup');

    // Changes after the backup.
    await withDb(dbDir, async (db) => {
      await db.query(`DELETE FROM devices WHERE serial = 'SN-1'`);
      await db.query(`INSERT INTO tenants (id, name) VALUES ('later', 'Later')`);
    });
    const changed = { tenants: ['acme', 'default', 'later'], devices: ['SN-2'] };

    await assert.rejects(restoreEmbedded(file, dbDir), failsWith('TARGET_EXISTS', /force/));
    assert.deepEqual(await snapshot(dbDir), changed, 'a refused restore changes nothing');

    const restored = await restoreEmbedded(file, dbDir, { force: true });
    assert.equal(restored.pgliteDir, dbDir);
    assert.equal(restored.schemaVersion, LATEST);
    assert.deepEqual(await snapshot(dbDir), ORIGINAL);

    // The replaced database is kept, not deleted.
    assert.ok(restored.movedAside);
    assert.match(path.basename(restored.movedAside), /^pglite\.before-restore-\d{8}T\d{6}Z(-\d+)?$/);
    assert.equal(path.dirname(restored.movedAside), dataDir);
    assert.deepEqual(await snapshot(restored.movedAside), changed);
    assert.deepEqual(leftovers(), [], 'no temporary folder left');
  });

  it('restores into an empty or missing folder without force', async () => {
    const file = path.join(root, 'b.tar.gz');
    await backupEmbedded(dbDir, file);
    const fresh = embeddedDir(path.join(root, 'elsewhere'));
    const info = await restoreEmbedded(file, fresh);
    assert.equal(info.movedAside, undefined);
    assert.deepEqual(await snapshot(fresh), ORIGINAL);

    const empty = path.join(root, 'empty', 'pglite');
    fs.mkdirSync(empty, { recursive: true });
    await restoreEmbedded(file, empty);
    assert.deepEqual(await snapshot(empty), ORIGINAL);
  });

  it('refuses a corrupt, truncated or foreign archive and leaves the database untouched', async () => {
    const good = path.join(root, 'good.tar.gz');
    await backupEmbedded(dbDir, good);
    await withDb(dbDir, (db) => db.query(`INSERT INTO tenants (id, name) VALUES ('later', 'Later')`));
    const current = { tenants: ['acme', 'default', 'later'], devices: ORIGINAL.devices };
    const bytes = fs.readFileSync(good);
    const tar = zlib.gunzipSync(bytes);

    const cases: [string, Buffer, RegExp][] = [
      ['truncated.tar.gz', bytes.subarray(0, Math.floor(bytes.length / 2)), /gzip/],
      ['garbage.tar.gz', Buffer.from('this is not a backup at all, just text'.repeat(40)), /tar/],
      ['truncated-tar.tar.gz', zlib.gzipSync(tar.subarray(0, Math.floor(tar.length / 2))), /truncated/],
      ['empty.tar.gz', Buffer.alloc(0), /truncated/],
    ];
    for (const [name, content, pattern] of cases) {
      const file = path.join(root, name);
      fs.writeFileSync(file, content);
      await assert.rejects(restoreEmbedded(file, dbDir, { force: true }), failsWith('CORRUPT_ARCHIVE', pattern), name);
    }

    // A well-formed PostgreSQL archive that is not a Conflux database: caught by opening it.
    const foreign = path.join(root, 'foreign.tar.gz');
    const other = path.join(root, 'other', 'pglite');
    await withDb(other, (db) => db.exec('CREATE TABLE unrelated (x int)'));
    await backupEmbedded(other, foreign).then(
      () => assert.fail('a database without schema_migrations is not a Conflux backup'),
      failsWith('NO_DATABASE', /schema_migrations/),
    );
    // Make the archive by hand then, as another PGlite tool would.
    const { PGlite } = await import('@electric-sql/pglite');
    const pg = await PGlite.create({ dataDir: other });
    try {
      fs.writeFileSync(foreign, Buffer.from(await (await pg.dumpDataDir('gzip')).arrayBuffer()));
    } finally {
      await pg.close();
    }
    await assert.rejects(restoreEmbedded(foreign, dbDir, { force: true }), failsWith('CORRUPT_ARCHIVE', /schema_migrations/));

    assert.deepEqual(await snapshot(dbDir), current);
    assert.deepEqual(fs.readdirSync(dataDir), ['pglite'], 'nothing moved aside, no temporary folder left');
  });

  it('refuses while the platform is running, by its pid file', async () => {
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(platformPidFile(dataDir), `${sleeper.pid}\n`);
      assert.equal(isPlatformRunning(dataDir), true);
      const file = path.join(root, 'x.tar.gz');
      await assert.rejects(backupEmbedded(dbDir, file), failsWith('PLATFORM_RUNNING', new RegExp(`pid ${sleeper.pid}`)));
      assert.ok(!fs.existsSync(file));
      const good = path.join(root, 'good.tar.gz');
      fs.writeFileSync(platformPidFile(dataDir), `${await deadPid()}\n`); // stale: ignored
      assert.equal(isPlatformRunning(dataDir), false);
      await backupEmbedded(dbDir, good);
      fs.writeFileSync(platformPidFile(dataDir), `${sleeper.pid}\n`);
      await assert.rejects(restoreEmbedded(good, dbDir, { force: true }), failsWith('PLATFORM_RUNNING'));
      assert.deepEqual(fs.readdirSync(dataDir).sort(), ['conflux.pid', 'pglite']);
    } finally {
      sleeper.kill();
    }
  });

  it('claims and releases the platform pid file', () => {
    assert.equal(isPlatformRunning(dataDir), false);
    const release = claimPlatformPidFile(dataDir);
    assert.equal(fs.readFileSync(platformPidFile(dataDir), 'utf8').trim(), String(process.pid));
    assert.equal(isPlatformRunning(dataDir), true);
    release();
    assert.ok(!fs.existsSync(platformPidFile(dataDir)));
    release(); // idempotent
  });

  it('refuses while another PGlite has the database open (Linux: /proc fds)', async function () {
    const db = await openSql({ dataDir: dbDir });
    try {
      await db.query('SELECT 1');
      if (process.platform !== 'linux') {
        assert.deepEqual(processesUsing(dbDir), []);
        return;
      }
      assert.ok(processesUsing(dbDir).includes(process.pid));
      await assert.rejects(backupEmbedded(dbDir, path.join(root, 'x.tar.gz')), failsWith('PLATFORM_RUNNING', /is open in process/));
    } finally {
      await db.close();
    }
    assert.deepEqual(processesUsing(dbDir), []);
  });

  it('reports a missing database and a missing archive', async () => {
    const none = embeddedDir(path.join(root, 'nothing'));
    await assert.rejects(backupEmbedded(none, path.join(root, 'x.tar.gz')), failsWith('NO_DATABASE', /does not exist/));
    fs.mkdirSync(none, { recursive: true });
    await assert.rejects(backupEmbedded(none, path.join(root, 'x.tar.gz')), failsWith('NO_DATABASE', /PG_VERSION/));
    assert.deepEqual(fs.readdirSync(none), [], 'no database was created by trying');
    await assert.rejects(restoreEmbedded(path.join(root, 'missing.tar.gz'), dbDir, { force: true }), failsWith('FILE_MISSING'));
  });

  it('npm run backup / restore: the compiled CLIs end to end', async () => {
    // CONFLUX_DATA_DIR relative to the working directory, as the platform reads it.
    const backup = await cli('backup', [], root, 'data');
    assert.equal(backup.code, 0, backup.stderr);
    const match = /wrote (\S+) \(.*?(\d+) bytes; schema version (\d+)\)/.exec(backup.stdout);
    assert.ok(match, backup.stdout);
    const file = match[1];
    assert.equal(path.dirname(file), path.join(fs.realpathSync(root), 'backups'));
    assert.match(path.basename(file), /^conflux-\d{8}T\d{6}Z\.tar\.gz$/);
    assert.equal(Number(match[2]), fs.statSync(file).size);
    assert.equal(Number(match[3]), LATEST);

    await withDb(dbDir, (db) => db.query(`DELETE FROM devices`));

    const refused = await cli('restore', [file], root, 'data');
    assert.equal(refused.code, 7, refused.stderr);
    assert.match(refused.stderr, /--force/);

    const restored = await cli('restore', [file, '--force'], root, 'data');
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /previous database is kept in .*pglite\.before-restore-/);
    assert.deepEqual(await snapshot(dbDir), ORIGINAL);

    const missing = await cli('restore', ['nope.tar.gz'], root, 'data');
    assert.equal(missing.code, 5);
    assert.match(missing.stderr, /not found/);

    fs.writeFileSync(path.join(root, 'bad.tar.gz'), 'garbage');
    const bad = await cli('restore', ['bad.tar.gz', '--force'], root, 'data');
    assert.equal(bad.code, 6);
    assert.match(bad.stderr, /not a usable Conflux database backup/);

    const nothing = await cli('backup', ['--out', 'x.tar.gz'], root, 'empty');
    assert.equal(nothing.code, 3);
    assert.match(nothing.stderr, /no database to back up/);

    const usage = await cli('restore', [], root, 'data');
    assert.equal(usage.code, 2);

    const release = claimPlatformPidFile(dataDir);
    try {
      const running = await cli('backup', ['--out', 'y.tar.gz'], root, 'data');
      assert.equal(running.code, 4);
      assert.match(running.stderr, /platform is running/);
    } finally {
      release();
    }
    assert.deepEqual(await snapshot(dbDir), ORIGINAL);
  });
});
