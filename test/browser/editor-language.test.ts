/**
 * The editor in a real browser (Debian's Chromium, driven by playwright-core) that asks for German:
 * every Conflux node's edit form and help are German, from the shipped catalogs, and nothing in the
 * form is left as a bare catalog key.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { root, usePlatform } from '../support/platform';
import { launchChromium, screenshot } from '../support/browser';

interface Shipped {
  /** Catalog of the node's file in the language (common texts merged, as the build ships it). */
  catalog: Record<string, unknown>;
  /** Help page of the type in the language. */
  help: string;
}

/** What the package ships for each Conflux type in `lang`, read from dist/nodes/<family>/locales. */
function shipped(lang: string): Map<string, Shipped> {
  const byType = new Map<string, Shipped>();
  const nodes = path.join(root, 'dist', 'nodes');
  for (const family of fs.readdirSync(nodes)) {
    const dir = path.join(nodes, family, 'locales', lang);
    if (family === 'shared' || !fs.existsSync(dir)) continue;
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.html'))) {
      const html = fs.readFileSync(path.join(dir, file), 'utf8');
      const catalog = JSON.parse(fs.readFileSync(path.join(dir, file.replace(/\.html$/, '.json')), 'utf8')) as Record<string, unknown>;
      for (const m of html.matchAll(/<script type="text\/html" data-help-name="([^"]+)">([\s\S]*?)<\/script>/g)) {
        byType.set(m[1], { catalog, help: m[2].trim() });
      }
    }
  }
  return byType;
}

function lookup(catalog: Record<string, unknown>, key: string): string | undefined {
  let at: unknown = catalog;
  for (const part of key.split('.')) at = at && typeof at === 'object' ? (at as Record<string, unknown>)[part] : undefined;
  return typeof at === 'string' ? at : undefined;
}

/** The first sentence-bearing paragraph of a help page, as text. */
function firstParagraph(help: string): string {
  const p = /<p>([\s\S]*?)<\/p>/.exec(help);
  return (p ? p[1] : help)
    .replace(/<[^>]+>/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

interface FormText {
  key: string;
  attr: string;
  text: string;
}

/** Opens the edit form of a new node of `type` and returns every catalog-driven text in it. */
async function formTexts(page: Page, type: string): Promise<FormText[]> {
  await page.evaluate((t) => {
    const RED = (globalThis as any).RED;
    if (RED.nodes.getType(t).category === 'config') {
      RED.editor.editConfig('', t, '_ADD_', '');
    } else {
      const id = RED.nodes.id();
      RED.view.importNodes([{ id, type: t, x: 200, y: 200, z: RED.workspaces.active(), wires: [] }]);
      RED.editor.edit(RED.nodes.node(id));
    }
  }, type);
  // The template's i18n is applied when the tray is built; wait for the form's rows.
  await page.waitForFunction(
    () => (globalThis as any).document.querySelectorAll('#dialog-form .form-row, #node-config-dialog-edit-form .form-row').length > 0,
    null,
    { timeout: 30_000 },
  );
  const texts = await page.evaluate(() =>
    (Array.from((globalThis as any).document.querySelectorAll('#dialog-form [data-i18n], #node-config-dialog-edit-form [data-i18n]')) as any[]).flatMap(
      (el: any) =>
        (el.getAttribute('data-i18n') ?? '').split(';').map((spec: string) => {
          const m = /^\[([a-z-]+)\](.*)$/.exec(spec.trim());
          const attr = m ? m[1] : 'text';
          const key = m ? m[2] : spec.trim();
          const text = attr === 'text' || attr === 'html' ? (el.textContent ?? '') : (el.getAttribute(attr) ?? '');
          return { key, attr, text: text.replace(/\s+/g, ' ').trim() };
        }),
    ),
  );
  await page.evaluate(() => {
    const RED = (globalThis as any).RED;
    RED.tray.close();
  });
  await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('.red-ui-tray').length === 0, null, { timeout: 30_000 });
  return texts;
}

describe('the editor in a German browser', function () {
  this.timeout(300_000);
  const running = usePlatform();
  let browser: Browser | undefined;

  before(async function () {
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
  });

  it('shows every Conflux node with its German form and help, and no bare key', async () => {
    const german = shipped('de');
    const english = shipped('en-US');
    const context = await browser!.newContext({ locale: 'de-DE' });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${running.platform.base}/`);
    await page.waitForFunction(() => (globalThis as any).document.querySelector('.red-ui-palette-node[data-palette-type="conflux-senml"]') !== null, null, {
      timeout: 120_000,
    });

    const types = await page.evaluate(() => ((globalThis as any).RED.nodes.registry.getNodeTypes() as string[]).filter((t) => t.startsWith('conflux-')).sort());
    assert.deepEqual(types, [...german.keys()].sort(), 'the editor knows exactly the types the package ships help for');

    for (const type of types) {
      const de = german.get(type)!;
      const en = english.get(type)!;
      // Help, as the Help sidebar shows it.
      const help = await page.evaluate((t) => (globalThis as any).RED.nodes.getNodeHelp(t) as string, type);
      const normalise = (s: string) => s.replace(/<[^>]+>/g, '').replace(/\s+/g, ' ');
      assert.ok(normalise(help).includes(firstParagraph(de.help)), `${type}: the help is not the German one:\n${help.slice(0, 300)}`);
      assert.notEqual(firstParagraph(de.help), firstParagraph(en.help), `${type}: the German help is the English one`);

      // The edit form: every text from the node's own catalog is the German one.
      const texts = await formTexts(page, type);
      // The editor prefixes a node template's keys with the node set's namespace.
      const own = texts.filter((t) => t.key.startsWith('@conflux-iot/node-red-conflux/')).map((t) => ({ ...t, key: t.key.slice(t.key.indexOf(':') + 1) }));
      assert.ok(own.length > 0, `${type}: the form shows no text from its catalog`);
      for (const t of own) {
        const want = lookup(de.catalog, t.key);
        assert.ok(want !== undefined, `${type}: the form uses ${t.key}, which the German catalog lacks`);
        assert.notEqual(t.text, t.key, `${type}: ${t.key} is shown as a bare key`);
        assert.equal(
          t.text,
          want
            .replace(/<[^>]+>/g, '')
            .replace(/\s+/g, ' ')
            .trim(),
          `${type}: ${t.attr} of ${t.key}`,
        );
      }
    }
    await screenshot(page, 'editor-german');
    assert.deepEqual(pageErrors, [], 'no error in the page');
    await context.close();
  });
});
