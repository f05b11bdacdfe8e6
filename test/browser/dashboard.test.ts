/**
 * The operator dashboard in a real browser (Debian's Chromium, driven by playwright-core) on the
 * platform as `npm start` runs it, with embedded defaults only (PGlite, in-process cache, embedded
 * MQTT broker):
 *  - a reading sent by the reference device client over MQTT shows on /dashboard (the device
 *    online, its latest value) and through the REST API with the getting-started flow's demo key;
 *  - a message that failed for good shows as a dead letter; Retry on the dashboard puts it back
 *    into its outbox queue, and the queue's drainer delivers it.
 * Screenshots: test-artifacts/screenshots/dashboard-<name>.png.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { MqttDevice } from '../../tools/device-client/mqtt';
import { freePort, getJson, root, START_TIMEOUT_MS, usePlatform, waitForOutput, press } from '../support/platform';
import { answer, Receiver } from '../support/webhook-receiver';
import { until } from '../support/wait';
import { consoleErrors as collectConsoleErrors, launchChromium, screenshot } from '../support/browser';

const DATABASE = (JSON.parse(fs.readFileSync(path.join(root, 'flows', 'default.json'), 'utf8')) as { id: string; type: string }[]).find(
  (n) => n.type === 'conflux-postgres',
)!.id;
const VALUE = 23.25;
/** Waits on the page: generous, since it only matters when the test is failing. */
const PAGE_WAIT_MS = 30_000;

/**
 * A partner connection as an integrator wires one with core nodes: messages kept in an outbox
 * queue, drained into an HTTP request, acknowledged on a 2xx, failed otherwise; one attempt,
 * then a dead letter.
 */
function partnerFlow(url: string) {
  return {
    label: 'partner (test)',
    nodes: [
      {
        id: 'a1a1a1a1a1a1a1a1',
        type: 'inject',
        name: 'parcel',
        props: [{ p: 'payload' }],
        payload: 'parcel-1',
        payloadType: 'str',
        repeat: '',
        once: false,
        topic: '',
        x: 100,
        y: 60,
        wires: [['a2a2a2a2a2a2a2a2']],
      },
      {
        id: 'a2a2a2a2a2a2a2a2',
        type: 'conflux-mailbox',
        database: DATABASE,
        mode: 'enqueue',
        box: 'outbox',
        queue: 'partner',
        tenant: 'default',
        x: 300,
        y: 60,
        wires: [[]],
      },
      {
        id: 'a3a3a3a3a3a3a3a3',
        type: 'conflux-mailbox',
        database: DATABASE,
        mode: 'drain',
        box: 'outbox',
        queue: 'partner',
        pollMs: '50',
        maxAttempts: '1',
        baseDelayMs: '10',
        maxDelayMs: '10',
        x: 100,
        y: 140,
        wires: [['a4a4a4a4a4a4a4a4']],
      },
      { id: 'a4a4a4a4a4a4a4a4', type: 'http request', method: 'POST', ret: 'txt', paytoqs: 'ignore', url, x: 300, y: 140, wires: [['a5a5a5a5a5a5a5a5']] },
      {
        id: 'a5a5a5a5a5a5a5a5',
        type: 'switch',
        property: 'statusCode',
        propertyType: 'msg',
        rules: [{ t: 'btwn', v: '200', vt: 'num', v2: '299', v2t: 'num' }, { t: 'else' }],
        checkall: 'false',
        outputs: 2,
        x: 480,
        y: 140,
        wires: [['a3a3a3a3a3a3a3a3'], ['a6a6a6a6a6a6a6a6']],
      },
      {
        id: 'a6a6a6a6a6a6a6a6',
        type: 'change',
        rules: [{ t: 'set', p: 'error', pt: 'msg', to: '{"message": "the partner answered " & $string(statusCode)}', tot: 'jsonata' }],
        x: 660,
        y: 180,
        wires: [['a3a3a3a3a3a3a3a3']],
      },
    ],
  };
}

