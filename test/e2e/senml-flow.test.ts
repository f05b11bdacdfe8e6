/**
 * The acceptance flow as an integrator meets it: the platform started as `npm start` does, the
 * shipped example "inject → conflux-senml → debug" deployed through the admin API, its inject
 * button pressed, and the debug sidebar's message read from the editor's websocket.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolvedMultipleMeasurements } from '../fixtures/rfc8428-multiple';
import { debugSidebar, press, root, START_TIMEOUT_MS, usePlatform } from '../support/platform';
import { elapse } from '../support/wait';

interface FlowNode {
  id: string;
  type: string;
  [key: string]: unknown;
}

const readFlow = (name: string): FlowNode[] => JSON.parse(fs.readFileSync(path.join(root, 'flows', name), 'utf8'));
const example = readFlow('senml-basics.json');

describe('acceptance: inject → conflux-senml (default settings) → debug', function () {
  this.timeout(START_TIMEOUT_MS + 30_000);
  const running = usePlatform();

  it('the example uses the node with its default settings', () => {
    const senml = example.find((n) => n.type === 'conflux-senml');
    assert.ok(senml, 'the example has a conflux-senml node');
    assert.equal(senml.mode, 'auto');
    assert.equal(senml.format, 'auto');
  });

  it('shows the RFC 8428 multiple-measurement example as its resolved records in the debug sidebar', async () => {
    const base = running.platform.base;
    const deploy = await fetch(`${base}/flows`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(example),
    });
    assert.equal(deploy.status, 204, await deploy.text()); // the v1 admin API answers a deploy with No Content

    const sidebar = await debugSidebar(running.platform);
    await press(running.platform, example.find((n) => n.type === 'inject')!.id);
    const shown = await sidebar.next();
    sidebar.close();
    assert.equal(shown.format, 'array[13]');
    assert.deepEqual(JSON.parse(shown.msg), resolvedMultipleMeasurements);
  });
});

describe('acceptance: the getting-started flow deployed on first start', function () {
  this.timeout(START_TIMEOUT_MS + 30_000);
  const running = usePlatform();
  const flow = readFlow('default.json');

  it('turns every sample into canonical records, and nothing reaches the error debug', async () => {
    const sidebar = await debugSidebar(running.platform);
    const converters = new Set(flow.filter((n) => /^conflux-(senml|sen1|ultralight|eapi|map)$/.test(n.type)).map((n) => n.id));
    const injects = flow.filter((n) => n.type === 'inject' && converters.has((n.wires as string[][])[0][0]));
    assert.equal(injects.length, 5);
    for (const inject of injects) {
      await press(running.platform, inject.id);
      const shown = await sidebar.next();
      const records = JSON.parse(shown.msg) as Array<Record<string, unknown>>;
      assert.ok(Array.isArray(records) && records.length > 0, `${String(inject.name)}: ${shown.msg}`);
      for (const r of records) {
        assert.equal(typeof r.n, 'string', `${String(inject.name)}: ${shown.msg}`);
        assert.ok(typeof r.t === 'number' && r.t >= 2 ** 28, `${String(inject.name)}: absolute time`);
      }
    }
    await elapse(300); // a negative check: a late error would arrive after its sample
    sidebar.close();
    assert.equal(sidebar.events.length, injects.length, JSON.stringify(sidebar.events.map((e) => e.name)));
  });
});
