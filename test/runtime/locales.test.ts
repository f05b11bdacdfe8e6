/**
 * Acceptance: the editor shows every Conflux node in German when the browser asks for German.
 * A real Node-RED (`node dist/settings.js`) serves what the editor loads: the message catalogs
 * (GET /nodes/messages?lng=…, which fill the edit dialogs, palette labels and validation
 * reasons) and the node definitions with their help (GET /nodes as text/html with the
 * browser's Accept-Language).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { getJson, root, START_TIMEOUT_MS, usePlatform } from '../support/platform';

const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string; 'node-red': { nodes: Record<string, string> } };
/** node set name → its built .js, e.g. conflux-senml → dist/nodes/convert/senml.js */
const nodeSets = Object.entries(pkg['node-red'].nodes);

function built(js: string, lang: string, ext: 'json' | 'html'): string {
  return fs.readFileSync(path.join(root, path.dirname(js), 'locales', lang, `${path.basename(js, '.js')}.${ext}`), 'utf8');
}

/** The help page of `type` in the text/html node configs. */
function helpOf(configs: string, type: string): string {
  const m = new RegExp(`<script type="text/html" data-help-name="${type}">([\\s\\S]*?)</script>`).exec(configs);
  assert.ok(m, `no help for ${type} in GET /nodes`);
  return m[1];
}

/** The first paragraph of each help page in a built help file. */
function firstParagraphs(html: string): Map<string, string> {
  const pages = new Map<string, string>();
  for (const m of html.matchAll(/data-help-name="([^"]+)">\s*<p>([\s\S]*?)<\/p>/g)) pages.set(m[1], m[2]);
  return pages;
}

describe('the editor in German (a real Node-RED)', function () {
  this.timeout(START_TIMEOUT_MS + 30_000);
  const running = usePlatform();

  for (const lng of ['de', 'de-DE']) {
    it(`serves every Conflux node's German catalog (GET /nodes/messages?lng=${lng})`, async () => {
      const { status, body } = await getJson(running.platform, `/nodes/messages?lng=${lng}`);
      assert.equal(status, 200);
      for (const [name, js] of nodeSets) {
        const namespace = `${pkg.name}/${name}`;
        const served = (body as Record<string, unknown>)[namespace];
        assert.deepEqual(served, JSON.parse(built(js, 'de', 'json')), `${namespace}: the German catalog as built`);
        assert.notDeepEqual(served, JSON.parse(built(js, 'en-US', 'json')), `${namespace} is served in English`);
      }
    });
  }

  it('serves every Conflux node type with its German help when the browser asks for German (GET /nodes)', async () => {
    const res = await fetch(`${running.platform.base}/nodes`, { headers: { Accept: 'text/html', 'Accept-Language': 'de-DE,de;q=0.9,en;q=0.8' } });
    assert.equal(res.status, 200);
    const configs = await res.text();
    let types = 0;
    for (const [, js] of nodeSets) {
      const german = firstParagraphs(built(js, 'de', 'html'));
      const english = firstParagraphs(built(js, 'en-US', 'html'));
      for (const [type, text] of german) {
        types++;
        const help = helpOf(configs, type);
        assert.ok(help.includes(text), `${type}: the German help, got ${help.slice(0, 200)}`);
        assert.ok(!help.includes(english.get(type)!), `${type}: the English help`);
      }
    }
    assert.equal(types, nodeSets.length, 'a help page per node type');
  });

  it('still serves English to a browser that asks for English', async () => {
    const res = await fetch(`${running.platform.base}/nodes`, { headers: { Accept: 'text/html', 'Accept-Language': 'en-US,en;q=0.9' } });
    const configs = await res.text();
    const [name, js] = nodeSets[0];
    const english = firstParagraphs(built(js, 'en-US', 'html'));
    for (const [type, text] of english) assert.ok(helpOf(configs, type).includes(text), `${name}: ${type} in English`);
  });
});
