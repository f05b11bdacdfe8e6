/**
 * The self-service page as the conflux-api node serves it: its three files only, with a strict
 * Content-Security-Policy, a redirect to the trailing slash its relative links need, nothing else
 * under its path; and the files themselves hold no inline script or style (the CSP would block
 * them), write no API data as HTML, and keep the key out of localStorage and URLs.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SELF_SERVICE_CSP, SELF_SERVICE_DIR, selfServiceAnswer } from '../../nodes/core/api/self-service';

const read = (name: string) => fs.readFileSync(path.join(SELF_SERVICE_DIR, name), 'utf8');

describe('the self-service page', () => {
  it('serves its three files with their types and a strict CSP', () => {
    for (const [rest, type] of [
      ['/', 'text/html'],
      ['/app.js', 'text/javascript'],
      ['/style.css', 'text/css'],
    ]) {
      const answer = selfServiceAnswer('GET', rest);
      assert.equal(answer.status, 200, rest);
      assert.ok(answer.headers['content-type'].startsWith(type), `${rest}: ${answer.headers['content-type']}`);
      assert.equal(answer.headers['content-security-policy'], SELF_SERVICE_CSP);
      assert.equal(answer.headers['x-content-type-options'], 'nosniff');
      assert.ok(Buffer.byteLength(answer.body) > 100);
    }
    assert.match(SELF_SERVICE_CSP, /default-src 'none'/);
    assert.match(SELF_SERVICE_CSP, /script-src 'self'/);
    assert.doesNotMatch(SELF_SERVICE_CSP, /unsafe/);
    assert.equal(selfServiceAnswer('HEAD', '/').body, '');
  });

  it('redirects to the trailing slash, refuses other methods and every other path', () => {
    const redirect = selfServiceAnswer('GET', '');
    assert.deepEqual([redirect.status, redirect.headers.location], [301, 'self-service/']);
    assert.equal(selfServiceAnswer('POST', '/').status, 405);
    for (const rest of ['/../package.json', '/..%2fpackage.json', '/index.htm', '/App.js', '/constructor', '/__proto__', '/x/app.js'])
      assert.equal(selfServiceAnswer('GET', rest).status, 404, rest);
  });

  it('has no inline script or style, and no event handler attributes', () => {
    const html = read('index.html');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    assert.ok(scripts.length > 0);
    for (const [, attrs, body] of scripts) {
      assert.match(attrs, /\bsrc="app\.js"/);
      assert.equal(body.trim(), '');
    }
    assert.doesNotMatch(html, /<style\b|\sstyle="|\son[a-z]+="|javascript:/i);
  });

  it('writes API data as text only and keeps the key in sessionStorage, never in a URL', () => {
    const js = read('app.js');
    assert.doesNotMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|localStorage/);
    assert.match(js, /sessionStorage/);
    assert.match(js, /'EAPI-ELCLV2'/);
    assert.doesNotMatch(js, /[?&](key|apikey|api_key)=/i);
  });
});
