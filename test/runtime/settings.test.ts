import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startupBanner } from '../../launcher/banner';
import { adminAuthFor, buildSettings, ConfigError, DEFAULT_PORT, editorUrl, readConfig } from '../../launcher/config';
import { describeDefaults, EMBEDDED_DEFAULTS } from '../../launcher/defaults';
import { installFirstFlow } from '../../launcher/first-start';
import { resolveCredentialSecret, SECRET_FILE } from '../../launcher/secret';

// bcryptjs comes with node-red, as in settings.ts.
const bcrypt = require(require.resolve('bcryptjs', { paths: [path.dirname(require.resolve('node-red/package.json'))] })) as {
  hashSync(password: string, rounds: number): string;
  compareSync(password: string, hash: string): boolean;
};
const hash = (password: string) => bcrypt.hashSync(password, 4);

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-settings-'));
}

describe('runtime: environment to settings', () => {
  it('uses the embedded defaults when no CONFLUX_* variable is set', () => {
    const config = readConfig({}, '/srv/app');
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, DEFAULT_PORT);
    assert.equal(config.port, 1880);
    assert.equal(config.dataDir, path.resolve('/srv/app', 'data'));
    assert.equal(config.flowFile, 'flows.json');
    assert.equal(config.adminUser, 'admin');
    assert.equal(config.adminPassword, undefined);
    assert.equal(config.credentialSecret, undefined);
    assert.equal(config.logLevel, 'info');
  });

  it('takes CONFLUX_HOST, _PORT, _DATA_DIR, _ADMIN_USER, _ADMIN_PASSWORD, _CREDENTIAL_SECRET, _LOG_LEVEL', () => {
    const config = readConfig(
      {
        CONFLUX_HOST: '0.0.0.0',
        CONFLUX_PORT: '18080',
        CONFLUX_DATA_DIR: 'var/conflux',
        CONFLUX_ADMIN_USER: 'ops',
        CONFLUX_ADMIN_PASSWORD: ' s3cret ',
        CONFLUX_CREDENTIAL_SECRET: 'k',
        CONFLUX_LOG_LEVEL: 'DEBUG',
      },
      '/srv/app',
    );
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.port, 18080);
    assert.equal(config.dataDir, '/srv/app/var/conflux');
    assert.equal(config.adminUser, 'ops');
    assert.equal(config.adminPassword, ' s3cret ', 'a password is taken as given');
    assert.equal(config.credentialSecret, 'k');
    assert.equal(config.logLevel, 'debug');
  });

  it('takes CONFLUX_FLOWS_FILE relative to cwd and CONFLUX_EDITOR=off as a read-only instance without editor', () => {
    const config = readConfig({ CONFLUX_FLOWS_FILE: 'deploy/flows.json', CONFLUX_EDITOR: 'OFF' }, '/srv/app');
    assert.equal(config.flowFile, '/srv/app/deploy/flows.json');
    assert.equal(config.sharedFlows, true);
    assert.equal(config.editor, false);
    const settings = buildSettings(config, { packageRoot: '/pkg', credentialSecret: 'k', hash: (p) => p });
    assert.equal(settings.flowFile, '/srv/app/deploy/flows.json');
    assert.equal(settings.readOnly, true);
    assert.equal(settings.disableEditor, true);
    const editing = readConfig({}, '/srv/app');
    assert.equal(editing.editor, true);
    assert.equal(buildSettings(editing, { packageRoot: '/pkg', credentialSecret: 'k', hash: (p) => p }).readOnly, undefined);
    assert.throws(() => readConfig({ CONFLUX_EDITOR: 'maybe' }, '/'), /CONFLUX_EDITOR must be on or off/);
  });

  it('keeps an absolute CONFLUX_DATA_DIR and treats blank variables as unset', () => {
    const config = readConfig({ CONFLUX_DATA_DIR: '/var/lib/conflux', CONFLUX_PORT: '  ', CONFLUX_ADMIN_PASSWORD: '' }, '/srv/app');
    assert.equal(config.dataDir, '/var/lib/conflux');
    assert.equal(config.port, 1880);
    assert.equal(config.adminPassword, undefined);
  });

  for (const bad of ['http', '-1', '65536', '18.5', '1880x']) {
    it(`rejects CONFLUX_PORT=${bad} with a message naming the variable`, () => {
      assert.throws(
        () => readConfig({ CONFLUX_PORT: bad }, '/'),
        (err: unknown) => err instanceof ConfigError && /CONFLUX_PORT/.test(err.message),
      );
    });
  }

  it('rejects an unknown CONFLUX_LOG_LEVEL', () => {
    assert.throws(() => readConfig({ CONFLUX_LOG_LEVEL: 'loud' }, '/'), ConfigError);
  });

  it('builds Node-RED settings: our package as nodesDir, the data dir as userDir, telemetry off', () => {
    const config = readConfig({ CONFLUX_DATA_DIR: '/d', CONFLUX_PORT: '1999' }, '/');
    const settings = buildSettings(config, { packageRoot: '/pkg', credentialSecret: 'sec', hash });
    assert.deepEqual(settings.nodesDir, ['/pkg']);
    assert.equal(settings.userDir, '/d');
    assert.equal(settings.flowFile, 'flows.json');
    assert.equal(settings.uiHost, '127.0.0.1');
    assert.equal(settings.uiPort, 1999);
    assert.equal(settings.httpAdminRoot, '/');
    assert.equal(settings.httpNodeRoot, '/');
    assert.equal(settings.credentialSecret, 'sec');
    assert.deepEqual(settings.telemetry, { enabled: false, updateNotification: false });
    assert.equal(settings.editorTheme.tours, false);
    assert.equal('adminAuth' in settings, false);
    // Node-RED's CORS settings stay unset: no endpoint grants Access-Control-Allow-Origin.
    assert.equal('httpAdminCors' in settings, false);
    assert.equal('httpNodeCors' in settings, false);
  });
});