describe('browser: the operator dashboard (/dashboard) on npm start with embedded defaults', function () {
  this.timeout(START_TIMEOUT_MS + 120_000);
  const ports = { tcp: 0, udp: 0, mqtt: 0 };
  // Registered before usePlatform's hook, so the platform starts on these ports.
  before(async () => {
    ports.tcp = await freePort();
    ports.udp = await freePort(); // a free TCP port number: good enough for UDP on loopback here
    ports.mqtt = await freePort();
  });
  const running = usePlatform(() => ({
    CONFLUX_TCP_PORT: String(ports.tcp),
    CONFLUX_UDP_PORT: String(ports.udp),
    CONFLUX_MQTT_PORT: String(ports.mqtt),
  }));
  const partner = new Receiver();
  let browser: Browser;
  let page: Page;
  let device: MqttDevice | undefined;
  let consoleErrors: string[] = [];

  before(async function () {
    this.timeout(START_TIMEOUT_MS);
    await partner.start();
    partner.handler = answer(503);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
    consoleErrors = collectConsoleErrors(page);
  });
  after(async () => {
    await device?.end();
    await browser?.close();
    await partner.stop();
  });

  const shot = (name: string) => screenshot(page, `dashboard-${name}`);
  const row = (panel: string, text: string) => page.locator(`.conflux-${panel} tr`, { hasText: text });

  it('shows a reading sent by the reference device client: the device online and its latest value, also through the REST API', async () => {
    const platform = running.platform;
    const [, key] = await waitForOutput(platform, /demo device demo-0001; its key, shown only this once: (\S+)/);
    const [, apiKey] = await waitForOutput(platform, /API key for tenant "default"; shown only this once: (\S+)/);
    device = await MqttDevice.connect({ url: `mqtt://127.0.0.1:${ports.mqtt}`, serial: 'demo-0001', key, tenant: 'default', reconnectPeriod: 0 });
    await device.publish('senml+json', [{ n: 'temperature', u: 'Cel', v: VALUE }], { qos: 1 });

    await page.goto(`${platform.base}/dashboard/operations`);
    await row('devices', 'demo-0001').filter({ hasText: 'online' }).waitFor({ timeout: PAGE_WAIT_MS });
    await row('latest', 'demo-0001/temperature')
      .filter({ hasText: String(VALUE) })
      .waitFor({ timeout: PAGE_WAIT_MS });
    assert.equal((await page.locator('.conflux-online').innerText()).replace(/\D+/g, ''), '1', 'one device online');
    await shot('device-online');

    const { status, body } = await getJson(platform, '/api/v2/devices/demo-0001/latest', { 'EAPI-ELCLV2': apiKey });
    assert.equal(status, 200, JSON.stringify(body));
    const item = (body.items as { name: string; value: number }[]).find((i) => i.name === 'demo-0001/temperature');
    assert.equal(item?.value, VALUE, JSON.stringify(body));
  });

  it('charts the sensor picked from the dropdown (readings and hourly rollups)', async () => {
    await page.locator('.conflux-sensor').click();
    await page.getByRole('option', { name: 'demo-0001/temperature' }).click();
    await page.locator('.conflux-sensor', { hasText: 'demo-0001/temperature' }).waitFor({ timeout: PAGE_WAIT_MS });
    await page.locator('.conflux-chart-readings canvas').waitFor({ timeout: PAGE_WAIT_MS });
    await shot('charts');
  });

  it('lists a dead letter, and Retry puts it back into its outbox queue, where the drainer delivers it', async () => {
    const platform = running.platform;
    const deployed = await fetch(`${platform.base}/flow`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(partnerFlow(partner.url)),
    });
    assert.equal(deployed.status, 200, await deployed.text());
    await press(platform, 'a1a1a1a1a1a1a1a1');
    await until('the partner to be tried once', () => partner.received.length === 1);
    const letter = page.locator('.conflux-dead-letter', { hasText: 'partner' });
    await letter.filter({ hasText: 'the partner answered 503' }).waitFor({ timeout: PAGE_WAIT_MS });
    await row('mailboxes', 'partner').waitFor({ timeout: PAGE_WAIT_MS });
    await shot('dead-letter');

    partner.handler = answer(204);
    await letter.locator('.conflux-retry').click();
    await until('the retried message to reach the partner', () => partner.received.length === 2);
    assert.equal(partner.received[1].body, 'parcel-1');
    await letter.waitFor({ state: 'detached', timeout: PAGE_WAIT_MS });
    await page.locator('.conflux-dead-letters-empty').waitFor({ timeout: PAGE_WAIT_MS });
    await shot('dead-letter-retried');
  });

  it('Drop deletes a dead letter for good: it leaves the list and is not sent again', async () => {
    partner.handler = answer(503);
    await press(running.platform, 'a1a1a1a1a1a1a1a1');
    await until('the second parcel to be tried once', () => partner.received.length === 3);
    const letter = page.locator('.conflux-dead-letter', { hasText: 'the partner answered 503' });
    await letter.waitFor({ timeout: PAGE_WAIT_MS });
    partner.handler = answer(204);
    await letter.locator('.conflux-drop').click();
    await letter.waitFor({ state: 'detached', timeout: PAGE_WAIT_MS });
    await page.locator('.conflux-dead-letters-outcome', { hasText: 'dropped' }).waitFor({ timeout: PAGE_WAIT_MS });
    await shot('dead-letter-dropped');
    // Gone from the outbox too: the mailboxes panel no longer lists the partner queue.
    await row('mailboxes', 'partner').waitFor({ state: 'detached', timeout: PAGE_WAIT_MS });
    assert.equal(partner.received.length, 3, 'a dropped message is not delivered');
    assert.deepEqual(consoleErrors, [], 'no error in the browser console');
  });
});
