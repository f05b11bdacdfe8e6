/**
 * The editor as an integrator meets it, in a real browser (Debian's Chromium, playwright-core):
 * - the palette shows every Conflux node with its icon (the shipped SVG, served) and, on hover,
 *   its summary from the help in the browser's language, English and German;
 * - each shipped flow, taken from Import > Examples in a freshly started platform, imports with no
 *   unknown node and no node left without its configuration, deploys, and leaves no error in the
 *   browser console.
 * Screenshots go to test-artifacts/screenshots/ (kept by CI as artefacts).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { getJson, root, usePlatform, type Platform } from '../support/platform';
import { launchChromium, consoleErrors as collectConsoleErrors, offlineCatalogue, screenshot } from '../support/browser';

const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string };

/** The first paragraph of each Conflux type's help in `lang`, as text, from the built catalogs. */
function helpSummaries(lang: string): Map<string, string> {
  const byType = new Map<string, string>();
  const nodes = path.join(root, 'dist', 'nodes');
  for (const family of fs.readdirSync(nodes)) {
    const dir = path.join(nodes, family, 'locales', lang);
    if (!fs.existsSync(dir)) continue;
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.html'))) {
      const html = fs.readFileSync(path.join(dir, file), 'utf8');
      for (const m of html.matchAll(/<script type="text\/html" data-help-name="([^"]+)">([\s\S]*?)<\/script>/g)) {
        const p = /<p>([\s\S]*?)<\/p>/.exec(m[2]);
        byType.set(
          m[1],
          (p ? p[1] : m[2])
            .replace(/<[^>]+>/g, '')
            .replace(/\s+/g, ' ')
            .trim(),
        );
      }
    }
  }
  return byType;
}

/** Loads the editor and waits until its palette has the Conflux nodes. */
async function openEditor(page: Page, platform: Platform): Promise<void> {
  await page.goto(`${platform.base}/`);
  // The palette comes before the flows: an import before the deployed flows are in would see no
  // conflict, and the flows loaded after it would then clash with it.
  await page.waitForFunction(
    () => {
      const RED = (globalThis as any).RED;
      return (globalThis as any).document.querySelector('.red-ui-palette-node[data-palette-type="conflux-senml"]') !== null && RED?.nodes?.version() != null;
    },
    null,
    { timeout: 120_000 },
  );
}

async function checkPalette(browser: Browser, platform: Platform, locale: string, lang: string): Promise<void> {
  const summaries = helpSummaries(lang);
  const context = await browser.newContext({ locale, viewport: { width: 1600, height: 2400 } });
  await offlineCatalogue(context);
  const page = await context.newPage();
  const consoleErrors = collectConsoleErrors(page);
  await openEditor(page, platform);

  // Config nodes have no place in Node-RED's palette (they appear where a node uses them).
  const types = await page.evaluate(() => {
    const RED = (globalThis as any).RED;
    return (RED.nodes.registry.getNodeTypes() as string[]).filter((t) => t.startsWith('conflux-') && RED.nodes.getType(t).category !== 'config').sort();
  });
  assert.ok(types.length >= 25, `only ${types.length} Conflux palette types`);
  const shippedIcons = new Set(fs.readdirSync(path.join(root, 'icons')));

  for (const type of types) {
    const node = page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
    await node.scrollIntoViewIfNeeded();
    assert.ok(await node.isVisible(), `${type} is not shown in the palette`);

    // The icon: a CSS background naming one of the package's SVGs, which the editor serves.
    const icon = await node.locator('.red-ui-palette-icon').evaluate((el) => (globalThis as any).getComputedStyle(el).backgroundImage as string);
    const url = /url\("?([^")]+)"?\)/.exec(icon)?.[1];
    assert.ok(url, `${type}: no icon (${icon})`);
    const file = decodeURIComponent(url.split('/').pop()!);
    assert.ok(shippedIcons.has(file), `${type}: icon ${file} is not one of the package's icons`);
    const served = await page.evaluate(async (u) => {
      const r = await fetch(u);
      return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.text() };
    }, url);
    assert.equal(served.status, 200, `${type}: icon ${url}`);
    assert.match(served.type, /image\/svg\+xml/, `${type}: icon ${url}`);
    assert.equal(served.body, fs.readFileSync(path.join(root, 'icons', file), 'utf8'), `${type}: icon ${url} is not the shipped file`);

    // Hover: the popover shows the help's first paragraph, in the browser's language.
    const want = summaries.get(type);
    assert.ok(want, `${type}: no ${lang} help shipped`);
    await node.hover();
    const popover = page.locator('.red-ui-popover').filter({ hasText: want.slice(0, 60) });
    await popover.first().waitFor({ state: 'visible', timeout: 15_000 });
    await page.mouse.move(0, 0);
    await page.locator('.red-ui-popover').first().waitFor({ state: 'detached', timeout: 15_000 });
  }
  await screenshot(page, `palette-${lang}`);
  assert.deepEqual(consoleErrors, [], `no error in the ${lang} browser console`);
  await context.close();
}

/** Every shipped flow file, by example name (as Import > Examples lists them). */
function shippedFlows(): { name: string; nodes: { id: string; type: string; z?: string }[] }[] {
  const dir = path.join(root, 'flows');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ name: f.replace(/\.json$/, ''), nodes: JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) }));
}

async function deployFlows(platform: Platform, flows: unknown[]): Promise<void> {
  const res = await fetch(`${platform.base}/flows`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full', 'Node-RED-API-Version': 'v1' },
    body: JSON.stringify(flows),
  });
  assert.ok(res.ok, `resetting the flows: ${res.status} ${await res.text()}`);
}