describe('runtime: editor login', () => {
  it('has no adminAuth when CONFLUX_ADMIN_PASSWORD is not set', () => {
    const config = readConfig({ CONFLUX_ADMIN_USER: 'ops' }, '/');
    let called = false;
    assert.equal(
      adminAuthFor(config, (p) => ((called = true), p)),
      undefined,
    );
    assert.equal(called, false, 'nothing is hashed');
  });

  it('uses user "admin" and a bcrypt hash of CONFLUX_ADMIN_PASSWORD, never the password itself', () => {
    const config = readConfig({ CONFLUX_ADMIN_PASSWORD: 'correct horse' }, '/');
    const settings = buildSettings(config, { packageRoot: '/pkg', credentialSecret: 's', hash });
    assert.ok(settings.adminAuth);
    assert.equal(settings.adminAuth.type, 'credentials');
    assert.equal(settings.adminAuth.users.length, 1);
    const [user] = settings.adminAuth.users;
    assert.equal(user.username, 'admin');
    assert.equal(user.permissions, '*');
    assert.match(user.password, /^\$2[aby]\$/);
    assert.ok(bcrypt.compareSync('correct horse', user.password));
    assert.ok(!bcrypt.compareSync('wrong', user.password));
    assert.ok(!JSON.stringify(settings).includes('correct horse'));
  });

  it('takes the user name from CONFLUX_ADMIN_USER', () => {
    const auth = adminAuthFor(readConfig({ CONFLUX_ADMIN_PASSWORD: 'p', CONFLUX_ADMIN_USER: 'ops' }, '/'), hash);
    assert.equal(auth?.users[0].username, 'ops');
  });
});

