/**
 * Every node speaks en-US, de, es and fr: each node file's message catalog has the same keys in
 * every language (with the same __substitutions__), every key an editor template, editor script or
 * runtime file uses exists in English, and every node type has a help page in every language.
 * Reads the sources (nodes/), as the build merges nodes/shared/locales/<lang>/common.json into
 * each catalog.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { root } from '../support/platform';

const LANGS = ['en-US', 'de', 'es', 'fr'];
const nodesDir = path.join(root, 'nodes');
type Catalog = Record<string, unknown>;

function readJson(file: string): Catalog {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Catalog;
}

/** "a.b.c" → value, for every string leaf. */
function flatten(catalog: Catalog, strict = true, prefix = '', into = new Map<string, string>()): Map<string, string> {
  for (const [key, value] of Object.entries(catalog)) {
    const at = prefix + key;
    if (typeof value === 'string') into.set(at, value);
    else if (value && typeof value === 'object' && !Array.isArray(value)) flatten(value as Catalog, strict, `${at}.`, into);
    else if (strict) assert.fail(`${at}: a catalog value is a string or an object, got ${JSON.stringify(value)}`);
  }
  return into;
}

const common = (lang: string) => flatten(readJson(path.join(nodesDir, 'shared', 'locales', lang, 'common.json')));
const coreEnglish = flatten(readJson(require.resolve('@node-red/nodes/locales/en-US/messages.json')), false);

/** The node files package.json declares, as their sources: nodes/<family>/<base>. */
const pkg = readJson(path.join(root, 'package.json')) as { 'node-red': { nodes: Record<string, string> } };
const nodeFiles = Object.values(pkg['node-red'].nodes).map((js) => {
  const rel = path.relative(path.join('dist', 'nodes'), js).replace(/\.js$/, '');
  return { family: path.dirname(rel), base: path.basename(rel), dir: path.join(nodesDir, path.dirname(rel)) };
});

function catalogOf(dir: string, base: string, lang: string): Map<string, string> {
  const file = path.join(dir, 'locales', lang, `${base}.json`);
  assert.ok(fs.existsSync(file), `${path.relative(root, file)} is missing`);
  const own = flatten(readJson(file));
  for (const key of own.keys()) assert.ok(!key.startsWith('conflux.'), `${base}.json (${lang}) redefines the common key ${key}`);
  return new Map([...common(lang), ...own]);
}

const substitutions = (text: string) => [...text.matchAll(/__(\w+)__/g)].map((m) => m[1]).sort();

