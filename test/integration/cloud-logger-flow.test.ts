/**
 * The shipped seed-004 flow (flows/seed-004-cloud-logger.json) under `npm start`: deployed beside the
 * getting-started flow through the admin API with no unknown node and no error; its schedule
 * (set to every second here, every 5 minutes as shipped) pulls a partner's paginated API into the
 * stores, and a third party reads the pulled measurements through the flow's customer API with
 * the demo key — each item once, also after more items arrive at the partner.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { press, root, usePlatform, waitForOutput } from '../support/platform';
import { PullSource } from '../support/pull-source';
import { freePort, freeUdpPort } from '../support/ports';
import { until } from '../support/wait';

type FlowNode = Record<string, unknown> & { id: string; type: string; name?: string };

const flow = JSON.parse(fs.readFileSync(path.join(root, 'flows', 'seed-004-cloud-logger.json'), 'utf8')) as FlowNode[];
const node = (type: string, name?: string): FlowNode => {
  const n = flow.find((x) => x.type === type && (name === undefined || x.name === name));
  if (!n) throw new Error(`flows/seed-004-cloud-logger.json has no ${type} ${name ?? ''}`);
  return n;
};

/** Items of the partner at one-minute steps from an hour ago: {id, ts, value}. */
const items = (from: number, count: number) =>
  Array.from({ length: count }, (_, k) => ({
    id: `r${from + k}`,
    ts: new Date(Date.now() - 3_600_000 + (from + k) * 60_000).toISOString(),
    value: 20 + (from + k) / 10,
  }));

describe('the shipped seed-004 flow (flows/seed-004-cloud-logger.json) under npm start', function () {
  this.timeout(240_000);
  const source = new PullSource({ pageSize: 7 });
  before(async () => {
    source.add(...items(0, 25));
    await source.start();
  });
  after(() => source.stop());
  // The getting-started flow's listeners on free ports, so that another platform on this machine does not meet them.
  const ports: Record<string, string> = {};
  before(async () => {
    Object.assign(ports, {
      CONFLUX_TCP_PORT: String(await freePort()),
      CONFLUX_UDP_PORT: String(await freeUdpPort()),
      CONFLUX_MQTT_PORT: String(await freePort()),
    });
  });
  const ctx = usePlatform(() => ({ ...ports, CONFLUX_PULL_URL: `${source.origin}/link` }));

  it('deploys, pulls the partner on schedule into the stores, and serves what it pulled through the customer API', async () => {
    const base = ctx.platform.base;
    const [, key] = await waitForOutput(ctx.platform, /API key for tenant "default"; shown only this once: (\S+)/);
    const v2 = { 'Node-RED-API-Version': 'v2' };
    const current = (await (await fetch(`${base}/flows`, { headers: { ...v2, Accept: 'application/json' } })).json()) as { rev: string; flows: FlowNode[] };
    const everySecond = flow.map((n) => (n.type === 'conflux-schedule' ? { ...n, cron: '* * * * * *' } : n));
    const res = await fetch(`${base}/flows`, {
      method: 'POST',
      headers: { ...v2, 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify({ rev: current.rev, flows: [...current.flows, ...everySecond] }),
    });
    assert.equal(res.status, 200, await res.text());
    await press(ctx.platform, node('inject', 'register partner-01').id);

    const get = async (p: string) => {
      const r = await fetch(`${base}/logger/api${p}`, { headers: { 'EAPI-ELCLV2': key } });
      return { status: r.status, body: (await r.json()) as any };
    };
    const measured = async () => {
      const r = await get('/v2/devices/partner-01/measurements?limit=1000');
      return r.status === 200 ? (r.body.items as { value: number; timeStamp: string }[]) : [];
    };
    let seen: { value: number }[] = [];
    await until(
      () => `the 25 pulled items through the API (seen ${seen.length})`,
      async () => (seen = await measured()).length >= 25,
      90_000,
    );
    source.add(...items(25, 10));
    await until(
      () => `the 10 new items too (seen ${seen.length})`,
      async () => (seen = await measured()).length >= 35,
      90_000,
    );
    assert.deepEqual(
      seen.map((m) => m.value),
      items(0, 35).map((i) => i.value),
      'every item once, in time order',
    );
    const status = await get('/v2/pull/status');
    assert.equal(status.status, 200, JSON.stringify(status.body));
    assert.equal(status.body.source, 'partner-readings');
    assert.equal(status.body.version, '2.1');
    assert.ok(status.body.watermark, `a watermark: ${JSON.stringify(status.body)}`);
    const log = ctx.platform.output();
    assert.doesNotMatch(log, /unknown type|Waiting for missing types/i);
    assert.doesNotMatch(log, /\[error\]/);
  });
});
