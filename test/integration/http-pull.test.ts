/**
 * conflux-http-pull in a real Node-RED flow on the real PostgreSQL: a paginated source on
 * loopback (test/support/pull-source.ts), the pull's batches mapped to SenML and stored by
 * conflux-time-series, the watermark in pull_sources. The watermark moves only once the tier
 * has stored a page; a node that fails the page leaves it, and the next run pulls the page
 * again; items added later with the same timestamp as the watermark are taken, once.
 */
import { strict as assert } from 'node:assert';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { SqlClient } from '../../nodes/core/db/sql';
import { catchNode, helper } from '../support/node-red';
import { makeItems, PullSource } from '../support/pull-source';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import timeSeriesNode = require('../../nodes/storage/time-series');
import httpPullNode = require('../../nodes/pull/http-pull');

type Msg = Record<string, any>;

/** What the `test-gate` node does with a batch: pass it, hold it (done kept here), or fail it. */
let gate: 'pass' | 'hold' | 'fail' = 'pass';
const held: Array<() => void> = [];
function testNodes(RED: NodeAPI): void {
  RED.nodes.registerType('test-gate', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (msg, send, done) => {
      if (gate === 'fail') return done(new Error('the gate refuses this batch'));
      if (gate === 'hold') return void held.push(() => (send(msg), done()));
      send(msg);
      done();
    });
  });
}

const MAP = "$.{'n': 'partner/' & id & '/value', 't': $toMillis(ts) / 1000, 'v': value}";