function keysInHtml(html: string): string[] {
  const keys: string[] = [];
  for (const m of html.matchAll(/data-i18n="([^"]+)"/g)) for (const part of m[1].split(';')) keys.push(part.replace(/^\[[^\]]+\]/, ''));
  for (const m of html.matchAll(/(?:this|RED)\._\(\s*'([^']+)'/g)) keys.push(m[1]);
  return keys;
}

/** Catalog keys in a TypeScript file: every string literal shaped like one of ours. */
function keysInTs(ts: string, sections: string[]): string[] {
  const shape = new RegExp(`^(${sections.map((s) => s.replace(/[-.]/g, '\\$&')).join('|')})\\.[\\w.]+$`);
  return [...ts.matchAll(/'([^'\s]+)'|`([^`$\s]+)`/g)].map((m) => m[1] ?? m[2]).filter((s) => shape.test(s));
}

function missingFrom(english: Map<string, string>, keys: string[]): string[] {
  return keys.filter((key) => (key.startsWith('node-red:') ? !coreEnglish.has(key.slice('node-red:'.length)) : !english.has(key)));
}

describe('message catalogs and help', () => {
  it('covers the 31 node files of package.json', () => {
    assert.equal(nodeFiles.length, 39);
  });

  it('the common catalog has the same keys and substitutions in every language', () => {
    const english = common('en-US');
    for (const lang of LANGS.slice(1)) {
      const other = common(lang);
      assert.deepEqual([...other.keys()].sort(), [...english.keys()].sort(), `common.json (${lang})`);
      for (const [key, text] of english) assert.deepEqual(substitutions(other.get(key)!), substitutions(text), `common.json (${lang}) ${key}`);
    }
  });

  it('the keys nodes/shared uses are in the common catalog', () => {
    const english = common('en-US');
    for (const file of fs.readdirSync(path.join(nodesDir, 'shared')).filter((f) => f.endsWith('.ts'))) {
      const used = keysInTs(fs.readFileSync(path.join(nodesDir, 'shared', file), 'utf8'), ['conflux']);
      assert.deepEqual(missingFrom(english, used), [], `nodes/shared/${file} uses keys that common.json lacks`);
    }
  });

  for (const { family, base, dir } of nodeFiles) {
    describe(`${family}/${base}`, () => {
      it('has the same keys and substitutions in de, es and fr as in en-US', () => {
        const english = catalogOf(dir, base, 'en-US');
        for (const lang of LANGS.slice(1)) {
          const other = catalogOf(dir, base, lang);
          const missing = [...english.keys()].filter((k) => !other.has(k));
          const extra = [...other.keys()].filter((k) => !english.has(k));
          assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${base}.json (${lang}) against en-US`);
          for (const [key, text] of english) assert.deepEqual(substitutions(other.get(key)!), substitutions(text), `${base}.json (${lang}) ${key}`);
        }
      });

      it('has an English entry for every key its editor and runtime use', () => {
        const english = catalogOf(dir, base, 'en-US');
        const html = fs.readFileSync(path.join(dir, `${base}.html`), 'utf8');
        assert.deepEqual(missingFrom(english, keysInHtml(html)), [], `${base}.html`);
        const ts = fs.readFileSync(path.join(dir, `${base}.ts`), 'utf8');
        const used = keysInTs(ts, ['conflux', base]);
        assert.deepEqual(missingFrom(english, used), [], `${base}.ts`);
      });

      it('shows no English words in its edit dialog outside the catalog', () => {
        const html = fs.readFileSync(path.join(dir, `${base}.html`), 'utf8');
        for (const [, template] of html.matchAll(/<script type="text\/html" data-template-name="[^"]+">([\s\S]*?)<\/script>/g)) {
          const words = template
            // an option that names an identifier (an entity, a dt_* type, a number) stays as it is
            .replace(/<option(?![^>]*data-i18n)[^>]*>\s*[\w.]+\s*<\/option>/g, ' ')
            .replace(/<[^>]+>/g, ' ')
            .split(/\s+/)
            .filter((w) => /[A-Za-z]{2}/.test(w) && !/^(Elasticsearch|MQTT|TLS|ms|demo-0001)$/.test(w));
          assert.deepEqual(words, [], `${base}.html: text not from the catalog`);
        }
        // Examples (a URL, a path, a default value) may stay; prose goes through the catalog.
        for (const [, text] of html.matchAll(/placeholder="([^"]*)"/g)) {
          if (!text.includes(' ') || text.startsWith('-----')) continue;
          assert.doesNotMatch(text, /(^|\s)[a-z]{3,}(\s|$)/, `${base}.html: placeholder "${text}" has words outside the catalog`);
        }
      });

      it('has a help page for each of its node types in every language, none inline', () => {
        const html = fs.readFileSync(path.join(dir, `${base}.html`), 'utf8');
        const types = [...html.matchAll(/data-template-name="([^"]+)"/g)].map((m) => m[1]);
        assert.ok(types.length > 0, `${base}.html defines a node type`);
        assert.doesNotMatch(html, /data-help-name=/, `${base}.html keeps its help in locales/<lang>/${base}.html`);
        const english = fs.readFileSync(path.join(dir, 'locales', 'en-US', `${base}.html`), 'utf8');
        for (const lang of LANGS) {
          const file = path.join(dir, 'locales', lang, `${base}.html`);
          assert.ok(fs.existsSync(file), `${path.relative(root, file)} is missing`);
          const help = fs.readFileSync(file, 'utf8');
          const helpTypes = [...help.matchAll(/data-help-name="([^"]+)"/g)].map((m) => m[1]);
          assert.deepEqual(helpTypes.sort(), [...types].sort(), `${path.relative(root, file)}: help pages`);
          if (lang !== 'en-US') {
            assert.notEqual(help, english, `${path.relative(root, file)} is the English text`);
            // The same message properties (settings may be named in the language) are documented in every language.
            const props = (text: string) => [...text.matchAll(/<dt[^>]*>\s*([\w.]+)/g)].map((m) => (/^[a-z]/.test(m[1]) ? m[1] : 'a setting'));
            assert.deepEqual(props(help), props(english), `${path.relative(root, file)}: documented properties`);
          }
        }
      });
    });
  }
});
