/**
 * Acceptance: from `npm start`, curl with the demo tenant's key (created at first start and logged
 * once) reads the demo device's measurements through v1 and v2, and gets each error code seed 004
 * lists: 400, 401, 404, 406 and 410 on a start with a request quota, 503 on a start in maintenance
 * (500 is test/integration/api.test.ts's, from a flow that fails). The key and the device's key come
 * from the log, as a person trying it would take them.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { start, START_TIMEOUT_MS, stop, tempDataDir, waitForOutput, type Platform } from '../support/platform';

const QUOTA = 40;

/** curl as a third party runs it: status, content type and body. */
function curl(url: string, headers: Record<string, string>): { status: number; type: string; body: any } {
  const args = ['-s', '-w', '\n%{http_code} %{content_type}'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  const out = execFileSync('curl', [...args, url], { encoding: 'utf8' });
  const cut = out.lastIndexOf('\n');
  const [status, type] = out.slice(cut + 1).split(' ');
  const text = out.slice(0, cut);
  return { status: Number(status), type, body: text ? JSON.parse(text) : undefined };
}

describe('acceptance: the REST API from npm start, with the demo key', function () {
  this.timeout(2 * START_TIMEOUT_MS + 60_000);
  const dataDir = tempDataDir();
  let platform: Platform | undefined;

  after(async () => {
    await stop(platform);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('reads measurements through v1 and v2 and answers 400, 401, 404, 406, 410 and (in maintenance) 503', async () => {
    platform = await start({ CONFLUX_DATA_DIR: dataDir, CONFLUX_API_QUOTA_REQUESTS: String(QUOTA) });
    const [, apiKey] = await waitForOutput(platform, /API key for tenant "default"; shown only this once: (\S+)/);
    const [, deviceKey] = await waitForOutput(platform, /demo device demo-0001; its key, shown only this once: (\S+)/);
    const t = Math.floor(Date.now() / 1000) - 60;
    const sent = execFileSync(
      'curl',
      [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-u',
        `demo-0001:${deviceKey}`,
        '-H',
        'Content-Type: application/json',
        '--data',
        `[{"bn":"7/","n":"temperature","u":"Cel","v":21.5,"t":${t}},{"n":"temperature","u":"Cel","v":22,"t":${t + 1}}]`,
        `${platform.base}/devices/demo-0001/telemetry`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(sent, '202');

    const api = `${platform.base}/api`;
    const key = { 'EAPI-ELCLV2': apiKey };
    const from = new Date((t - 10) * 1000).toISOString();
    for (const v of [1, 2]) {
      const answer = curl(`${api}/v${v}/devices/demo-0001/measurements?from=${from}`, key);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.version, v === 1 ? '1.0' : '2.1');
      assert.deepEqual(
        answer.body.items.map((m: any) => [m.deviceId, m.sensorId, m.unitType, m.value, m.unit]),
        [
          ['demo-0001', 7, 'temperature', 21.5, '°C'],
          ['demo-0001', 7, 'temperature', 22, '°C'],
        ],
      );
      assert.equal(answer.body.items[0].timeStamp, new Date(t * 1000).toISOString().replace('.000Z', '+00:00'));
      assert.equal('name' in answer.body.items[0], v === 2, 'v2 adds the SenML name');
    }
    const problems: Array<[number, string, Record<string, string>]> = [
      [400, `${api}/v2/devices/demo-0001/measurements?from=yesterday`, key],
      [401, `${api}/v2/devices/demo-0001/measurements`, { 'EAPI-ELCLV2': 'cfx_not-a-key-at-all' }],
      [404, `${api}/v2/devices/no-such-serial/measurements`, key],
      [406, `${api}/v1/devices/demo-0001/measurements`, { ...key, Accept: 'text/html' }],
    ];
    for (const [status, url, headers] of problems) {
      const answer = curl(url, headers);
      assert.equal(answer.status, status, `${url}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.type, 'application/problem+json');
      assert.equal(answer.body.status, status);
    }
    // The quota is per key and day: used up, every request is 410 and says when it resets.
    let last = curl(`${api}/v2/devices`, key);
    for (let i = 0; i < QUOTA && last.status === 200; i++) last = curl(`${api}/v2/devices`, key);
    assert.equal(last.status, 410, JSON.stringify(last.body));
    assert.ok(Date.parse(last.body.reset) > Date.now(), `a reset time in the future: ${JSON.stringify(last.body)}`);
    assert.equal(await stop(platform), 0);

    platform = await start({ CONFLUX_DATA_DIR: dataDir, CONFLUX_API_MAINTENANCE: 'true' });
    await waitForOutput(platform, /Started flows/);
    const down = curl(`${platform.base}/api/v2/devices`, key);
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.ok(Number(down.body.retryAfter) > 0);
  });
});
