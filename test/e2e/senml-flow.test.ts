/**
 * The acceptance flow as an integrator meets it: the platform started as `npm start` does, the
 * shipped example "inject → conflux-senml → debug" deployed through the admin API, its inject
 * button pressed, and the debug sidebar's message read from the editor's websocket.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolvedMultipleMeasurements } from '../fixtures/rfc8428-multiple';
import { root, start, START_TIMEOUT_MS, stop, tempDataDir, type Platform } from '../support/platform';

// ws comes with node-red (the editor's own websocket library); Node 20 has no WebSocket client.
const WebSocket = require(require.resolve('ws', { paths: [path.dirname(require.resolve('node-red/package.json'))] }));

interface FlowNode {
  id: string;
  type: string;
  [key: string]: unknown;
}

const example: FlowNode[] = JSON.parse(fs.readFileSync(path.join(root, 'flows', 'senml-basics.json'), 'utf8'));

describe('acceptance: inject → conflux-senml (default settings) → debug', function () {
  this.timeout(START_TIMEOUT_MS + 30_000);
  const dataDir = tempDataDir();
  let platform: Platform | undefined;

  before(async () => {
    platform = await start({ CONFLUX_DATA_DIR: dataDir });
  });
  after(async () => {
    await stop(platform);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('the example uses the node with its default settings', () => {
    const senml = example.find((n) => n.type === 'conflux-senml');
    assert.ok(senml, 'the example has a conflux-senml node');
    assert.equal(senml.mode, 'auto');
    assert.equal(senml.format, 'auto');
  });

  it('shows the RFC 8428 multiple-measurement example as its resolved records in the debug sidebar', async () => {
    const base = platform!.base;
    const deploy = await fetch(`${base}/flows`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(example),
    });
    assert.equal(deploy.status, 204, await deploy.text()); // the v1 admin API answers a deploy with No Content

    const ws = new WebSocket(`ws://127.0.0.1:${platform!.port}/comms`);
    const debug = new Promise<Record<string, any>>((resolve, reject) => {
      ws.on('error', reject);
      ws.on('message', (data: Buffer) => {
        for (const event of [].concat(JSON.parse(data.toString()))) {
          const { topic, data: body } = event as { topic: string; data: Record<string, any> };
          if (topic === 'debug') resolve(body);
        }
      });
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(JSON.stringify({ subscribe: 'debug' }));

    const inject = example.find((n) => n.type === 'inject')!;
    // Until the deploy has started the flow, the inject endpoint answers 404: press again.
    let pressed = 0;
    for (let i = 0; i < 40 && pressed !== 200; i++) {
      const res = await fetch(`${base}/inject/${inject.id}`, { method: 'POST' });
      pressed = res.status;
      if (pressed !== 200) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(pressed, 200, 'the inject button answers');

    const shown = await debug;
    ws.close();
    assert.equal(shown.format, 'array[13]');
    assert.deepEqual(JSON.parse(shown.msg), resolvedMultipleMeasurements);
  });
});
