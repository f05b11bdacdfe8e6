/**
 * The self-service page in a real browser (Debian's Chromium, playwright-core), on the platform
 * as `npm start` runs it with embedded defaults only: a third party signs in with the API key of
 * their user, sees the event catalogue, adds a webhook to a local receiver, and the receiver gets
 * the page's test event and the next real event (a flow's vehicle.processed); the deliveries are
 * listed with their 2xx status; a resend arrives again with the same webhook-id; paused, the
 * webhook gets nothing from the next event (a second webhook, never paused, shows that event went
 * out); another tenant's key sees none of it; an FTP target with naming rules is added. Every API
 * answer the test reads itself is checked against the served OpenAPI document (ApiClient).
 * Screenshots: test-artifacts/screenshots/self-service-<name>.png.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { consoleErrors as collectConsoleErrors, launchChromium, screenshot } from '../support/browser';
import { migrate } from '../../nodes/core/db/migrate';
import { openPglite } from '../../nodes/core/db/pglite';
import { createBusinessStore, createTenant } from '../../nodes/core/stores/business';
import { ApiClient } from '../support/api-client';
import { press, START_TIMEOUT_MS, tempDataDir, usePlatform } from '../support/platform';
import { until } from '../support/wait';
import { Receiver, type Received } from '../support/webhook-receiver';

const WAIT_MS = 30_000;

/**
 * The getting-started flow's webhooks (group 5): its "a vehicle was processed" inject emits the
 * event into its conflux-webhook-out. The receiver is on 127.0.0.1, so the test ticks "allow
 * private destinations" on its Conflux webhooks configuration, as a user with a local receiver does.
 */
const WEBHOOKS = '0c6f3e2a9b1d4e56'; // flows/default.json's conflux-webhooks
const INJECT = '0c6f3e2a9b1d4e52'; // flows/default.json's "a vehicle was processed"

const webhookId = (r: Received) => (r.headers as Record<string, string>)['webhook-id'];
const typeOf = (r: Received) => (JSON.parse(r.body) as { type: string }).type;

