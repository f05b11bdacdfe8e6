/**
 * Acceptance (issue 12): two Conflux instances federate readings through the real Prosody as two
 * seed 003 proxies: each a Node-RED runtime in its own process running the shipped
 * flows/seed-003-federation-proxy.json with its own JID, database and local system:
 *
 *   proxy A (alice)  its consumer jdoe takes the temperatures of object 5368 for proxy B, as room-1:
 *                    Push Outbox (conflux-federation-push → conflux-xmpp-out), Fetch Outbox
 *   proxy B (bob)    conflux-xmpp-in → conflux-federation-deliver with jdoe's own login on B's
 *                    local system; Fetch Inbox
 *
 * Prosody is stopped mid-stream and started again while A's local system gets new readings. In
 * the end every temperature reading of A's local system is in B's local system exactly once, and
 * nothing else is; both mailboxes are empty.
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { SETTINGS_KEY } from '../../nodes/core/federation/settings';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { LocalSystem } from '../support/local-system';
import { root } from '../support/platform';
import { freshDatabase, prosody, startProsody, stopProsody } from '../support/servers';
import { until } from '../support/wait';

const READINGS = 30;

interface Proxy {
  child: ChildProcess;
  started: Promise<void>;
  output: () => string;
}

function startProxy(dir: string, name: string, flow: unknown[], credentials: Record<string, unknown>, env: Record<string, string>): Proxy {
  const flowFile = path.join(dir, `${name}.json`);
  fs.writeFileSync(flowFile, JSON.stringify(flow));
  fs.writeFileSync(path.join(dir, `${name}_cred.json`), JSON.stringify(credentials));
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'support', 'red-runtime.js'), flowFile], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const started = new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      log += `${line}\n`;
      if (line === 'flows started') resolve();
    });
    child.once('exit', (code) => reject(new Error(`proxy ${name} exited (${code}) before its flows started:\n${log}`)));
  });
  return { child, started, output: () => log };
}

const count = async (db: SqlClient, box: 'inbox' | 'outbox') => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${box}`)).rows[0].n);

describe('acceptance: two Conflux proxies federate readings through Prosody (seed 003)', function () {
  this.timeout(300_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-federation-'));
  const proxies: Proxy[] = [];
  const dbs: SqlClient[] = [];
  const locals: LocalSystem[] = [];

  after(async () => {
    for (const p of proxies) p.child.kill('SIGKILL');
    await Promise.all(dbs.map((d) => d.close()));
    await Promise.all(locals.map((l) => l.down()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every temperature reading of A’s local system reaches B’s exactly once, across a Prosody restart', async () => {
    const xmpp = prosody();
    const jid = (user: string) => `${user}@${xmpp.domain}`;
    const localA = await LocalSystem.start({ jdoe: 'pw-a' });
    const localB = await LocalSystem.start({ 'jdoe-b': 'pw-b' });
    locals.push(localA, localB);
    const [urlA, urlB] = [await freshDatabase(), await freshDatabase()];
    const [dbA, dbB] = await Promise.all([urlA, urlB].map((connectionString) => openSql({ connectionString, poolSize: 2 })));
    dbs.push(dbA, dbB);
    await migrate(dbA);
    await migrate(dbB);

    // Proxy A: the legacy app's proxy; jdoe's temperatures of object 5368 go to proxy B as room-1.
    const a = createBusinessStore(dbA);
    await dbA.query(`INSERT INTO config (tenant_id, key, value) VALUES ('default', $1, $2::jsonb)`, [
      SETTINGS_KEY,
      JSON.stringify({ application: 'legacy', baseUrl: localA.url, pageSize: 5 }),
    ]);
    const legacy = (await a.create('default', 'applications', { name: 'legacy', jid: jid('alice') })).id;
    const crm = (await a.create('default', 'applications', { name: 'crm', jid: jid('bob') })).id;
    const userA = (await a.create('default', 'users', { username: 'jdoe', federation_id: 'jdoe@fed' })).id;
    await a.create('default', 'user_applications', { user_id: userA, application_id: legacy, login: 'jdoe', password: 'pw-a' });
    await a.create('default', 'consumers', { user_id: userA, target_application_id: crm, source: { names: ['temperature'] }, mapping: { '5368': 'room-1' } });
    // Proxy B: the CRM's proxy; jdoe has a login of its own there.
    const b = createBusinessStore(dbB);
    await dbB.query(`INSERT INTO config (tenant_id, key, value) VALUES ('default', $1, $2::jsonb)`, [
      SETTINGS_KEY,
      JSON.stringify({ application: 'crm', baseUrl: localB.url }),
    ]);
    const crmB = (await b.create('default', 'applications', { name: 'crm', jid: jid('bob') })).id;
    await b.create('default', 'applications', { name: 'legacy', jid: jid('alice') });
    const userB = (await b.create('default', 'users', { username: 'jdoe', federation_id: 'jdoe@fed' })).id;
    await b.create('default', 'user_applications', { user_id: userB, application_id: crmB, login: 'jdoe-b', password: 'pw-b' });

    // Both proxies run the shipped flow, as an integrator deploys it: their own JID, database and
    // local system from the environment; the jobs every second rather than every minute, and the
    // test server's plain port.
    const shipped = JSON.parse(fs.readFileSync(path.join(root, 'flows', 'seed-003-federation-proxy.json'), 'utf8')) as Array<Record<string, unknown>>;
    const flow = shipped.map((n) => {
      if (n.type === 'conflux-schedule') return { ...n, interval: '1', unit: 's' };
      if (n.type === 'conflux-xmpp') return { ...n, tlsMode: 'none' };
      if (n.type === 'conflux-xmpp-out') return { ...n, receiptTimeout: '5' };
      return n;
    });
    const xmppNode = flow.find((n) => n.type === 'conflux-xmpp')!.id as string;
    const env = (user: string, url: string) => ({
      CONFLUX_XMPP_JID: jid(user),
      CONFLUX_XMPP_HOST: xmpp.host,
      CONFLUX_XMPP_PORT: String(xmpp.port),
      CONFLUX_POSTGRES_URL: url,
    });
    const password = { [xmppNode]: { password: xmpp.password } };
    proxies.push(startProxy(dir, 'proxy-a', flow, password, env('alice', urlA)), startProxy(dir, 'proxy-b', flow, password, env('bob', urlB)));
    await Promise.all(proxies.map((p) => p.started));
    const logs = () => proxies.map((p) => p.output()).join('\n');

    const temperature = (i: number) => localA.add({ object: '5368', name: 'temperature', value: 20 + i / 10, unit: 'Cel', owner: 'jdoe' });
    for (let i = 0; i < READINGS / 2; i++) {
      temperature(i);
      localA.add({ object: '5368', name: 'pressure', value: 1000 + i, unit: 'hPa', owner: 'jdoe' }); // no consumer takes it
    }
    const arrived = () => localB.ingested.flatMap((x) => x.items);
    await until(
      () => `some readings at B before the restart (${arrived().length})\n${logs()}`,
      () => arrived().length >= 5,
      60_000,
    );

    await stopProsody();
    for (let i = READINGS / 2; i < READINGS; i++) temperature(i);
    // A takes the new readings into its outbox while the federation is away.
    await until(
      () => `readings waiting in A's outbox while Prosody is down\n${logs()}`,
      async () => (await count(dbA, 'outbox')) > 0,
      60_000,
    );
    await startProsody();

    await until(
      () => `${READINGS} readings at B (${arrived().length})\n${logs()}`,
      () => arrived().length >= READINGS,
      120_000,
    );
    await until(
      () => `both mailboxes empty\n${logs()}`,
      async () => (await count(dbA, 'outbox')) + (await count(dbB, 'inbox')) === 0,
      60_000,
    );

    const got = arrived();
    assert.equal(got.length, READINGS, 'no reading twice, nothing else');
    assert.deepEqual(
      got.map((x) => x.value).sort((p, q) => Number(p) - Number(q)),
      Array.from({ length: READINGS }, (_, i) => 20 + i / 10),
    );
    assert.ok(
      got.every((x) => x.object === 'room-1' && x.name === 'temperature'),
      JSON.stringify(got.slice(0, 3)),
    );
    assert.ok(
      localB.ingested.every((x) => x.login === 'jdoe-b' && x.user === 'jdoe@fed'),
      'written with jdoe’s own login on B',
    );
    const ids = localB.ingested.map((x) => x.messageId);
    assert.equal(new Set(ids).size, ids.length, 'no message delivered twice');
    for (const p of proxies) assert.equal(p.child.exitCode, null, 'both proxies still running');
  });
});
