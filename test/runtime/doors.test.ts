/**
 * The standalone runtime's doors, as `npm start` runs it: cross-origin and foreign-Host requests
 * refused by the editor without a password, no CORS grant, JSON telemetry not pre-parsed by the
 * admin app, owner-only files, problem+json errors without stacks, and failed logins throttled
 * per address with a password.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import fc from 'fast-check';
import { root, start, START_TIMEOUT_MS, stop, tempDataDir, waitForOutput, type Platform } from '../support/platform';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request with exactly these headers (fetch would add Origin/Sec-Fetch-* or refuse Host). */
function request(platform: Platform, method: string, url: string, headers: Record<string, string> = {}, body?: string, localAddress?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: platform.port,
        method,
        path: url,
        headers: { Host: `127.0.0.1:${platform.port}`, Connection: 'close', ...headers },
        localAddress,
        setHost: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${url}: no answer in 15 s`)));
    req.end(body);
  });
}

/** Raw bytes on a socket, for request lines and headers no HTTP client would send. */
function raw(platform: Platform, text: string, firstChunk = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(platform.port, '127.0.0.1');
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      out += d;
      if (firstChunk) {
        resolve(out);
        socket.destroy();
      }
    });
    socket.on('end', () => resolve(out));
    socket.on('close', () => resolve(out));
    socket.on('error', reject);
    socket.setTimeout(15_000, () => socket.destroy(new Error('no answer in 15 s')));
    socket.write(text, 'latin1'); // no half-close: Node's server may drop a request whose client sent FIN
  });
}

/** What no answer may hold: HTML, a stack frame, a file path. */
function assertClean(text: string, what: string): void {
  assert.doesNotMatch(text, /<html|<!DOCTYPE|<pre>/i, `${what}: HTML\n${text}`);
  assert.doesNotMatch(text, /\bat [\w.<>]+ \(|node_modules|\/work\/|\.js:\d+/, `${what}: a stack or a path\n${text}`);
  assert.ok(!text.includes(root), `${what}: the install path\n${text}`);
}

/** Paths under dir (itself included) that group or others may use. */
function openToOthers(dir: string): string[] {
  const found: string[] = [];
  const visit = (p: string): void => {
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) return;
    if ((st.mode & 0o077) !== 0) found.push(`${(st.mode & 0o777).toString(8)} ${path.relative(dir, p) || '.'}`);
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name));
  };
  visit(dir);
  return found;
}

const DEMO_KEY = /demo device demo-0001; its key, shown only this once: (\S+)/;

describe('standalone platform: doors, file modes and errors', function () {
  this.timeout(START_TIMEOUT_MS + 60_000);
  const dataDir = tempDataDir();
  let platform: Platform | undefined;
  let deviceKey = '';

  before(async () => {
    // An existing data dir as an earlier version or a careless copy left it: everything open to others.
    fs.chmodSync(dataDir, 0o755);
    fs.mkdirSync(path.join(dataDir, 'lib', 'old'), { recursive: true, mode: 0o777 });
    fs.writeFileSync(path.join(dataDir, 'lib', 'old', 'notes.txt'), 'x', { mode: 0o666 });
    fs.writeFileSync(path.join(dataDir, 'flows_cred.json'), '{}', { mode: 0o666 });
    fs.chmodSync(path.join(dataDir, 'lib'), 0o777);
    fs.chmodSync(path.join(dataDir, 'lib', 'old'), 0o777);
    fs.chmodSync(path.join(dataDir, 'lib', 'old', 'notes.txt'), 0o666);
    fs.chmodSync(path.join(dataDir, 'flows_cred.json'), 0o666);
    platform = await start({ CONFLUX_DATA_DIR: dataDir });
    deviceKey = (await waitForOutput(platform, DEMO_KEY))[1];
  });
  after(async () => {
    await stop(platform);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  describe('no admin password', () => {
    it('refuses a cross-origin form POST to the admin API and deploys nothing', async () => {
      const before = await request(platform!, 'GET', '/flows', { Accept: 'application/json', 'Node-RED-API-Version': 'v2' });
      assert.equal(before.status, 200);
      const form = `flows=${encodeURIComponent(JSON.stringify([{ id: 'f1', type: 'tab', label: 'pwned' }]))}`;
      const res = await request(
        platform!,
        'POST',
        '/flows',
        {
          Origin: 'http://attacker.example',
          'Content-Type': 'application/x-www-form-urlencoded',
          'Sec-Fetch-Site': 'cross-site',
          'Sec-Fetch-Mode': 'navigate',
          'Sec-Fetch-Dest': 'document',
        },
        form,
      );
      assert.equal(res.status, 403, res.body);
      assert.equal(res.headers['content-type']?.split(';')[0], 'application/problem+json');
      const json = await request(platform!, 'POST', '/flows', { Origin: 'http://attacker.example', 'Content-Type': 'application/json' }, '[]');
      assert.equal(json.status, 403);
      const noOrigin = await request(
        platform!,
        'POST',
        '/flows',
        { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'no-cors', 'Content-Type': 'text/plain' },
        '[]',
      );
      assert.equal(noOrigin.status, 403, 'Sec-Fetch-Site alone is enough');
      const after = await request(platform!, 'GET', '/flows', { Accept: 'application/json', 'Node-RED-API-Version': 'v2' });
      assert.equal(JSON.parse(after.body).rev, JSON.parse(before.body).rev, 'the flows did not change');
      assert.ok(!after.body.includes('pwned'));
    });

    it('answers no CORS grant: a foreign preflight is refused, a same-origin one gets no Access-Control header', async () => {
      const pre = await request(platform!, 'OPTIONS', '/flows', { Origin: 'http://attacker.example', 'Access-Control-Request-Method': 'POST' });
      assert.equal(pre.status, 403);
      assert.equal(pre.headers['access-control-allow-origin'], undefined);
      for (const url of ['/flows', '/settings', '/']) {
        const res = await request(platform!, 'GET', url, { Origin: `http://127.0.0.1:${platform!.port}` });
        assert.equal(res.status, 200, url);
        assert.equal(res.headers['access-control-allow-origin'], undefined, url);
      }
    });

    it('refuses unexpected Host headers (DNS rebinding) and serves loopback names with the port', async () => {
      const evil = await request(platform!, 'GET', '/flows', { Host: `rebound.attacker.example:${platform!.port}` });
      assert.equal(evil.status, 403);
      assert.match(evil.body, /CONFLUX_ALLOWED_HOSTS/);
      for (const host of [`localhost:${platform!.port}`, `[::1]:${platform!.port}`, `127.0.0.1:${platform!.port}`]) {
        assert.equal((await request(platform!, 'GET', '/settings', { Host: host })).status, 200, host);
      }
    });

    it('opens the editor from a link on another site, but refuses to be framed by it', async () => {
      const res = await request(platform!, 'GET', '/', { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'navigate', 'Sec-Fetch-Dest': 'document' });
      assert.equal(res.status, 200);
      assert.match(String(res.headers['content-security-policy'] ?? ''), /frame-ancestors 'self'/);
      const framed = await request(platform!, 'GET', '/', { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'navigate', 'Sec-Fetch-Dest': 'iframe' });
      assert.equal(framed.status, 403);
    });

    it("refuses the editor's websocket to a foreign origin", async () => {
      const handshake = (origin: string) =>
        raw(
          platform!,
          `GET /comms HTTP/1.1\r\nHost: 127.0.0.1:${platform!.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: ${origin}\r\n\r\n`,
          true,
        );
      assert.match(await handshake('http://attacker.example'), /^HTTP\/1\.1 403/);
      assert.match(await handshake(`http://127.0.0.1:${platform!.port}`), /^HTTP\/1\.1 101/);
    });

    it('takes application/json telemetry (as curl sends it): 202, no admin parser before the device route', async () => {
      const res = await request(
        platform!,
        'POST',
        '/devices/demo-0001/telemetry',
        {
          'Content-Type': 'application/json',
          Authorization: `Basic ${Buffer.from(`demo-0001:${deviceKey}`).toString('base64')}`,
          'User-Agent': 'curl/8.5.0',
          Accept: '*/*',
        },
        JSON.stringify([{ n: 'json-door', v: 1 }]),
      );
      assert.equal(res.status, 202, res.body);
      assert.equal(res.headers['access-control-allow-origin'], undefined, 'no CORS on device routes either');
    });

    it('answers device routes whatever the Host (devices reach the platform by address)', async () => {
      const res = await request(platform!, 'POST', '/devices/demo-0001/telemetry', { Host: '203.0.113.9', 'Content-Type': 'application/json' }, '[]');
      assert.equal(res.status, 401, res.body);
    });

    it('answers /devices/%zz/telemetry with a problem+json 400, and a flood of them with one log line', async () => {
      const logBefore = platform!.output().length;
      for (let i = 0; i < 30; i++) {
        const res = await request(platform!, 'POST', '/devices/%zz/telemetry', { 'Content-Type': 'application/json' }, '[]');
        assert.equal(res.status, 400);
        assert.equal(res.headers['content-type']?.split(';')[0], 'application/problem+json');
        assert.equal(JSON.parse(res.body).type, 'https://conflux.dev/problems/invalid-request');
        assertClean(res.body, '/devices/%zz/telemetry');
      }
      const logged = platform!
        .output()
        .slice(logBefore)
        .split('\n')
        .filter((l) => /percent-encoding|URIError|^\s+at /.test(l));
      assert.ok(logged.length <= 1, `30 bad requests logged ${logged.length} lines:\n${logged.join('\n')}`);
    });

    it('answers fuzzed URLs and headers without HTML, stack or path', async () => {
      const segment = fc.stringMatching(/^[A-Za-z0-9%._~!$&'()*+,;=:@-]{0,12}$/);
      const url = fc.oneof(
        segment.map((s) => `/devices/${s}/telemetry`),
        segment.map((s) => `/iot/d?i=${s}&k=${s}`),
        fc.tuple(segment, segment).map(([a, b]) => `/${a}/${b}`),
        segment.map((s) => `/flows/${s}`),
        segment.map((s) => `/nodes/${s}`),
      );
      const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS');
      const contentType = fc.constantFrom(
        'application/json',
        'application/x-www-form-urlencoded',
        'text/plain',
        'application/json; charset=latin1',
        'multipart/form-data',
        '%%',
      );
      const body = fc.constantFrom('', '{', '[1,', 'a=%zz', '{"flows":', '\u0000');
      await fc.assert(
        fc.asyncProperty(url, method, contentType, body, async (u, m, ct, b) => {
          const text = await raw(
            platform!,
            `${m} ${u} HTTP/1.1\r\nHost: 127.0.0.1:${platform!.port}\r\nContent-Type: ${ct}\r\nContent-Length: ${Buffer.byteLength(b, 'latin1')}\r\nConnection: close\r\n\r\n${b}`,
          );
          assert.match(text, /^HTTP\/1\.1 \d{3}/, `${m} ${u}: no HTTP answer`);
          const status = Number(text.slice(9, 12));
          if (status < 400) return; // the editor's own pages and node lists are HTML by design
          assertClean(text, `${m} ${u} (${ct})`);
          const [head, ...rest] = text.split('\r\n\r\n');
          if (rest.join('').length > 0) {
            assert.match(head, /\r\ncontent-type: application\/(problem\+)?json/i, `${m} ${u} (${ct}): an error that is not JSON\n${text}`);
          }
        }),
        { numRuns: 150 },
      );
    });

    it('keeps every file and folder under the data dir owner-only, those it found open included', () => {
      assert.deepEqual(openToOthers(dataDir), []);
      assert.ok(fs.readdirSync(path.join(dataDir, 'pglite')).length > 0, 'the embedded database is there');
      assert.match(platform!.output(), /data dir: \d+ files and folders were readable by others; made them owner-only/);
    });
  });

  describe('with CONFLUX_ADMIN_PASSWORD, on the same (reopened to others) data dir', () => {
    let secured: Platform | undefined;
    const login = (password: string, localAddress: string, username = 'admin') =>
      request(
        secured!,
        'POST',
        '/auth/token',
        { 'Content-Type': 'application/json' },
        JSON.stringify({ client_id: 'node-red-editor', grant_type: 'password', scope: '*', username, password }),
        localAddress,
      );

    before(async () => {
      await stop(platform);
      // What a backup restored with another tool, or a chmod -R, may leave: PGlite's files 0666.
      const open = (p: string): void => {
        const st = fs.lstatSync(p);
        fs.chmodSync(p, st.isDirectory() ? 0o777 : 0o666);
        if (st.isDirectory()) for (const n of fs.readdirSync(p)) open(path.join(p, n));
      };
      open(dataDir);
      secured = await start({ CONFLUX_DATA_DIR: dataDir, CONFLUX_ADMIN_PASSWORD: 'correct horse' });
      await waitForOutput(secured, /Started flows/);
    });
    after(async () => {
      await stop(secured);
    });

    it('makes an existing data dir owner-only again at start', () => {
      assert.deepEqual(openToOthers(dataDir), []);
    });

    it('throttles failed logins per address: the attacker waits, the admin elsewhere logs in', async () => {
      for (let i = 0; i < 5; i++) assert.equal((await login('guess', '127.0.0.1')).status, 403);
      const throttled = await login('guess', '127.0.0.1');
      assert.equal(throttled.status, 429);
      assert.ok(Number(throttled.headers['retry-after']) > 0);
      assert.equal((await login('correct horse', '127.0.0.1')).status, 429, 'the throttled address waits, even with the password');
      // More wrong tries for the user name than Node-RED's own lockout allows (5 in 10 minutes), from other addresses.
      for (let i = 3; i < 9; i++) assert.equal((await login('guess', `127.0.0.${i}`)).status, 403);
      const admin = await login('correct horse', '127.0.0.2');
      assert.equal(admin.status, 200, admin.body);
      const token = (JSON.parse(admin.body) as { access_token: string }).access_token;
      const flows = await request(secured!, 'GET', '/flows', { Authorization: `Bearer ${token}` });
      assert.equal(flows.status, 200);
    });

    it('with a password, a foreign Host is served (the token protects) but a foreign origin is not', async () => {
      assert.equal((await request(secured!, 'GET', '/auth/login', { Host: '192.0.2.1:1880' })).status, 200);
      assert.equal((await request(secured!, 'GET', '/auth/login', { Origin: 'http://attacker.example' })).status, 403);
    });
  });
});