describe('runtime: first flow', () => {
  let dir: string;
  let source: string;
  beforeEach(() => {
    dir = tempDir();
    source = path.join(dir, 'default.json');
    fs.writeFileSync(source, '[{"id":"a","type":"tab"}]');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('copies the default flow into a new data dir (created if missing), readable by its owner only', () => {
    const data = path.join(dir, 'data', 'nested');
    assert.equal(installFirstFlow(data, 'flows.json', source), 'installed');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(data, 'flows.json'), 'utf8')), [{ id: 'a', type: 'tab' }]);
    assert.equal(fs.statSync(path.join(data, 'flows.json')).mode & 0o777, 0o600);
  });

  it('writes several shipped flows as one flow file, a config node they share once (as the first has it)', () => {
    const second = path.join(dir, 'dashboard.json');
    fs.writeFileSync(
      source,
      JSON.stringify([
        { id: 'a', type: 'tab' },
        { id: 'db', type: 'conflux-postgres', name: 'first' },
      ]),
    );
    fs.writeFileSync(
      second,
      JSON.stringify([
        { id: 'b', type: 'tab' },
        { id: 'db', type: 'conflux-postgres', name: 'second' },
        { id: 'n', type: 'conflux-ops', z: 'b', database: 'db' },
      ]),
    );
    const data = path.join(dir, 'data');
    assert.equal(installFirstFlow(data, 'flows.json', [source, second]), 'installed');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(data, 'flows.json'), 'utf8')), [
      { id: 'a', type: 'tab' },
      { id: 'db', type: 'conflux-postgres', name: 'first' },
      { id: 'b', type: 'tab' },
      { id: 'n', type: 'conflux-ops', z: 'b', database: 'db' },
    ]);
    assert.equal(installFirstFlow(data, 'flows.json', [source, second]), 'kept');
  });

  it('never overwrites the flow file the user saved later, even an empty one', () => {
    const data = path.join(dir, 'data');
    installFirstFlow(data, 'flows.json', source);
    for (const edited of ['[{"id":"mine","type":"tab","label":"edited"}]', '[]', '']) {
      fs.writeFileSync(path.join(data, 'flows.json'), edited);
      assert.equal(installFirstFlow(data, 'flows.json', source), 'kept');
      assert.equal(fs.readFileSync(path.join(data, 'flows.json'), 'utf8'), edited);
    }
  });

  it('ships a default flow and an example whose nodes all have ids, x, y, z and wires', () => {
    const flowsDir = path.join(__dirname, '..', '..', '..', 'flows');
    for (const name of fs.readdirSync(flowsDir).filter((f) => f.endsWith('.json'))) {
      const flow = JSON.parse(fs.readFileSync(path.join(flowsDir, name), 'utf8')) as Record<string, unknown>[];
      const tabs = flow.filter((n) => n.type === 'tab');
      assert.equal(tabs.length, 1, `${name}: one tab`);
      const ids = new Set(flow.map((n) => n.id));
      assert.equal(ids.size, flow.length, `${name}: ids are unique`);
      for (const node of flow) {
        assert.match(String(node.id), /^[0-9a-f]{16}$/, `${name}: id ${node.id}`);
        if (node.type === 'tab') continue;
        if (node.z === undefined && node.x === undefined && node.wires === undefined) {
          // A config node (a connection): global, and used by some node of the flow.
          assert.ok(
            flow.some((n) => Object.values(n).includes(node.id)),
            `${name}: config node ${node.id} is used`,
          );
          continue;
        }
        assert.equal(node.z, tabs[0].id, `${name}: ${node.id} is on the tab`);
        if (node.type === 'group') {
          // A group frames nodes of its tab (left-to-right stages); it has no wires.
          assert.ok(
            Array.isArray(node.nodes) && node.nodes.every((id: unknown) => flow.some((n) => n.id === id && n.g === node.id)),
            `${name}: group ${node.id}`,
          );
          continue;
        }
        assert.equal(typeof node.x, 'number');
        assert.equal(typeof node.y, 'number');
        assert.ok(Array.isArray(node.wires), `${name}: ${node.id} has wires`);
        for (const target of (node.wires as string[][]).flat()) assert.ok(ids.has(target), `${name}: wire to ${target}`);
      }
    }
    const types = (JSON.parse(fs.readFileSync(path.join(flowsDir, 'default.json'), 'utf8')) as { type: string }[]).map((n) => n.type);
    for (const type of [
      'conflux-senml',
      'conflux-sen1',
      'conflux-ultralight',
      'conflux-eapi',
      'conflux-map',
      'conflux-short-term',
      'conflux-time-series',
      'conflux-long-term',
    ]) {
      assert.ok(types.includes(type), `default.json uses ${type}`);
    }
    const tab = JSON.parse(fs.readFileSync(path.join(flowsDir, 'default.json'), 'utf8'))[0];
    assert.equal(tab.label, 'Conflux — getting started');
    // The dashboard shares the getting-started flow's connections (same ids, same settings), so that
    // npm start deploys both with one database, cache and gateway.
    const dashboard = JSON.parse(fs.readFileSync(path.join(flowsDir, 'dashboard.json'), 'utf8')) as { id: string; type: string }[];
    const byId = new Map((JSON.parse(fs.readFileSync(path.join(flowsDir, 'default.json'), 'utf8')) as { id: string }[]).map((n) => [n.id, n]));
    for (const node of dashboard.filter((n) => n.type.startsWith('conflux-') && byId.has(n.id)))
      assert.deepEqual(node, byId.get(node.id), `dashboard.json's ${node.type}`);
    assert.ok(dashboard.some((n) => n.type === 'conflux-ops') && dashboard.some((n) => n.type === 'ui-base'));
  });
});

