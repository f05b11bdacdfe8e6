/**
 * conflux-schedule in a Node-RED runtime (node-red-node-test-helper) on the real PostgreSQL: an
 * every-second cron fires with its scheduled time and shows the next run; a slow run is never
 * started twice (the firings meanwhile are skipped and shown) and its timeout frees the schedule;
 * the missed-run policy when the flows start again after a firing passed while they were stopped.
 */
import { strict as assert } from 'node:assert';
import type { Node, NodeAPI, NodeDef, NodeStatus } from 'node-red';
import { formatFireTime } from '../../nodes/core/schedule/timing';
import { helper } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import { elapse, until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import scheduleNode = require('../../nodes/pull/schedule');

type Msg = Record<string, any>;

/** Done callbacks of the messages a `test-hold` node holds. */
const held: Array<{ msg: Msg; done: () => void }> = [];
function testNodes(RED: NodeAPI): void {
  RED.nodes.registerType('test-hold', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (msg, _send, done) => void held.push({ msg: msg as Msg, done }));
  });
}
const NODES = [postgresNode, scheduleNode, testNodes];

interface Loaded {
  got: Msg[];
  statuses: NodeStatus[];
}

async function load(url: string, schedule: Msg, sink: 'helper' | 'test-hold' = 'helper'): Promise<Loaded> {
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url },
    { id: 's', type: 'conflux-schedule', z: 'tab', database: 'db', mode: 'cron', cron: '* * * * * *', timeout: '60', wires: [['out']], ...schedule },
    { id: 'out', type: sink, z: 'tab' },
  ];
  await helper.load(NODES, flow as never);
  const got: Msg[] = [];
  const statuses: NodeStatus[] = [];
  const node = helper.getNode('s') as unknown as { status(s: NodeStatus): void };
  const status = node.status.bind(node);
  node.status = (s) => {
    statuses.push(s);
    status(s);
  };
  if (sink === 'helper') helper.getNode('out').on('input', (msg: Msg) => got.push(msg));
  return { got, statuses };
}

const fireTimes = (msgs: Msg[]) => msgs.map((m) => Date.parse(m.payload.fireTime as string));

describe('conflux-schedule in Node-RED on PostgreSQL', function () {
  this.timeout(60_000);
  let url: string;
  before(async () => {
    url = await freshDatabase();
    await helper.startServer();
  });
  after(() => helper.stopServer());
  afterEach(async () => {
    for (const h of held.splice(0)) h.done();
    await helper.unload();
  });

  it('fires an every-second cron at whole seconds with the fire time and run id, and shows the next run in its time zone', async () => {
    const zone = 'Asia/Kathmandu'; // UTC+5:45: a status in UTC or the runtime's zone would differ
    const s = await load(url, { cron: '* * * * * *', timezone: zone, key: 'every-second' });
    await until('three firings', () => s.got.length >= 3, 10_000);
    const times = fireTimes(s.got);
    assert.ok(
      times.every((t) => t % 1000 === 0),
      'at whole seconds',
    );
    assert.deepEqual(
      times.slice(1).map((t, i) => t - times[i]),
      [1000, 1000],
    );
    const first = s.got[0];
    assert.equal(first.payload.runId, `every-second@${first.payload.fireTime}`);
    assert.equal(first.topic, 'every-second');
    assert.equal(first.schedule.catchUp, false);
    assert.equal(first.schedule.ledger, 'database');
    assert.equal(Date.parse(first.schedule.next as string), times[0] + 1000);
    const shown = (t: number) => `next ${formatFireTime(t, zone, t - 1000)}`;
    await until('the status to show the next run in Kathmandu time', () =>
      s.statuses.some((st) => times.some((t) => String(st.text).startsWith(shown(t + 1000)))),
    );
  });

  it('never starts a run while the last is going: the firings meanwhile are skipped and shown', async () => {
    const s = await load(url, { key: 'slow' }, 'test-hold');
    await until('the first run', () => held.length === 1, 10_000);
    await until('two firings skipped while it runs', () => s.statuses.some((st) => /running, 2 skipped/.test(String(st.text))), 10_000);
    assert.equal(held.length, 1, 'no second run while the first is going');
    const firstFire = Date.parse(held[0].msg.payload.fireTime as string);
    held[0].done();
    await until('the next run once the first has finished', () => held.length === 2, 10_000);
    assert.ok(Date.parse(held[1].msg.payload.fireTime as string) >= firstFire + 3000, 'a later firing, not a skipped one');
  });

  it('frees the schedule after the run timeout when the flow never finishes', async () => {
    const s = await load(url, { key: 'timeout', timeout: '1' }, 'test-hold');
    await until('the first run', () => held.length === 1, 10_000);
    await until('a second run after the timeout of the first', () => held.length === 2, 10_000);
    const [a, b] = held.map((h) => Date.parse(h.msg.payload.fireTime as string));
    assert.ok(b - a >= 2000, `the firing 1 s later was skipped (${b - a} ms apart)`);
    assert.ok(s.statuses.some((st) => / skipped/.test(String(st.text))));
  });

  for (const missed of ['run-once', 'skip'] as const) {
    it(`missed run after a restart, "${missed}": ${missed === 'run-once' ? 'fires once at once' : 'does not fire'}`, async () => {
      const key = `missed-${missed}`;
      const before = await load(url, { key, missed });
      await until('a firing', () => before.got.length >= 1, 10_000);
      await helper.unload();
      const last = Math.max(...fireTimes(before.got));
      // Time is the subject here: a firing must pass while the schedule is stopped.
      await elapse(Math.max(0, last + 2200 - Date.now()));
      const restart = Date.now();
      const after = await load(url, { key, missed });
      await until('two firings on schedule after the restart', () => after.got.filter((m) => !m.schedule.catchUp).length >= 2, 10_000);
      const catchUps = after.got.filter((m) => m.schedule.catchUp);
      if (missed === 'run-once') {
        assert.equal(catchUps.length, 1, 'one run for the missed firings');
        assert.equal(after.got[0], catchUps[0], 'first, at once');
        const t = Date.parse(catchUps[0].payload.fireTime as string);
        assert.ok(t > last && t <= restart, 'the newest firing missed while stopped');
      } else {
        assert.equal(catchUps.length, 0);
        assert.ok(fireTimes(after.got)[0] > restart, 'the first firing is the next on schedule');
      }
    });
  }
});
