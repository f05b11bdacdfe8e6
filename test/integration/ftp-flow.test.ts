/**
 * Seed 002's FTP delivery as a user meets it: `npm start` (dist/settings.js, the embedded
 * database) with CONFLUX_FTP_* naming the client's server, the shipped flows/seed-002-third-party-connections.json
 * deployed through the admin API as the editor does; its buttons set up the client's target in the
 * business store and deliver a processed vehicle, which lands on the server as VIN.zip with the
 * images and the metadata JSON.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { strFromU8, unzipSync } from 'fflate';
import { FtpFarm } from '../support/ftp-farm';
import { debugSidebar, press, root, usePlatform } from '../support/platform';
import { until } from '../support/wait';

type FlowNode = Record<string, unknown> & { id: string; type: string; name?: string };

describe('the FTP delivery of the shipped seed-002 flow (flows/seed-002-third-party-connections.json) under npm start', function () {
  this.timeout(240_000);
  let farm: FtpFarm | undefined;
  before(async () => {
    farm = await FtpFarm.start(1);
  });
  after(async () => farm?.stop());
  const server = () => farm!.servers[0];
  const ctx = usePlatform(() => ({
    CONFLUX_FTP_HOST: '127.0.0.1',
    CONFLUX_FTP_PORT: String(server().port),
    CONFLUX_FTP_TLS: 'ftp', // the in-process test server speaks plain FTP; FTPS is tested against pure-ftpd
    CONFLUX_FTP_USER: server().user,
    CONFLUX_FTP_PASSWORD: server().password,
  }));

  const flow = JSON.parse(fs.readFileSync(path.join(root, 'flows', 'seed-002-third-party-connections.json'), 'utf8')) as FlowNode[];
  const byName = (type: string, name: string): FlowNode => {
    const n = flow.find((x) => x.type === type && x.name === name);
    if (!n) throw new Error(`flows/seed-002-third-party-connections.json has no ${type} ${name}`);
    return n;
  };

  it('sets up the client target from CONFLUX_FTP_*, then delivers a processed vehicle as VIN.zip with its metadata', async () => {
    const base = ctx.platform.base;
    const v2 = { 'Node-RED-API-Version': 'v2' };
    const current = (await (await fetch(`${base}/flows`, { headers: { ...v2, Accept: 'application/json' } })).json()) as { rev: string; flows: FlowNode[] };
    const res = await fetch(`${base}/flows`, {
      method: 'POST',
      headers: { ...v2, 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify({ rev: current.rev, flows: [...current.flows, ...flow] }),
    });
    assert.equal(res.status, 200, await res.text());
    const sidebar = await debugSidebar(ctx.platform);
    try {
      await press(ctx.platform, byName('inject', 'set up dealer-7').id);
      await until('the target is created', () => sidebar.events.some((e) => e.name === 'the target (password never shown)' && /dealer-7/.test(e.msg)));
      const target = sidebar.events.find((e) => e.name === 'the target (password never shown)')!;
      assert.doesNotMatch(target.msg, new RegExp(server().password), 'the password is never shown');

      await press(ctx.platform, byName('inject', 'vehicle processed').id);
      await until('stored for delivery', () => sidebar.events.some((e) => e.name === 'stored for delivery'));
      assert.match(sidebar.events.find((e) => e.name === 'stored for delivery')!.msg, /"files":\["WVWZZZ1JZXW000001\.zip"\]/);
      await until('the zip is on the client server', () => farm!.files(0).length === 1);
      assert.deepEqual(farm!.files(0), ['vehicles/WVWZZZ1JZXW000001.zip']);
      const entries = unzipSync(farm!.read(0, 'vehicles/WVWZZZ1JZXW000001.zip'));
      assert.deepEqual(Object.keys(entries), ['WVWZZZ1JZXW000001_01.jpg', 'WVWZZZ1JZXW000001_02.jpg', 'WVWZZZ1JZXW000001.json']);
      assert.deepEqual(JSON.parse(strFromU8(entries['WVWZZZ1JZXW000001.json'])), {
        vin: 'WVWZZZ1JZXW000001',
        uploadedBy: 'ana',
        client: 'dealer-7',
        processedAt: '2026-03-02T08:15:00.000Z',
        images: 2,
      });
      assert.equal(sidebar.events.filter((e) => e.name === 'why').length, 0, JSON.stringify(sidebar.events.filter((e) => e.name === 'why')));
      assert.doesNotMatch(ctx.platform.output(), /unknown type|Waiting for missing types/i);
    } finally {
      sidebar.close();
    }
  });
});