/**
 * Import > Examples > the package > `name`, as a user clicks through it. When the editor says some
 * nodes already exist (the dashboard carries copies of the getting-started flow's connections), the
 * user views them and keeps the running ones: `existing` are unticked, the rest imported.
 */
async function importExample(page: Page, name: string, existing: string[]): Promise<void> {
  await page.evaluate(() => (globalThis as any).RED.actions.invoke('core:show-examples-import-dialog'));
  const dialog = page.locator('#red-ui-clipboard-dialog');
  const label = (text: string) =>
    dialog.locator('.red-ui-treeList-label-text').filter({ hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`) });
  await label(pkg.name).first().click();
  await label(name).first().click();
  const before = await page.evaluate(() => (globalThis as any).RED.workspaces.count() as number);
  await page.locator('#red-ui-clipboard-dialog-ok').click();
  // The dialog closes at once and fetches the example afterwards: the import is done when a tab
  // appears or the editor asks about the nodes that already exist.
  await page.waitForFunction(
    (count) => {
      const doc = (globalThis as any).document;
      const asked = Array.from(doc.querySelectorAll('.red-ui-notification button') as ArrayLike<{ textContent: string }>).some((b) =>
        /View nodes/.test(b.textContent),
      );
      return asked || (globalThis as any).RED.workspaces.count() > count;
    },
    before,
    { timeout: 30_000 },
  );
  const viewNodes = page.locator('.red-ui-notification button').filter({ hasText: 'View nodes' });
  if (await viewNodes.isVisible()) {
    await viewNodes.click();
    for (const id of existing) {
      const box = page.locator(`.red-ui-clipboard-dialog-import-conflicts-gutter input[data-node-id="${id}"]`);
      if ((await box.count()) > 0) await box.uncheck();
    }
    await page.locator('#red-ui-clipboard-dialog-import-conflict').click();
    await page.waitForFunction((count) => (globalThis as any).RED.workspaces.count() > count, before, { timeout: 30_000 });
  }
  await dialog.waitFor({ state: 'hidden', timeout: 30_000 });
}

describe('the editor in a browser: palette and shipped flows', function () {
  this.timeout(900_000);
  const running = usePlatform();
  let browser: Browser | undefined;

  before(async function () {
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
  });

  it('shows every Conflux node in the palette with its icon and English summary', async () => {
    await checkPalette(browser!, running.platform, 'en-US', 'en-US');
  });

  it('shows every Conflux node in the palette with its icon and German summary', async () => {
    await checkPalette(browser!, running.platform, 'de-DE', 'de');
  });

  it('imports each shipped flow from Import > Examples and deploys it, with no unknown or unconfigured node and no console error', async () => {
    const initial = (await getJson(running.platform, '/flows')).body as { id: string; z?: string }[];
    const flows = shippedFlows();
    assert.ok(flows.length >= 6, `only ${flows.length} shipped flows`);
    const context = await browser!.newContext({ locale: 'en-US', viewport: { width: 1600, height: 1000 } });
    await offlineCatalogue(context);
    const page = await context.newPage();
    const consoleErrors = collectConsoleErrors(page);

    for (const flow of flows) {
      // From what npm start deployed, less the tabs this flow brings itself (the getting-started
      // flow and the dashboard are among the examples too); shared connections stay.
      const tabs = new Set(flow.nodes.filter((n) => n.type === 'tab').map((n) => n.id));
      const baseline = initial.filter((n) => !tabs.has(n.id) && !tabs.has(n.z ?? ''));
      await deployFlows(running.platform, baseline);
      const deployed = new Set(baseline.map((n) => n.id));
      const existing = flow.nodes.filter((n) => deployed.has(n.id)).map((n) => n.id);
      consoleErrors.length = 0;
      await openEditor(page, running.platform);
      const tabsBefore = await page.evaluate(() => {
        const ids: string[] = [];
        (globalThis as any).RED.nodes.eachWorkspace((w: { id: string }) => ids.push(w.id));
        return ids;
      });

      await importExample(page, flow.name, existing);
      const problems = await page.evaluate((before) => {
        const RED = (globalThis as any).RED;
        const found: string[] = [];
        const check = (n: any) => {
          if (n.type === 'unknown') found.push(`unknown type ${n._orig?.type ?? '?'} (${n.id})`);
          else if (n.valid === false) found.push(`${n.type} ${n.name || n.id} is not properly configured`);
        };
        RED.nodes.eachNode(check);
        RED.nodes.eachConfig(check);
        const tabs: string[] = [];
        RED.nodes.eachWorkspace((w: { id: string }) => tabs.push(w.id));
        const added = tabs.filter((t) => !before.includes(t));
        if (added.length > 0) RED.workspaces.show(added[0]);
        return { found, newTabs: added.length };
      }, tabsBefore);
      assert.deepEqual(problems.found, [], `${flow.name}: after the import`);
      assert.ok(problems.newTabs >= 1, `${flow.name}: the import added no tab`);

      await page.locator('#red-ui-header-button-deploy').click();
      try {
        await page.locator('.red-ui-notification').filter({ hasText: 'Successfully deployed' }).first().waitFor({ state: 'visible', timeout: 60_000 });
      } catch (err) {
        await screenshot(page, `flow-${flow.name}-not-deployed`);
        const shown = await page.locator('.red-ui-notification').allTextContents();
        throw new Error(`${flow.name}: no "Successfully deployed" (notifications: ${JSON.stringify(shown)})`, { cause: err });
      }
      await screenshot(page, `flow-${flow.name}`);
      assert.deepEqual(consoleErrors, [], `${flow.name}: errors in the browser console`);
    }
    await deployFlows(running.platform, initial);
    await context.close();
  });
});
