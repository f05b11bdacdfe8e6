/**
 * Several instances from one flows file (docs/operations.md, "Several instances"): the instances
 * behind a load balancer run the flows of one file, CONFLUX_FLOWS_FILE, which one editing instance
 * deploys to; the others run with CONFLUX_EDITOR=off (no editor, no admin API, nothing written) and
 * take a new deploy when restarted. Credentials are shared through CONFLUX_CREDENTIAL_SECRET.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { getJson, type Platform, start, stop, tempDataDir, waitForOutput } from '../support/platform';
import { until } from '../support/wait';

/** A flow answering GET /greeting with `text`,. */
function flow(text: string): unknown[] {
  return [
    { id: 'inst-tab', type: 'tab', label: 'instances' },
    { id: 'inst-in', type: 'http in', z: 'inst-tab', url: '/greeting', method: 'get', wires: [['inst-fn']] },
    { id: 'inst-fn', type: 'change', z: 'inst-tab', rules: [{ t: 'set', p: 'payload', pt: 'msg', to: text, tot: 'str' }], wires: [['inst-out']] },
    { id: 'inst-out', type: 'http response', z: 'inst-tab', statusCode: '', headers: {}, wires: [] },
  ];
}

async function greeting(platform: Platform): Promise<string> {
  const res = await fetch(`${platform.base}/greeting`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return text;
}

describe('runtime: several instances from one flows file', function () {
  this.timeout(240_000);
  const shared = tempDataDir();
  const flowsFile = path.join(shared, 'flows.json');
  const dirs = [tempDataDir(), tempDataDir()];
  const common = { CONFLUX_FLOWS_FILE: flowsFile, CONFLUX_CREDENTIAL_SECRET: 'one secret for every instance' };
  let editing: Platform | undefined;
  let worker: Platform | undefined;

  before(async () => {
    fs.writeFileSync(flowsFile, JSON.stringify(flow('version 1')));
    [editing, worker] = await Promise.all([
      start({ ...common, CONFLUX_DATA_DIR: dirs[0] }),
      start({ ...common, CONFLUX_DATA_DIR: dirs[1], CONFLUX_EDITOR: 'off' }),
    ]);
    // start() resolves once the server answers; the flows (the /greeting route) start after that.
    await Promise.all([waitForOutput(editing, /Started flows/), waitForOutput(worker, /Started flows/)]);
  });

  after(async () => {
    await Promise.all([stop(editing), stop(worker)]);
    for (const dir of [shared, ...dirs]) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs the same flows on both, and no first-start flow on either', async () => {
    assert.equal(await greeting(editing!), 'version 1');
    assert.equal(await greeting(worker!), 'version 1');
    for (const dir of dirs) assert.ok(!fs.existsSync(path.join(dir, 'flows.json')), 'the first-start flow was written into a data dir');
    assert.match(worker!.output(), /flows: .*flows\.json \(CONFLUX_FLOWS_FILE\)/);
  });

  it('serves neither the editor nor the admin API on an instance with CONFLUX_EDITOR=off', async () => {
    assert.equal((await getJson(worker!, '/flows')).status, 404);
    const deploy = await fetch(`${worker!.base}/flows`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(flow('changed on the worker')),
    });
    assert.equal(deploy.status, 404);
    assert.equal(await greeting(worker!), 'version 1');
    assert.equal((await getJson(editing!, '/flows')).status, 200, 'the editing instance keeps its admin API');
  });

  it('takes what the editing instance deployed into the file when restarted', async () => {
    const deploy = await fetch(`${editing!.base}/flows`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(flow('version 2')),
    });
    assert.equal(deploy.status, 204, await deploy.text());
    // The answer comes before the new flows have started.
    await until('the editing instance answers with version 2', async () => (await greeting(editing!).catch(() => '')) === 'version 2');
    assert.match(fs.readFileSync(flowsFile, 'utf8'), /version 2/, 'the deploy went into the shared file');
    assert.equal(await greeting(worker!), 'version 1', 'a running worker keeps its flows until restarted');
    await stop(worker);
    worker = await start({ ...common, CONFLUX_DATA_DIR: dirs[1], CONFLUX_EDITOR: 'off' });
    await waitForOutput(worker, /Started flows/);
    assert.equal(await greeting(worker), 'version 2');
  });

  it('refuses to start when CONFLUX_FLOWS_FILE names no file', async () => {
    await assert.rejects(
      start({ ...common, CONFLUX_FLOWS_FILE: path.join(shared, 'missing.json'), CONFLUX_DATA_DIR: dirs[1] }),
      /CONFLUX_FLOWS_FILE names .*missing\.json, which does not exist/,
    );
  });
});
