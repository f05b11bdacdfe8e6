/** The standalone runtime's doors, login throttle and error answers, without a server. */
import { strict as assert } from 'node:assert';
import { AllowedHosts, parseHost, refusal } from '../../launcher/doors';
import { ConfigError, readConfig } from '../../launcher/config';
import { addressKey, LoginThrottle } from '../../launcher/login-throttle';
import { errorAnswer, LogThrottle } from '../../nodes/core/protocol/http-errors';

const hosts = new AllowedHosts('127.0.0.1', 1880, ['conflux.example.com', 'gw.lan:8443', '192.168.1.20']);
const req = (headers: Record<string, string>, method = 'POST') => ({ method, headers });

describe("runtime: the editor's doors (launcher/doors.ts)", () => {
  it("allows loopback names with the runtime's port, and listed names", () => {
    for (const h of [
      '127.0.0.1:1880',
      'localhost:1880',
      '[::1]:1880',
      'LOCALHOST:1880',
      'conflux.example.com',
      'conflux.example.com:443',
      'conflux.example.com:1880',
      'gw.lan:8443',
      '192.168.1.20:1880',
    ]) {
      assert.equal(hosts.allows(parseHost(h)), true, h);
    }
    for (const h of ['127.0.0.1', 'localhost:3000', 'evil.com:1880', 'conflux.example.com:8080', 'gw.lan', 'gw.lan:1880', '0.0.0.0:1880', 'a b', '', '[::1']) {
      assert.equal(hosts.allows(parseHost(h)), false, h);
    }
  });

  it('a wildcard CONFLUX_HOST adds no name: the operator lists them', () => {
    const wild = new AllowedHosts('0.0.0.0', 1880, []);
    assert.equal(wild.allows(parseHost('0.0.0.0:1880')), false);
    assert.equal(wild.allows(parseHost('10.0.0.5:1880')), false);
    assert.equal(new AllowedHosts('10.0.0.5', 1880, []).allows(parseHost('10.0.0.5:1880')), true);
  });

  it('refuses foreign Host headers only without a password', () => {
    assert.match(refusal(req({ host: 'rebound.evil.com:1880' }, 'GET'), hosts, true) ?? '', /unexpected Host header/);
    assert.equal(refusal(req({ host: 'rebound.evil.com:1880' }, 'GET'), hosts, false), undefined);
    assert.match(refusal(req({}, 'GET'), hosts, true) ?? '', /Host/);
  });

  it('refuses cross-origin requests, with or without a password', () => {
    for (const check of [true, false]) {
      assert.equal(refusal(req({ host: '127.0.0.1:1880', origin: 'http://127.0.0.1:1880' }), hosts, check), undefined);
      assert.equal(refusal(req({ host: '127.0.0.1:1880', origin: 'https://conflux.example.com' }), hosts, check), undefined, 'through a TLS proxy');
      for (const origin of ['http://evil.com', 'http://localhost:3000', 'null', 'http://127.0.0.1:18800', 'file://', 'https://127.0.0.1:1880.evil.com']) {
        assert.equal(refusal(req({ host: '127.0.0.1:1880', origin }), hosts, check), 'cross-origin request refused', origin);
      }
      assert.match(refusal(req({ host: '127.0.0.1:1880', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' }), hosts, check) ?? '', /cross-site/);
      assert.match(refusal(req({ host: '127.0.0.1:1880', 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'cors' }, 'GET'), hosts, check) ?? '', /same-site/);
    }
  });

  it('lets a link from another site open the editor, but not frame it or post to it', () => {
    const nav = { host: '127.0.0.1:1880', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' };
    assert.equal(refusal(req({ ...nav, 'sec-fetch-dest': 'document' }, 'GET'), hosts, true), undefined);
    assert.ok(refusal(req({ ...nav, 'sec-fetch-dest': 'iframe' }, 'GET'), hosts, true));
    assert.ok(refusal(req({ ...nav, 'sec-fetch-dest': 'document' }, 'POST'), hosts, true));
  });

  it('reads CONFLUX_ALLOWED_HOSTS and CONFLUX_TRUSTED_PROXIES, refusing what is not a host or address', () => {
    const c = readConfig({ CONFLUX_ALLOWED_HOSTS: 'a.example.com, [fd00::1]:1880 b.lan', CONFLUX_TRUSTED_PROXIES: '127.0.0.1,10.0.0.0/8' }, '/');
    assert.deepEqual(c.allowedHosts, ['a.example.com', '[fd00::1]:1880', 'b.lan']);
    assert.deepEqual(c.trustedProxies, ['127.0.0.1', '10.0.0.0/8']);
    assert.throws(() => readConfig({ CONFLUX_ALLOWED_HOSTS: 'http://a.example.com/' }, '/'), ConfigError);
    assert.throws(() => readConfig({ CONFLUX_TRUSTED_PROXIES: 'proxy.lan' }, '/'), ConfigError);
  });
});

describe('runtime: login throttle per address (launcher/login-throttle.ts)', () => {
  it('makes only the failing address wait, and a success clears it', () => {
    let now = 0;
    const t = new LoginThrottle(5, 600_000, () => now);
    for (let i = 0; i < 5; i++) {
      assert.equal(t.waitSeconds('a'), 0);
      t.failed('a');
    }
    assert.equal(t.waitSeconds('a'), 600);
    assert.equal(t.waitSeconds('b'), 0, 'another address is not affected');
    now = 300_000;
    assert.equal(t.waitSeconds('a'), 300);
    now = 600_001;
    assert.equal(t.waitSeconds('a'), 0, 'the window passed');
    t.failed('b');
    t.succeeded('b');
    for (let i = 0; i < 4; i++) t.failed('b');
    assert.equal(t.waitSeconds('b'), 0, 'the failure before the success no longer counts');
  });

  it('counts IPv6 addresses per /64 and IPv4-mapped ones as IPv4', () => {
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'));
    assert.notEqual(addressKey('2001:db8:1:2::1'), addressKey('2001:db8:1:3::1'));
    assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('192.0.2.7'), '192.0.2.7');
  });
});

describe('runtime: error answers (nodes/core/protocol/http-errors.ts)', () => {
  it('a malformed URI is a 400 problem, anything unknown a 500 without its message', () => {
    const uri = errorAnswer(Object.assign(new URIError("Failed to decode param '%zz'"), { status: 400 }));
    assert.equal(uri.response.status, 400);
    assert.equal(uri.response.headers['content-type'], 'application/problem+json');
    const fault = errorAnswer(new Error('ENOENT: /secret/path/file'));
    assert.equal(fault.response.status, 500);
    assert.equal(fault.fault, true);
    assert.doesNotMatch(String(fault.response.body), /secret|ENOENT/);
    assert.equal(errorAnswer({ type: 'entity.too.large', status: 413 }).response.status, 413);
    assert.equal(errorAnswer({ type: 'entity.parse.failed', status: 400 }).response.status, 400);
    assert.equal(errorAnswer('a string').response.status, 500);
  });

  it('logs one line per interval and kind, then says how many it left out', () => {
    let now = 0;
    const lines: string[] = [];
    const log = new LogThrottle(
      (l) => lines.push(l),
      10_000,
      () => now,
    );
    for (let i = 0; i < 100; i++) log.note('uri', 'bad uri');
    log.note('other', 'other');
    now = 10_000;
    log.note('uri', 'bad uri');
    assert.deepEqual(lines, ['bad uri', 'other', 'bad uri (and 99 more like it since the last report)']);
  });
});