describe('conflux-http-pull: a paginated source into conflux-time-series (PostgreSQL)', function () {
  this.timeout(60_000);
  let source: PullSource;
  let sql: SqlClient;
  let delivered: Msg[];
  let caught: Msg[];

  before(async () => {
    source = await new PullSource({ oauthLifetimeS: 3600 }).start();
    const url = await freshDatabase();
    const flow = [
      { id: 'tab', type: 'tab' },
      { id: 'db', type: 'conflux-postgres', url },
      {
        id: 'puller',
        type: 'conflux-http-pull',
        z: 'tab',
        database: 'db',
        url: `${source.origin}/page`,
        sourceKey: 'partner-items',
        auth: 'oauth2',
        tokenUrl: `${source.origin}/token`,
        clientId: 'pull',
        paging: 'page',
        itemsPath: 'data',
        pageSize: '5',
        sizeParam: 'per_page',
        maxPages: '3',
        watermark: 'timestamp',
        watermarkPath: 'ts',
        watermarkParam: 'since',
        idPath: 'id',
        codec: 'map',
        expression: MAP,
        deviceId: 'partner',
        timeout: '5',
        wires: [['gate']],
      },
      { id: 'gate', type: 'test-gate', z: 'tab', wires: [['ts']] },
      { id: 'ts', type: 'conflux-time-series', z: 'tab', engine: 'sql', database: 'db', batchDelay: '5', wires: [['out'], []] },
      { id: 'out', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ];
    await helper.load([postgresNode, timeSeriesNode, httpPullNode, testNodes, catchNode], flow as never, { puller: { clientSecret: 's3cret' } } as never);
    sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
    delivered = [];
    caught = [];
    helper.getNode('out').on('input', (msg: Msg) => delivered.push(msg));
    helper.getNode('caught').on('input', (msg: Msg) => caught.push(msg));
  });
  after(async () => {
    await helper.unload();
    await source.stop();
  });

  /** Sends one trigger and resolves when the pull has completed it (done or done(err)). */
  function run(): Promise<Error | undefined> {
    const pull = helper.getNode('puller') as unknown as Node & { receive(msg: Msg): void };
    return new Promise((resolve) => {
      const id = `trigger-${Math.random()}`;
      const hook = `onComplete.pull-test-${id.slice(10)}`;
      const onDone = (e: { msg?: Msg; node?: { id?: string }; error?: Error }) => {
        if (e.node?.id !== 'puller' || e.msg?._msgid !== id) return;
        (helper as unknown as { _RED: { hooks: { remove(n: string): void } } })._RED.hooks.remove(hook);
        resolve(e.error);
      };
      (helper as unknown as { _RED: { hooks: { add(n: string, f: typeof onDone): void } } })._RED.hooks.add(hook, onDone);
      pull.receive({ _msgid: id, payload: 'tick' });
    });
  }
  const stored = async () =>
    (await sql.query<{ name: string }>("SELECT name FROM readings WHERE tenant_id = 'default' ORDER BY name")).rows.map((r) => r.name.split('/')[1]);
  const watermark = async () =>
    (await sql.query<{ watermark: unknown; boundary: string[] }>("SELECT watermark, boundary FROM pull_sources WHERE key = 'partner-items'")).rows[0];
  const deliveredIds = () => delivered.flatMap((m) => (m.payload as Array<{ n: string }>).map((r) => r.n.split('/')[1]));

  it('stores every item once over several runs, the page bound and a 429 on the way', async () => {
    // Two items per second: items 10 and 11 share the last timestamp of the first run's 3 pages... and beyond.
    source.add(...makeItems(0, 22, 2));
    source.fail429 = 1;
    assert.equal(await run(), undefined);
    assert.equal(delivered.length, 3, 'three pages (the bound)');
    assert.deepEqual((await watermark()).watermark, makeItems(14, 1, 2)[0].ts);
    assert.equal(await run(), undefined);
    assert.deepEqual(
      deliveredIds(),
      makeItems(0, 22).map((i) => i.id),
      'each item once, in order',
    );
    assert.deepEqual(
      await stored(),
      makeItems(0, 22).map((i) => i.id),
    );
    assert.equal(source.tokensIssued, 1);
    assert.ok(
      source.requests.some((r) => r.url.includes('since=')),
      'the watermark was sent',
    );
    delivered.length = 0;

    // New items: two with the timestamp of the watermark (21's), and later ones.
    const last = makeItems(21, 1, 2)[0];
    source.add({ id: 'late-a', ts: last.ts, value: -1 }, { id: 'late-b', ts: last.ts, value: -2 }, ...makeItems(22, 3, 2));
    assert.equal(await run(), undefined);
    assert.deepEqual(deliveredIds().sort(), ['late-a', 'late-b', ...makeItems(22, 3).map((i) => i.id)].sort());
    assert.equal((await stored()).length, 27);
    delivered.length = 0;
    assert.equal(await run(), undefined);
    assert.equal(delivered.length, 0, 'nothing new: nothing handed on');
  });

  it('commits the watermark only once the tier has stored the page; a failed page is pulled again', async () => {
    const before = await watermark();
    source.add(...makeItems(100, 3));
    gate = 'hold';
    const running = run();
    await until('the page to reach the gate', () => held.length === 1);
    assert.deepEqual(await watermark(), before, 'held in the flow: the watermark has not moved');
    gate = 'pass';
    held.shift()!();
    assert.equal(await running, undefined);
    assert.deepEqual((await watermark()).watermark, makeItems(102, 1)[0].ts, 'stored: committed');

    source.add(...makeItems(200, 2));
    const committed = await watermark();
    gate = 'fail';
    const err = await run();
    assert.match(String(err?.message), /the gate refuses this batch/);
    await until('a Catch node to see why', () => caught.some((m) => /the gate refuses this batch/.test(m.error?.message)));
    assert.deepEqual(await watermark(), committed, 'failed: not committed');
    gate = 'pass';
    delivered.length = 0;
    assert.equal(await run(), undefined);
    assert.deepEqual(
      deliveredIds(),
      makeItems(200, 2).map((i) => i.id),
      'the next run pulled the failed page again',
    );
    const names = await stored();
    assert.equal(new Set(names).size, names.length);
  });

  it('a trigger while a run is going is skipped, and done at once', async () => {
    source.add(...makeItems(300, 1));
    gate = 'hold';
    const first = run();
    await until('the page to reach the gate', () => held.length === 1);
    assert.equal(await run(), undefined, 'the second trigger completes at once');
    gate = 'pass';
    held.shift()!();
    assert.equal(await first, undefined);
  });
});