describe('the self-service page in a browser', function () {
  this.timeout(300_000);
  const keys = { user: '', other: '' };
  // Before the first start, the keys go into the embedded database the platform then opens (as
  // an operator's tooling would): one for a user of tenant default, one for tenant globex.
  const dataDir = tempDataDir();
  before(async function () {
    this.timeout(START_TIMEOUT_MS);
    const db = await openPglite(path.join(dataDir, 'pglite'));
    try {
      await migrate(db);
      const business = createBusinessStore(db);
      await createTenant(db, { id: 'globex', name: 'Globex' });
      const user = await business.create('default', 'users', { username: 'dealer-7' });
      keys.user = String((await business.create('default', 'api_keys', { name: 'dealer-7', scopes: [], user_id: user.id })).key);
      keys.other = String((await business.create('globex', 'api_keys', { name: 'globex', scopes: [] })).key);
    } finally {
      await db.close();
    }
  });
  const running = usePlatform(() => ({ CONFLUX_DATA_DIR: dataDir }));
  let browser: Browser | undefined;
  let receiver: Receiver;
  let api: ApiClient;

  before(async function () {
    receiver = await new Receiver().start();
    browser = await launchChromium();
    // The getting-started flow serves the API and sends the webhooks.
    const { platform } = running;
    await until('the REST API and the page to be served', async () => (await fetch(`${platform.base}/api/self-service/`)).status === 200, START_TIMEOUT_MS);
    const current = (await (await fetch(`${platform.base}/flows`)).json()) as { id: string; allowPrivate?: boolean }[];
    const webhooks = current.find((n) => n.id === WEBHOOKS);
    assert.ok(webhooks, 'the getting-started flow has its Conflux webhooks configuration');
    webhooks.allowPrivate = true;
    const deploy = await fetch(`${platform.base}/flows`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: JSON.stringify(current),
    });
    assert.equal(deploy.status, 204, await deploy.text());
    await until('the REST API after the deploy', async () => (await fetch(`${platform.base}/api/v2/openapi.json`)).status === 200, START_TIMEOUT_MS);
    api = await ApiClient.connect(platform.base, '/api');
  });

  after(async () => {
    await browser?.close();
    await receiver?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('lets a user add, test, watch, resend and pause a webhook, and shows another tenant nothing of it', async () => {
    const context = await browser!.newContext();
    const page = await context.newPage();
    const problems = collectConsoleErrors(page);
    page.on('dialog', (d) => void d.accept());
    const base = running.platform.base;

    // The page is served with its CSP, and a wrong key is refused.
    const served = await fetch(`${base}/api/self-service/`);
    assert.match(served.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    await page.goto(`${base}/api/self-service`); // redirected to the trailing slash
    assert.ok(page.url().endsWith('/api/self-service/'), page.url());
    await page.fill('#login-key', 'cfx_not-a-key');
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('.message.error', { timeout: WAIT_MS });
    assert.ok(await page.isVisible('#login'));
    assert.deepEqual(
      problems.filter((p) => !/status of 401/.test(p)),
      [],
    );
    problems.length = 0; // the refused key's 401 is the one console error expected

    // Signs in with the user's key; the key is in sessionStorage, not in the URL.
    await signIn(page, keys.user);
    assert.ok(!page.url().includes(keys.user));
    assert.equal(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('conflux.selfService.key')), keys.user);
    assert.equal(await page.evaluate(() => (globalThis as any).localStorage.length), 0);

    // The catalogue shows the platform's types and the flow's own vehicle.processed.
    await page.click('nav.tabs button[data-tab=events]');
    await page.waitForSelector('#event-list tr[data-type="vehicle.processed"]', { timeout: WAIT_MS });
    assert.ok(await page.isVisible('#event-list tr[data-type="device.connected"]'));
    await shot(page, 'catalogue');
    await page.click('#event-list tr[data-type="vehicle.processed"] button[data-action=use-event]');
    assert.equal(await page.inputValue('#wh-events'), 'vehicle.processed');

    // Adds a webhook with basic auth to the local receiver.
    await page.fill('#wh-url', `${receiver.url}/main`);
    await page.fill('#wh-username', 'partner');
    await page.fill('#wh-password', 's3cret-pw');
    await page.click('#webhook-form button[type=submit]');
    const row = page.locator('#webhook-list tbody tr').first();
    await row.waitFor({ timeout: WAIT_MS });
    assert.equal(await row.getAttribute('data-state'), 'active');
    const subscription = (await row.getAttribute('data-id'))!;
    await shot(page, 'webhook-added');

    // The page's test button, then the next real event: both reach the receiver.
    const main = () => receiver.received.filter((r) => r.path === '/hook/main');
    await row.locator('button[data-action=test]').click();
    await until('the test event at the receiver', () => main().length === 1);
    assert.equal(typeOf(main()[0]), 'webhook.test');
    assert.equal((main()[0].headers as Record<string, string>).authorization, `Basic ${Buffer.from('partner:s3cret-pw').toString('base64')}`);
    await press(running.platform, INJECT);
    await until('the vehicle.processed event at the receiver', () => main().length === 2);
    const processed = main()[1];
    assert.equal(typeOf(processed), 'vehicle.processed');
    assert.equal((JSON.parse(processed.body) as { data: { vin: string } }).data.vin, 'WVWZZZ1JZXW000001');

    // Both deliveries listed with their 2xx status.
    await row.locator('button[data-action=deliveries]').click();
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#delivery-list tr[data-status="204"]').length === 2, null, {
      timeout: WAIT_MS,
    });
    await shot(page, 'deliveries');

    // Resend the real event: it arrives again with the same webhook-id and body, and is logged.
    await page.click(`#delivery-list tr[data-event-id="${webhookId(processed)}"] button[data-action=resend]`);
    await until('the resent event at the receiver', () => main().length === 3);
    assert.equal(webhookId(main()[2]), webhookId(processed));
    assert.equal(main()[2].body, processed.body);
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#delivery-list tr[data-status="204"]').length === 3, null, {
      timeout: WAIT_MS,
    });
    await shot(page, 'resent');

    // The resend's answer as the API gives it conforms to the OpenAPI document.
    const listed = await api.get(`/v2/webhooks/${subscription}/deliveries`, { key: keys.user });
    assert.equal(listed.status, 200);
    const again = await api.post(`/v2/webhooks/${subscription}/deliveries/${listed.body.items[0].id}/resend`, undefined, { key: keys.user });
    assert.equal(again.status, 202);
    await until('the API resend at the receiver', () => main().length === 4);

    // A second webhook on the same events, then pause the first: the next event reaches only the second.
    await page.fill('#wh-url', `${receiver.url}/witness`);
    await page.fill('#wh-events', 'vehicle.*');
    await page.click('#webhook-form button[type=submit]');
    await page.locator('#webhook-list tbody tr').nth(1).waitFor({ timeout: WAIT_MS });
    await page.click(`#webhook-list tr[data-id="${subscription}"] button[data-action=pause]`);
    await page.waitForSelector(`#webhook-list tr[data-id="${subscription}"][data-state="paused"]`, { timeout: WAIT_MS });
    const before = main().length;
    const witness = () => receiver.received.filter((r) => r.path === '/hook/witness');
    await press(running.platform, INJECT);
    await until('the next event at the second webhook', () => witness().length === 1);
    assert.equal(typeOf(witness()[0]), 'vehicle.processed');
    assert.equal(main().length, before, 'the paused webhook got nothing');
    await shot(page, 'paused');

    // Another tenant's key: none of these webhooks, on the page and through the API.
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])', { timeout: WAIT_MS });
    await signIn(page, keys.other);
    await page.waitForSelector('#webhook-empty:not([hidden])', { timeout: WAIT_MS });
    assert.equal(await page.locator('#webhook-list tbody tr').count(), 0);
    await shot(page, 'other-tenant');
    const theirs = await api.get('/v2/webhooks', { key: keys.other });
    assert.deepEqual(theirs.body.items, []);
    assert.equal((await api.get(`/v2/webhooks/${subscription}/deliveries`, { key: keys.other })).status, 404);
    assert.equal((await api.post(`/v2/webhooks/${subscription}/deliveries/1/resend`, undefined, { key: keys.other, bearer: true })).status, 404);

    assert.deepEqual(problems, [], 'no error in the page (a CSP violation would be one)');
    await context.close();
  });

  it('lets a user add an FTP target with naming rules, and refuses a bad rule', async () => {
    const context = await browser!.newContext();
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    await page.goto(`${running.platform.base}/api/self-service/`);
    await signIn(page, keys.user);
    await page.click('nav.tabs button[data-tab=ftp]');
    await page.fill('#ftp-name', 'dealer 7');
    await page.fill('#ftp-client', 'dealer-7');
    await page.fill('#ftp-host', 'ftp.dealer7.example');
    await page.fill('#ftp-username', 'upload');
    await page.fill('#ftp-password', 'pw-123');
    await page.fill('#ftp-naming', '{vin}_{nn:02}.{ext}');
    await page.fill('#ftp-archive', '{vin}.zip');
    await page.click('#ftp-form button[type=submit]');
    const row = page.locator('#ftp-list tbody tr').first();
    await row.waitFor({ timeout: WAIT_MS });
    assert.match((await row.textContent()) ?? '', /naming: \{vin\}_\{nn:02\}\.\{ext\}.*archive: \{vin\}\.zip/);
    await shot(page, 'ftp');

    await row.locator('button[data-action=edit]').click();
    await page.fill('#ftp-naming', '{vin_{nn}.jpg');
    await page.click('#ftp-form button[type=submit]');
    await page.waitForSelector('.message.error', { timeout: WAIT_MS });
    assert.match((await page.textContent('#message')) ?? '', /naming/);
    const listed = await api.get('/v2/ftp-targets', { key: keys.user });
    assert.equal(listed.body.items[0].naming, '{vin}_{nn:02}.{ext}', 'the bad rule was not stored');
    assert.equal(JSON.stringify(listed.body).includes('pw-123'), false);
    assert.deepEqual(problems, []);
    await context.close();
  });
});

async function signIn(page: Page, key: string): Promise<void> {
  await page.fill('#login-key', key);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])', { timeout: WAIT_MS });
}

function shot(page: Page, name: string): Promise<void> {
  return screenshot(page, `self-service-${name}`);
}
