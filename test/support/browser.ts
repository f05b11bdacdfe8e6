/**
 * What the browser tests share: Debian's Chromium with the flags this machine needs, and where
 * screenshots go (test-artifacts/screenshots/, kept by CI as artefacts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { strict as assert } from 'node:assert';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { root } from './platform';

export const CHROMIUM = '/usr/bin/chromium';

// Without the background-networking flags Chromium keeps dialling Google's hosts, which this
// machine's closed network refuses.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium, headless; a missing one fails the test with what installs it. */
export async function launchChromium(): Promise<Browser> {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: test/servers/servers.sh installs Debian's chromium`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

export const SCREENSHOTS = path.join(root, 'test-artifacts', 'screenshots');

/** Saves a full-page screenshot as test-artifacts/screenshots/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/**
 * The palette manager fetches the Flow Library catalogue from catalogue.nodered.org when the
 * editor opens; this machine has no internet, so the context answers it with an empty catalogue
 * instead of logging a failed request in the console the tests watch.
 */
export async function offlineCatalogue(context: BrowserContext): Promise<void> {
  await context.route('https://catalogue.nodered.org/**', (route) =>
    route.fulfill({ json: { name: 'offline', updated_at: new Date(0).toISOString(), modules: [] } }),
  );
}

/** Every error the page logs to its console or throws, as it happens (the list grows). */
export function consoleErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (err) => errors.push(err.message));
  return errors;
}
