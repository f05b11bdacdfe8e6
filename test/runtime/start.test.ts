/**
 * The standalone platform as `npm start` runs it: `node dist/settings.js` in a child process,
 * each start with a throwaway CONFLUX_DATA_DIR and a free port on 127.0.0.1.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { getJson, root, start, START_TIMEOUT_MS, stop, tempDataDir, type Platform } from '../support/platform';

const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string };
const readFlow = (name: string) => JSON.parse(fs.readFileSync(path.join(root, 'flows', name), 'utf8')) as { id: string; type: string }[];
const defaultFlow = readFlow('default.json');
const dashboardFlow = readFlow('dashboard.json');
const CONFLUX_TYPES = Object.keys(
  (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } })['node-red'].nodes,
);

describe('standalone platform: node dist/settings.js', function () {
  this.timeout(START_TIMEOUT_MS + 30_000);

  describe('first start on an empty data dir', () => {
    const dataDir = tempDataDir();
    let platform: Platform | undefined;
    let secretAtFirstStart = '';

    before(async () => {
      platform = await start({ CONFLUX_DATA_DIR: dataDir });
    });
    after(async () => {
      await stop(platform);
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('serves the editor at GET /', async () => {
      const res = await fetch(`${platform!.base}/`);
      assert.equal(res.status, 200);
      const html = await res.text();
      assert.match(html, /<title>Conflux<\/title>/);
    });

    it('logs where the editor is and which embedded defaults are in use', () => {
      const log = platform!.output();
      assert.ok(log.includes(`Conflux editor: http://127.0.0.1:${platform!.port}/`), log);
      assert.ok(log.includes('storage: embedded (PGlite) — set CONFLUX_POSTGRES_URL'), log);
      assert.ok(log.includes('cache: in-process — set CONFLUX_REDIS_URL'), log);
      assert.ok(log.includes('MQTT: embedded broker — set CONFLUX_MQTT_URL'), log);
      assert.ok(log.includes('first start: deployed flows/default.json and flows/dashboard.json as flows.json'), log);
    });

    it('loads every Conflux node type package.json lists (GET /nodes)', async () => {
      const { status, body } = await getJson(platform!, '/nodes');
      assert.equal(status, 200);
      const sets = body as { module: string; types: string[]; err?: string; enabled: boolean }[];
      const ours = sets.filter((s) => s.module === pkg.name);
      for (const set of ours) assert.equal(set.err, undefined, `node set ${JSON.stringify(set)} failed to load`);
      const types = ours.flatMap((s) => s.types);
      for (const type of CONFLUX_TYPES) {
        assert.ok(types.includes(type), `${type} is not registered; ${pkg.name} registers [${types.join(', ')}]\n${platform!.output()}`);
      }
    });

    it('deploys flows/default.json and flows/dashboard.json (GET /flows holds all their nodes) and writes them as flows.json', async () => {
      const { status, body } = await getJson(platform!, '/flows');
      assert.equal(status, 200);
      const ids = new Set((body as { id: string }[]).map((n) => n.id));
      for (const node of [...defaultFlow, ...dashboardFlow]) assert.ok(ids.has(node.id), `${node.type} ${node.id} is not deployed`);
      const tabs = (body as { type: string; label?: string }[]).filter((n) => n.type === 'tab').map((n) => n.label);
      assert.deepEqual(tabs, ['Conflux — getting started', 'Conflux — operator dashboard']);
      // The connections both ship (database, cache, gateway) are written once.
      const shared = new Set(defaultFlow.map((n) => n.id));
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dataDir, 'flows.json'), 'utf8')), [
        ...defaultFlow,
        ...dashboardFlow.filter((n) => !shared.has(n.id)),
      ]);
    });

    it('serves the operator dashboard at /dashboard', async () => {
      const res = await fetch(`${platform!.base}/dashboard/operations`);
      assert.equal(res.status, 200);
      assert.match(await res.text(), /<div id="app">/);
    });

    it('keeps a generated credential secret in the data dir, readable by its owner only', () => {
      const file = path.join(dataDir, '.conflux-credential-secret');
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      secretAtFirstStart = fs.readFileSync(file, 'utf8');
      assert.match(secretAtFirstStart.trim(), /^[0-9a-f]{64}$/);
    });

    it('offers the shipped flows under Import > Examples (GET /library/examples/flows/)', async () => {
      const modules = await getJson(platform!, '/library/examples/flows/');
      assert.equal(modules.status, 200);
      assert.ok((modules.body as string[]).includes(pkg.name), `examples come from ${JSON.stringify(modules.body)}`);
      const listing = await getJson(platform!, `/library/examples/flows/${pkg.name}`);
      assert.equal(listing.status, 200);
      const names = (listing.body as { fn?: string }[]).map((e) => e.fn);
      assert.ok(names.includes('default'), JSON.stringify(listing.body));
      assert.ok(names.includes('senml-basics'), JSON.stringify(listing.body));
      const example = await getJson(platform!, `/library/examples/flows/${pkg.name}/senml-basics`);
      assert.equal(example.status, 200);
      assert.deepEqual(example.body, JSON.parse(fs.readFileSync(path.join(root, 'flows', 'senml-basics.json'), 'utf8')));
    });

    it('stops cleanly on SIGTERM (exit code 0, port closed)', async () => {
      const code = await stop(platform);
      assert.equal(code, 0, platform!.output());
      await assert.rejects(fetch(`${platform!.base}/`, { signal: AbortSignal.timeout(2000) }));
    });

    describe('second start with an edited flows.json', () => {
      const edited = [
        { id: 'aaaaaaaaaaaaaaaa', type: 'tab', label: 'edited by the user', disabled: false, info: '' },
        { id: 'bbbbbbbbbbbbbbbb', type: 'comment', z: 'aaaaaaaaaaaaaaaa', name: 'mine', info: '', x: 100, y: 40, wires: [] },
      ];
      let again: Platform | undefined;

      before(async () => {
        await stop(platform);
        fs.writeFileSync(path.join(dataDir, 'flows.json'), JSON.stringify(edited));
        again = await start({ CONFLUX_DATA_DIR: dataDir });
      });
      after(async () => {
        await stop(again);
      });

      it("keeps the edit: GET /flows is the user's flow, not the default", async () => {
        const { status, body } = await getJson(again!, '/flows');
        assert.equal(status, 200);
        assert.deepEqual((body as { id: string }[]).map((n) => n.id).sort(), edited.map((n) => n.id).sort());
        assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dataDir, 'flows.json'), 'utf8')), edited);
        assert.ok(again!.output().includes('flows: flows.json (kept as saved)'), again!.output());
      });

      it('reuses the credential secret of the first start', () => {
        assert.ok(secretAtFirstStart !== '');
        assert.equal(fs.readFileSync(path.join(dataDir, '.conflux-credential-secret'), 'utf8'), secretAtFirstStart);
      });
    });
  });

  describe('with CONFLUX_ADMIN_PASSWORD set', () => {
    const dataDir = tempDataDir();
    let platform: Platform | undefined;

    before(async () => {
      platform = await start({ CONFLUX_DATA_DIR: dataDir, CONFLUX_ADMIN_PASSWORD: 'pa55 word', CONFLUX_ADMIN_USER: 'ops' });
    });
    after(async () => {
      await stop(platform);
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('answers 401 on the admin API without a token', async () => {
      for (const url of ['/flows', '/nodes', '/settings']) {
        const { status } = await getJson(platform!, url);
        assert.equal(status, 401, `GET ${url}`);
      }
    });

    it('asks for a user name and password, and accepts only the right ones', async () => {
      const login = await getJson(platform!, '/auth/login');
      assert.equal(login.status, 200);
      assert.equal(login.body.type, 'credentials');

      const token = async (username: string, password: string) =>
        fetch(`${platform!.base}/auth/token`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username, password }),
        });
      const refused = [401, 403]; // Node-RED answers 403 to wrong credentials
      assert.ok(refused.includes((await token('ops', 'wrong')).status), 'a wrong password is refused');
      assert.ok(refused.includes((await token('admin', 'pa55 word')).status), 'the user is CONFLUX_ADMIN_USER, not admin');
      const ok = await token('ops', 'pa55 word');
      assert.equal(ok.status, 200);
      const { access_token: accessToken } = (await ok.json()) as { access_token: string };
      const flows = await getJson(platform!, '/flows', { Authorization: `Bearer ${accessToken}` });
      assert.equal(flows.status, 200);
      assert.ok(platform!.output().includes('editor login: user "ops"'), platform!.output());
      assert.ok(!platform!.output().includes('pa55 word'), 'the password is never logged');
    });
  });
});
