/**
 * What conflux-webhook-in acknowledged survives a SIGKILL (issue 10, item 3): the platform runs
 * as `npm start` runs it (dist/settings.js, the embedded PGlite), with a flow of its own — the
 * webhook node, a function node that holds every event while CRASH_HOLD=1, and a file node that
 * appends each event's id once the flow lets it through. A sender posts events as fast as it
 * can; after some have been answered 202 the platform is killed with SIGKILL while the flow holds
 * them all, then started again without the hold. Every acknowledged event must then come out of
 * the flow exactly once, and a sender's retry of it is answered 200 duplicate.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql } from '../../nodes/core/db/sql';
import { createBusinessStore } from '../../nodes/core/stores/business';
import { freePort, start, START_TIMEOUT_MS, stop, tempDataDir, type Platform } from '../support/platform';
import { until } from '../support/wait';

/** Acknowledgements before the kill. */
const ACKS_BEFORE_KILL = 40;
/** Requests out at once. */
const WINDOW = 8;

function flow(delivered: string): unknown[] {
  // x and y: Node-RED takes a node without them for a config node.
  return [
    { id: 'tab', type: 'tab', label: 'webhook crash' },
    { id: 'db', type: 'conflux-postgres', url: '' },
    // A short flow timeout: a lease (timeout + 10 s) left by the killed process runs out soon.
    {
      id: 'wh',
      type: 'conflux-webhook-in',
      z: 'tab',
      database: 'db',
      path: '/hooks/crash',
      auth: 'api-key',
      codec: 'json',
      timeout: '3',
      x: 100,
      y: 100,
      wires: [['hold']],
    },
    {
      id: 'hold',
      type: 'function',
      z: 'tab',
      // Mentions node.done, so Node-RED leaves completion to the function: a held event never completes.
      func: "if (env.get('CRASH_HOLD') === '1') return null;\nmsg.payload = msg.webhook.id;\nnode.send(msg);\nnode.done();\nreturn null;",
      outputs: 1,
      x: 300,
      y: 100,
      wires: [['file']],
    },
    {
      id: 'file',
      type: 'file',
      z: 'tab',
      filename: delivered,
      filenameType: 'str',
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

describe('crash: SIGKILL after conflux-webhook-in answered 2xx, before the flow finished', function () {
  this.timeout(4 * START_TIMEOUT_MS);
  const dataDir = tempDataDir();
  let platform: Platform | undefined;
  after(async () => {
    if (platform) platform.child.kill('SIGKILL');
    await platform?.exited;
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('hands every acknowledged event to the flow after the restart, once', async () => {
    const delivered = path.join(dataDir, 'delivered.txt');
    fs.writeFileSync(path.join(dataDir, 'flows.json'), JSON.stringify(flow(delivered)));
    const setup = await openSql({ dataDir: path.join(dataDir, 'pglite') });
    let key: string;
    try {
      await migrate(setup);
      key = (await createBusinessStore(setup).create('default', 'api_keys', { name: 'partner', scopes: ['webhooks'] })).key as string;
    } finally {
      await setup.close();
    }
    const vars = {
      CONFLUX_DATA_DIR: dataDir,
      CONFLUX_PORT: String(await freePort()),
      CONFLUX_TCP_PORT: String(await freePort()),
      CONFLUX_UDP_PORT: String(await freePort()),
      CONFLUX_MQTT_PORT: String(await freePort()),
    };
    const url = `http://127.0.0.1:${vars.CONFLUX_PORT}/hooks/crash`;
    const send = (n: number) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': key, 'webhook-id': `crash-${n}` },
        body: JSON.stringify({ id: `evt_${n}`, type: 'order.paid', subject: `order-${n}`, occurredAt: new Date().toISOString(), data: { n } }),
        signal: AbortSignal.timeout(30_000),
      }).then(async (res) => ({ status: res.status, body: await res.text() }));

    platform = await start({ ...vars, CRASH_HOLD: '1' });
    // The banner comes before the flows have started: wait until the route answers (a request
    // without a key is refused and stores nothing).
    await until('the webhook-in route to be mounted', async () => (await fetch(url, { method: 'POST', body: '{}' })).status !== 404, 60_000);
    const acked: string[] = [];
    const refused: string[] = [];
    let sent = 0;
    let inFlight = 0;
    await new Promise<void>((resolve) => {
      let killed = false;
      const next = (): void => {
        if (killed) return;
        const n = ++sent;
        inFlight++;
        send(n).then(
          ({ status, body }) => {
            inFlight--;
            if (status === 202) acked.push(`crash-${n}`);
            else refused.push(`${status} ${body.slice(0, 200)}`);
            if (!killed && acked.length >= ACKS_BEFORE_KILL) {
              killed = true;
              platform!.child.kill('SIGKILL');
              resolve();
            } else next();
          },
          () => {
            inFlight--; // cut off by the kill: not acknowledged
          },
        );
      };
      for (let i = 0; i < WINDOW; i++) next();
    });
    const inFlightAtKill = inFlight;
    await platform.exited;
    assert.deepEqual(refused, [], 'nothing refused before the kill');
    assert.ok(!fs.existsSync(delivered) || fs.readFileSync(delivered, 'utf8') === '', 'the flow held every event before the kill');

    platform = await start({ ...vars, CRASH_HOLD: '0' });
    const lines = () => (fs.existsSync(delivered) ? fs.readFileSync(delivered, 'utf8').split('\n').filter(Boolean) : []);
    await until(
      () => `every acknowledged event to come out of the flow (${lines().length} of ${acked.length})`,
      () => acked.every((id) => lines().includes(id)),
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${platform!.output().slice(-4000)}`);
    });
    // The sender, not sure of its answers, sends them all again: each is the same event.
    const retries = await Promise.all(acked.map((id) => send(Number(id.slice('crash-'.length)))));
    assert.deepEqual(
      retries.map((r) => r.status),
      acked.map(() => 200),
    );
    const out = lines();
    const twice = out.filter((id, i) => out.indexOf(id) !== i);
    console.log(
      `      webhook-in crash: ${acked.length} acknowledged before the SIGKILL (${inFlightAtKill} requests cut off), ${out.length} delivered after the restart, ${twice.length} delivered twice, ${retries.length} retries answered 200 duplicate`,
    );
    assert.deepEqual(twice, [], 'no event delivered twice');
    assert.equal(await stop(platform), 0, `the platform did not stop cleanly:\n${platform.output().slice(-3000)}`);
    platform = undefined;

    const db = await openSql({ dataDir: path.join(dataDir, 'pglite') });
    try {
      const left = await db.query<{ n: string }>('SELECT count(*) AS n FROM inbox');
      assert.equal(Number(left.rows[0].n), 0, 'every delivered event was acked in the inbox');
    } finally {
      await db.close();
    }
  });
});
