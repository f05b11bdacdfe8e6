/**
 * One schedule on two instances runs once per firing (issue 11, item 4): two Node-RED runtimes in
 * child processes (test/support/red-runtime.ts) run the same flow — same node ids, so the same
 * schedule key — on one PostgreSQL: an every-second conflux-schedule → a function that writes the
 * fire time → a file node appending to the instance's own file. Over the firings both instances
 * were up for, every fire time must have been written exactly once in total.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import { type RedChild, startRedChild } from '../support/red-child';

/** Firings counted once both instances are up. */
const FIRINGS = 8;

function flow(url: string): unknown[] {
  return [
    { id: 'tab', type: 'tab', label: 'schedule on two instances' },
    { id: 'db', type: 'conflux-postgres', url },
    {
      id: 'sched',
      type: 'conflux-schedule',
      z: 'tab',
      database: 'db',
      mode: 'cron',
      cron: '* * * * * *',
      missed: 'skip',
      timeout: '10',
      x: 100,
      y: 100,
      wires: [['fmt']],
    },
    { id: 'fmt', type: 'function', z: 'tab', func: 'msg.payload = msg.payload.fireTime;\nreturn msg;', outputs: 1, x: 300, y: 100, wires: [['file']] },
    // The file is the instance's own, named by its environment: the flows are identical.
    {
      id: 'file',
      type: 'file',
      z: 'tab',
      filename: 'FIRINGS_FILE',
      filenameType: 'env',
      appendNewline: true,
      createDir: true,
      overwriteFile: 'false',
      encoding: 'none',
      x: 500,
      y: 100,
      wires: [],
    },
  ];
}

interface Instance extends RedChild {
  /** Where this instance appends its firings. */
  file: string;
}

function startInstance(flowFile: string, file: string): Instance {
  return { ...startRedChild(flowFile, { FIRINGS_FILE: file }), file };
}

const lines = (file: string): string[] => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

describe('conflux-schedule on two instances on one PostgreSQL', function () {
  this.timeout(120_000);

  it('runs each firing exactly once in total', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-schedule-two-'));
    const flowFile = path.join(dir, 'flow.json');
    const url = await freshDatabase();
    fs.writeFileSync(flowFile, JSON.stringify(flow(url)));
    const instances = [startInstance(flowFile, path.join(dir, 'a.txt')), startInstance(flowFile, path.join(dir, 'b.txt'))];
    try {
      await Promise.all(instances.map((i) => i.started));
      const bothUp = Date.now();
      const written = () => instances.flatMap((i) => lines(i.file).map((t) => ({ t: Date.parse(t), by: i.file })));
      const counted = () => written().filter((w) => w.t > bothUp + 1000);
      await until(
        () => `${FIRINGS} firings after both instances started (${counted().length} so far)\n${instances.map((i) => i.output()).join('\n')}`,
        () => new Set(counted().map((w) => w.t)).size >= FIRINGS,
        30_000,
      );
      const all = written();
      const times = all.map((w) => w.t).sort((a, b) => a - b);
      const twice = times.filter((t, i) => times.indexOf(t) !== i);
      assert.deepEqual(twice, [], 'no fire time ran on both instances');
      // Every second between the first and the last one written ran somewhere, or was skipped because a run was
      // still going (a loaded machine): none was lost to the contention.
      const span = (times.at(-1)! - times[0]) / 1000 + 1;
      const db = new Client({ connectionString: url });
      await db.connect();
      const skipped = await db
        .query<{ n: number }>("SELECT count(*)::int AS n FROM schedule_runs WHERE outcome = 'skipped' AND fire_time BETWEEN $1 AND $2", [
          new Date(times[0]),
          new Date(times.at(-1)!),
        ])
        .finally(() => db.end());
      assert.equal(times.length + skipped.rows[0].n, span, `${times.length} runs and ${skipped.rows[0].n} skipped over ${span} firings`);
      const perInstance = instances.map((i) => lines(i.file).length);
      console.log(`      ${times.length} firings over ${span} s: ${perInstance.join(' + ')} runs on the two instances, none twice`);
    } finally {
      for (const i of instances) if (i.child.exitCode === null && i.child.signalCode === null) i.child.kill('SIGKILL');
      await Promise.all(instances.map((i) => i.exited));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
