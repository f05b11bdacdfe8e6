/**
 * The self-service page for third parties (docs/self-service.md): three static files shipped in
 * the package (self-service/ beside this module: scripts/build.js copies them), served by the
 * conflux-api node under `<base>/self-service/`. The page calls the REST API from the browser
 * with the user's key; it holds no data of its own, so serving it needs no key. No inline script
 * or style: the Content-Security-Policy allows only these files and calls to this origin.
 * Framework-free.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { problem, type HttpResponse } from '../protocol/problem';

export const SELF_SERVICE_DIR = path.join(__dirname, 'self-service');

const TYPES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

export const SELF_SERVICE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': SELF_SERVICE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/** The files, read once per directory (they do not change while the package is installed). */
const loaded = new Map<string, Map<string, Buffer>>();

function filesOf(dir: string): Map<string, Buffer> {
  let files = loaded.get(dir);
  if (!files) {
    files = new Map(Object.keys(TYPES).map((name) => [name, fs.readFileSync(path.join(dir, name))]));
    loaded.set(dir, files);
  }
  return files;
}

/**
 * The answer for `<base>/self-service<rest>` (rest: '', '/', '/app.js'...). Without the trailing
 * slash the page's relative links would miss: a redirect adds it. Only the page's own files are
 * served (no path is joined from the request).
 */
export function selfServiceAnswer(method: string, rest: string, dir = SELF_SERVICE_DIR): HttpResponse {
  if (method !== 'GET' && method !== 'HEAD')
    return { ...problem('method-not-allowed'), headers: { ...problem('method-not-allowed').headers, allow: 'GET, HEAD' } };
  if (rest === '') return { status: 301, headers: { location: 'self-service/', 'cache-control': 'no-cache' }, body: '' };
  const name = rest === '/' ? 'index.html' : rest.slice(1);
  const type = Object.hasOwn(TYPES, name) ? TYPES[name] : undefined;
  if (!type) return problem('not-found', 'the self-service page has no such file');
  const body = filesOf(dir).get(name)!;
  return { status: 200, headers: { 'content-type': type, 'content-length': String(body.length), ...SECURITY_HEADERS }, body: method === 'HEAD' ? '' : body };
}