describe('runtime: credential secret', () => {
  let dir: string;
  beforeEach(() => (dir = tempDir()));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('takes CONFLUX_CREDENTIAL_SECRET and writes nothing', () => {
    const got = resolveCredentialSecret(dir, 'from-env');
    assert.deepEqual(got, { secret: 'from-env', source: 'env' });
    assert.equal(fs.existsSync(path.join(dir, SECRET_FILE)), false);
  });

  it('generates a secret once, keeps it in the data dir with mode 0600, and reuses it', () => {
    const first = resolveCredentialSecret(dir, undefined);
    assert.equal(first.source, 'generated');
    assert.match(first.secret, /^[0-9a-f]{64}$/);
    const file = path.join(dir, SECRET_FILE);
    assert.equal(first.file, file);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const second = resolveCredentialSecret(dir, undefined);
    assert.deepEqual(second, { secret: first.secret, source: 'file', file });
    assert.equal(fs.readFileSync(file, 'utf8').trim(), first.secret);
  });

  it('two fresh data dirs get different secrets', () => {
    const other = tempDir();
    try {
      assert.notEqual(resolveCredentialSecret(dir, undefined).secret, resolveCredentialSecret(other, undefined).secret);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  it('refuses an empty secret file rather than silently replacing it', () => {
    fs.writeFileSync(path.join(dir, SECRET_FILE), '\n');
    assert.throws(() => resolveCredentialSecret(dir, undefined), /empty/);
  });
});

describe('runtime: start-up log', () => {
  it('names each embedded default and the variable that replaces it', () => {
    assert.deepEqual(describeDefaults({}), [
      'storage: embedded (PGlite) — set CONFLUX_POSTGRES_URL',
      'cache: in-process — set CONFLUX_REDIS_URL',
      'time series: in the storage database — set CONFLUX_ELASTICSEARCH_NODES',
      'MQTT: embedded broker — set CONFLUX_MQTT_URL',
    ]);
    assert.equal(EMBEDDED_DEFAULTS.length, 4);
  });

  it('says which real server is configured without printing its URL', () => {
    const lines = describeDefaults({ CONFLUX_POSTGRES_URL: 'postgres://u:pw@db/x' });
    assert.equal(lines[0], 'storage: PostgreSQL (CONFLUX_POSTGRES_URL)');
    assert.ok(!lines.join('\n').includes('pw@'));
  });

  it('says where the editor is and warns about an open editor on a public address', () => {
    const secret = { secret: 's', source: 'generated' as const, file: '/d/.conflux-credential-secret' };
    const local = startupBanner(readConfig({}, '/'), {}, secret, 'installed');
    assert.equal(local.info[0], 'Conflux editor: http://127.0.0.1:1880/');
    assert.ok(local.info.includes('cache: in-process — set CONFLUX_REDIS_URL'));
    assert.ok(local.info.some((l) => /editor login: none/.test(l)));
    assert.deepEqual(local.warn, []);
    const open = startupBanner(readConfig({ CONFLUX_HOST: '0.0.0.0' }, '/'), {}, secret, 'kept');
    assert.equal(open.warn.length, 2);
    assert.match(open.warn[1], /CONFLUX_ALLOWED_HOSTS/, 'a wildcard address needs the names listed');
    assert.equal(startupBanner(readConfig({ CONFLUX_HOST: '0.0.0.0', CONFLUX_ALLOWED_HOSTS: 'gw.lan' }, '/'), {}, secret, 'kept').warn.length, 1);
    assert.ok(!JSON.stringify(open).includes('"s"'), 'the secret itself is never logged');
    assert.equal(editorUrl('::1', 80), 'http://[::1]:80/');
  });

  it('warns when instances share a flows file without a shared credential secret', () => {
    const generated = { secret: 's', source: 'generated' as const, file: '/d/.conflux-credential-secret' };
    const shared = readConfig({ CONFLUX_FLOWS_FILE: '/deploy/flows.json', CONFLUX_EDITOR: 'off', CONFLUX_HOST: '0.0.0.0' }, '/');
    const banner = startupBanner(shared, {}, generated, 'kept');
    assert.match(banner.info[0], /^Conflux instance: .*CONFLUX_EDITOR=off/);
    assert.ok(banner.info.includes('flows: /deploy/flows.json (CONFLUX_FLOWS_FILE)'));
    assert.deepEqual(banner.warn.length, 1, 'no editor, so no warning about an open editor');
    assert.match(banner.warn[0], /CONFLUX_CREDENTIAL_SECRET/);
    assert.deepEqual(startupBanner(shared, {}, { secret: 's', source: 'env' as const }, 'kept').warn, []);
  });
});
