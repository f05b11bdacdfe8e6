/**
 * Acceptance: `npm start` with nothing configured accepts a reading from the reference device
 * client over each of MQTT (embedded broker), TCP, UDP and HTTP, and it lands in the stores.
 * The demo device and its key come from the first start's log, as a person trying it would take them.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openSql } from '../../nodes/core/db/sql';
import { sendOne, type SendOptions } from '../../tools/device-client/cli';
import { debugSidebar, freePort, press, root, start, START_TIMEOUT_MS, stop, tempDataDir, waitForOutput, type Platform } from '../support/platform';
import { until } from '../support/wait';

const flow = JSON.parse(fs.readFileSync(path.join(root, 'flows', 'default.json'), 'utf8')) as { id: string; name?: string }[];
const byName = (name: string) => flow.find((n) => n.name === name)!.id;
const NAME = 'demo-0001/temperature';
const VALUES: Record<SendOptions['transport'], number> = { tcp: 1.5, udp: 2.5, http: 3.5, mqtt: 4.5 };

describe('acceptance: npm start accepts readings from the reference device client', function () {
  this.timeout(START_TIMEOUT_MS + 60_000);
  const dataDir = tempDataDir();
  let platform: Platform | undefined;
  const ports = { tcp: 0, udp: 0, mqtt: 0 };

  before(async () => {
    ports.tcp = await freePort();
    ports.udp = await freePort(); // a free TCP port number: good enough for UDP on loopback here
    ports.mqtt = await freePort();
    platform = await start({
      CONFLUX_DATA_DIR: dataDir,
      CONFLUX_TCP_PORT: String(ports.tcp),
      CONFLUX_UDP_PORT: String(ports.udp),
      CONFLUX_MQTT_PORT: String(ports.mqtt),
    });
  });
  after(async () => {
    await stop(platform);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('over TCP, UDP, HTTP and MQTT, each reading stored in the cache, the time series and PGlite', async () => {
    // The key is logged once the flows have started: waited for as it is written, up to a minute.
    const [, key] = await waitForOutput(platform!, /demo device demo-0001; its key, shown only this once: (\S+)/, START_TIMEOUT_MS);
    const base = {
      serial: 'demo-0001',
      key,
      host: '127.0.0.1',
      tcpPort: ports.tcp,
      udpPort: ports.udp,
      mqttPort: ports.mqtt,
      http: `${platform!.base}/devices`,
    };
    for (const transport of ['tcp', 'udp', 'http', 'mqtt'] as const) {
      const said = await sendOne({ ...base, transport, value: VALUES[transport] });
      assert.match(said, new RegExp(transport, 'i'));
    }
    // As an integrator tries it first: curl with Content-Type application/json.
    const curl = execFileSync(
      'curl',
      [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-u',
        `demo-0001:${key}`,
        '-H',
        'Content-Type: application/json',
        '--data',
        `[{"n":"curl","u":"Cel","v":7.5,"t":${Math.floor(Date.now() / 1000)}}]`,
        `${platform!.base}/devices/demo-0001/telemetry`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(curl, '202', 'curl: application/json telemetry is accepted');

    const sidebar = await debugSidebar(platform!);
    try {
      const values = async () => {
        await press(platform!, byName('time series: first 100 readings'));
        let event = await sidebar.next();
        while (event.name !== 'stored data') event = await sidebar.next();
        return (JSON.parse(event.msg) as { n: string; v: number }[])
          .filter((r) => r.n === NAME)
          .map((r) => r.v)
          .sort();
      };
      // UDP is not acknowledged: its reading may land after the others. The query runs until all four are there.
      let seen: number[] = [];
      await until(
        () => `one reading per transport in the time series (seen ${seen.join(', ') || 'none'})`,
        async () => (seen = await values()).length >= 4,
      );
      assert.deepEqual(seen, Object.values(VALUES).sort(), 'one reading per transport in the time series');
    } finally {
      sidebar.close();
    }
    assert.equal(await stop(platform), 0);
    platform = undefined;
    const db = await openSql({ dataDir: path.join(dataDir, 'pglite') });
    try {
      const { rows } = await db.query<{ v: number; u: string }>("SELECT v, u FROM readings WHERE tenant_id = 'default' AND name = $1 ORDER BY v", [NAME]);
      assert.deepEqual(
        rows.map((r) => r.v),
        Object.values(VALUES).sort(),
      );
      assert.ok(rows.every((r) => r.u === 'Cel'));
      const rollups = await db.query<{ count: number }>("SELECT count FROM rollups WHERE name = $1 AND size = 'hour'", [NAME]);
      assert.ok(rollups.rows.length >= 1, 'rolled up');
      const viaCurl = await db.query<{ v: number }>("SELECT v FROM readings WHERE tenant_id = 'default' AND name = 'demo-0001/curl'");
      assert.deepEqual(
        viaCurl.rows.map((r) => r.v),
        [7.5],
        'the 202 answered to curl was for a stored reading',
      );
    } finally {
      await db.close();
    }
  });
});
