/**
 * Devices over TCP, on real sockets on loopback: the SCRAM login, readings as canonical messages,
 * every bad input refused with its reason while other sessions go on, timeouts, TLS made by the
 * test, 1,000 concurrent sessions, and the conflux-tcp-in node in Node-RED.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { clientProof, saltedPassword, scramClientKey } from '../../nodes/core/auth/scram';
import { encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { migrate } from '../../nodes/core/db/migrate';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { createDeviceDirectory } from '../../nodes/core/devices/directory';
import { SessionRegistry } from '../../nodes/core/devices/sessions';
import { TenantRateLimiter } from '../../nodes/core/devices/tenant-rate';
import { UdpTokens } from '../../nodes/core/devices/udp-tokens';
import type { CanonicalMessage } from '../../nodes/core/model/message';
import { decodeError, encodeFrame, FrameDecoder, FrameType, type Frame } from '../../nodes/core/protocol/frames';
import {
  TcpDeviceServer,
  type DeviceMessageEvent,
  type TcpEventContext,
  type TcpEventError,
  type TcpServerOptions,
} from '../../nodes/core/protocol/tcp-server';
import { createBusinessStore, type BusinessStore } from '../../nodes/core/stores/business';
import { connect, DeviceRefusedError, type TcpClientOptions, type TcpDeviceClient } from '../../tools/device-client/tcp';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { catchNode, helper } from '../support/node-red';
import { freePort } from '../support/ports';
import { elapse, retry, until } from '../support/wait';
import gatewayNode = require('../../nodes/devices/gateway');
import tcpInNode = require('../../nodes/devices/tcp-in');
import postgresNode = require('../../nodes/storage/postgres');

interface Harness {
  server: TcpDeviceServer;
  port: number;
  sessions: SessionRegistry;
  tokens: UdpTokens;
  messages: CanonicalMessage[];
  events: Array<{ code: string; message: string; context: TcpEventContext }>;
  deviceMessages: DeviceMessageEvent[];
  /** Resolves with the messages once `count` have arrived in all. */
  received(count: number, timeoutMs?: number): Promise<CanonicalMessage[]>;
  client(serial: string, key: string, extra?: Partial<TcpClientOptions>): Promise<TcpDeviceClient>;
}

/** A raw connection speaking frames, for what the reference client would never send. */
class Raw {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private readonly decoder = new FrameDecoder(1 << 20);
  private waiter: (() => void) | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk) => {
      this.frames.push(...this.decoder.push(chunk).frames);
      this.waiter?.();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static open(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }

  send(type: number, payload: Buffer | string = Buffer.alloc(0)): void {
    this.socket.write(encodeFrame(type, payload));
  }

  async next(timeoutMs = 5_000): Promise<Frame> {
    const end = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.socket.destroyed && this.frames.length === 0) throw new Error('connection closed');
      if (Date.now() > end) throw new Error('no frame');
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 20);
      });
    }
    return this.frames.shift()!;
  }

  async nextText(type = FrameType.AUTH): Promise<string> {
    const f = await this.next();
    assert.equal(f.type, type, `expected frame type 0x${type.toString(16)}, got 0x${f.type.toString(16)}: ${f.payload.toString('utf8')}`);
    return f.payload.toString('utf8');
  }
}

/** One SCRAM login by hand; returns the client-final message sent. */
async function loginByHand(
  raw: Raw,
  serial: string,
  key: string,
  clientFirst = `n,,n=${serial},r=fixedclientnonce`,
): Promise<{ clientFinal: string; answer: string }> {
  raw.send(FrameType.AUTH, clientFirst);
  const serverFirst = await raw.nextText();
  const attrs = Object.fromEntries(serverFirst.split(',').map((a) => [a[0], a.slice(2)]));
  const salted = saltedPassword(key, Buffer.from(attrs.s, 'base64'), Number(attrs.i));
  const withoutProof = `c=biws,r=${attrs.r}`;
  const proof = clientProof(scramClientKey(salted), `${clientFirst.slice(3)},${serverFirst},${withoutProof}`);
  const clientFinal = `${withoutProof},p=${proof.toString('base64')}`;
  raw.send(FrameType.AUTH, clientFinal);
  return { clientFinal, answer: await raw.nextText() };
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI. */
function makeCertificates(dir: string): Record<'ca' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string> {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Conflux test CA');
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  run(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'server.ext',
  );
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=SN-TLS');
  run('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2');
  const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
  return { ca: read('ca.pem'), serverCert: read('server.pem'), serverKey: read('server.key'), clientCert: read('client.pem'), clientKey: read('client.key') };
}

describe('conflux-tcp-in: devices over TCP', function () {
  this.timeout(60_000);
  let db: SqlClient;
  let store: BusinessStore;
  const servers: TcpDeviceServer[] = [];
  const clients: TcpDeviceClient[] = [];

  before(async () => {
    db = await openSql({});
    await migrate(db);
    store = createBusinessStore(db);
    await store.create('default', 'devices', { serial: 'SN-A' }).then((d) => store.create('default', 'device_keys', { device_id: d.id, key: 'key-of-a' }));
    await store.create('default', 'devices', { serial: 'SN-B' }).then((d) => store.create('default', 'device_keys', { device_id: d.id, key: 'key-of-b' }));
  });

  after(async () => {
    await db?.close();
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  async function start(
    options: Partial<Omit<TcpServerOptions, 'limits'>> & { limits?: Partial<TcpServerOptions['limits']>; maxSessions?: number } = {},
  ): Promise<Harness> {
    const sessions = new SessionRegistry(options.maxSessions ?? 10_000);
    const tokens = new UdpTokens(async () => db, { ttlMs: 300_000 });
    const messages: CanonicalMessage[] = [];
    const events: Harness['events'] = [];
    const deviceMessages: DeviceMessageEvent[] = [];
    let wake: (() => void) | undefined;
    const server = new TcpDeviceServer({
      directory: createDeviceDirectory(db),
      sessions,
      rate: new TenantRateLimiter({ sql: async () => db, scope: 'tcp-test', ratePerSecond: 0 }),
      tokens,
      onReadings: (msg) => {
        messages.push(msg);
        wake?.();
      },
      onError: (err: TcpEventError, context) => events.push({ code: err.code, message: err.message, context }),
      onDeviceMessage: (ev) => {
        deviceMessages.push(ev);
      },
      ...options,
      limits: { maxFrameBytes: 65_536, idleTimeoutMs: 60_000, ...options.limits },
    });
    servers.push(server);
    const { port } = await server.listen(0, '127.0.0.1');
    const h: Harness = {
      server,
      port,
      sessions,
      tokens,
      messages,
      events,
      deviceMessages,
      received: async (count, timeoutMs = 10_000) => {
        const end = Date.now() + timeoutMs;
        while (messages.length < count) {
          if (Date.now() > end) throw new Error(`${messages.length} of ${count} messages arrived`);
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, 50);
          });
        }
        return messages;
      },
      client: async (serial, key, extra = {}) => {
        const c = await connect({ port, serial, key, ...extra });
        clients.push(c);
        return c;
      },
    };
    return h;
  }

  it('a device logs in and its readings arrive as canonical messages of its own identity, each ACKed', async () => {
    const h = await start();
    const a = await h.client('SN-A', 'key-of-a');
    assert.equal(h.sessions.get('default', 'SN-A')?.transport, 'tcp');
    const t = 1_767_000_000;
    // A serial in the payload cannot speak for another device: names stay under the sender's.
    assert.equal(await a.sendReadings('json', [{ bn: 'SN-B/', n: 'temp', u: 'Cel', v: 21.5, t }]), 1);
    assert.equal(await a.sendReadings('json', { humidity: 40, on: true }), 2);
    assert.equal(await a.sendReadings('ascii', 't|19.5|mode|eco'), 3);
    assert.equal(await a.sendReadings('utf8', 'mode|éco'), 4);
    assert.equal(await a.sendReadings('binary', encodeSenmlCbor([{ n: 'SN-A/p', t, v: 1013 }])), 5);
    const [senml, attrs, ascii, utf8, cbor] = await h.received(5);
    for (const m of h.messages) assert.deepEqual(m.device, { tenant: 'default', id: 'SN-A' });
    assert.deepEqual(senml.payload, [{ n: 'SN-A/SN-B/temp', u: 'Cel', v: 21.5, t }]);
    assert.deepEqual(senml.source?.format, 'senml+json');
    assert.equal(senml.source?.transport, 'tcp');
    assert.ok(Math.abs(senml.source!.receivedAt - Date.now()) < 5_000);
    assert.deepEqual(
      attrs.payload.map((r) => [r.n, r.v ?? r.vb]),
      [
        ['SN-A/humidity', 40],
        ['SN-A/on', true],
      ],
    );
    assert.equal(attrs.source?.format, 'attributes+json');
    assert.deepEqual(
      ascii.payload.map((r) => [r.n, r.v ?? r.vs]),
      [
        ['SN-A/t', 19.5],
        ['SN-A/mode', 'eco'],
      ],
    );
    assert.deepEqual(
      utf8.payload.map((r) => [r.n, r.vs]),
      [['SN-A/mode', 'éco']],
    );
    assert.deepEqual(cbor.payload, [{ n: 'SN-A/p', t, v: 1013 }]);
    assert.equal(cbor.source?.format, 'senml+cbor');
    await a.close();
    await until('the session to leave the registry', () => h.sessions.get('default', 'SN-A') === undefined);
  });

  it('a wrong key and an unknown device are refused the same way', async () => {
    const h = await start();
    const refusal = async (serial: string, key: string) => {
      const err = await connect({ port: h.port, serial, key }).then(
        () => assert.fail('logged in'),
        (e: Error) => e,
      );
      assert.ok(err instanceof DeviceRefusedError, String(err));
      return err.message;
    };
    assert.equal(await refusal('SN-A', 'not-the-key'), 'login refused: invalid-proof');
    assert.equal(await refusal('SN-NOBODY', 'whatever'), 'login refused: invalid-proof');
    assert.equal(h.server.stats().authFailures, 2);
    assert.deepEqual(
      h.events.map((e) => e.code),
      ['auth-failed', 'auth-failed'],
    );
    assert.match(h.events[0].message, /"SN-A": wrong key/);
    assert.equal(h.sessions.size, 0);
    assert.equal(h.messages.length, 0);
  });

  it('during a key rotation both keys log in; once the old key expires only the new one does', async () => {
    const h = await start();
    const dev = await store.create('default', 'devices', { serial: 'SN-ROT' });
    const old = await store.create('default', 'device_keys', { device_id: dev.id, key: 'old-key', valid_from: '2020-01-01T00:00:00Z' });
    await store.create('default', 'device_keys', { device_id: dev.id, key: 'new-key' });
    const withNew = await h.client('SN-ROT', 'new-key');
    assert.equal(await withNew.sendReadings('json', { k: 2 }), 1);
    await withNew.close();
    const withOld = await h.client('SN-ROT', 'old-key');
    assert.equal(await withOld.sendReadings('json', { k: 1 }), 1);
    await withOld.close();
    await store.update('default', 'device_keys', old.id as number, { valid_until: new Date(Date.now() - 1_000) });
    await assert.rejects(connect({ port: h.port, serial: 'SN-ROT', key: 'old-key' }), /invalid-proof/);
    await h.client('SN-ROT', 'new-key');
  });

  it('a client-final message captured from one login fails on a new connection (new server nonce)', async () => {
    const h = await start();
    const first = await Raw.open(h.port);
    const captured = await loginByHand(first, 'SN-A', 'key-of-a');
    assert.match(captured.answer, /^v=/);
    first.socket.destroy();
    const replay = await Raw.open(h.port);
    replay.send(FrameType.AUTH, 'n,,n=SN-A,r=fixedclientnonce');
    const serverFirst = await replay.nextText();
    assert.ok(!captured.clientFinal.includes(serverFirst.slice(2, serverFirst.indexOf(','))), 'a new nonce');
    replay.send(FrameType.AUTH, captured.clientFinal);
    assert.equal(await replay.nextText(), 'e=invalid-proof');
    await replay.closed;
    assert.match(h.events.at(-1)!.message, /nonce is not this connection’s/);
  });

  it('an oversized frame closes only its own session; another device goes on', async () => {
    const h = await start({ limits: { maxFrameBytes: 1_000 } });
    const a = await h.client('SN-A', 'key-of-a');
    const b = await h.client('SN-B', 'key-of-b');
    const header = Buffer.alloc(5);
    header.writeUInt32BE(1_001, 0);
    header[4] = FrameType.JSON;
    a.writeRaw(header);
    await a.closed;
    assert.equal(a.closeReason, 'frame of 1001 bytes exceeds the limit of 1000 bytes');
    assert.equal(await b.sendReadings('json', { still: 1 }), 1);
    assert.equal((await h.received(1))[0].device?.id, 'SN-B');
    assert.equal(h.sessions.get('default', 'SN-A'), undefined);
    assert.ok(h.sessions.get('default', 'SN-B'));
    assert.ok(h.events.some((e) => e.code === 'protocol' && e.context.device?.serial === 'SN-A'));
  });

  it('a bad frame gets an ERROR naming the frame and the reason, and the session goes on', async () => {
    const h = await start();
    const a = await h.client('SN-A', 'key-of-a');
    await assert.rejects(a.sendReadings('json', '{"temp": 21.5'), (err: DeviceRefusedError) => {
      assert.equal(err.frameId, 1);
      assert.match(err.message, /^JSON frame: invalid JSON: /);
      return true;
    });
    await assert.rejects(a.sendReadings('ascii', Buffer.from('t|2é', 'utf8')), /ASCII frame: byte 0xc3 at offset 3 is not 7-bit ASCII/);
    await assert.rejects(a.sendReadings('json', [{ n: 'x', v: 'not a number' }]), /senml/);
    const refused = new Promise<Frame>((resolve) => a.once('frame', resolve));
    const id = a.sendFrame(0x07, 'what is this');
    const error = decodeError((await refused).payload);
    assert.deepEqual(error, { id, reason: 'unknown type 0x07: not a frame type of this protocol' });
    assert.equal(await a.sendReadings('json', { temp: 21.5 }), 5);
    assert.equal((await h.received(1)).length, 1);
    assert.equal(h.server.stats().refused, 4);
    const bad = h.events.find((e) => e.code === 'bad-frame')!;
    assert.equal(bad.context.frame?.payload.toString(), '{"temp": 21.5', 'the refused bytes are kept for the report');
  });

  it('a device that sends and closes its side at once still gets its ACK', async () => {
    const h = await start();
    const raw = await Raw.open(h.port);
    assert.match((await loginByHand(raw, 'SN-A', 'key-of-a')).answer, /^v=/);
    raw.send(FrameType.JSON, '{"last":1}');
    raw.socket.end();
    const ack = await raw.next();
    assert.deepEqual([ack.type, ack.payload.readUInt32BE(0)], [FrameType.ACK, 1]);
    await raw.closed;
    assert.deepEqual(
      h.messages.map((m) => m.payload[0].n),
      ['SN-A/last'],
    );
  });

  it('a data frame before the login closes the connection with the reason', async () => {
    const h = await start();
    const raw = await Raw.open(h.port);
    raw.send(FrameType.JSON, '{"t":1}');
    assert.deepEqual(decodeError((await raw.next()).payload), {
      id: 0,
      reason: 'JSON frame before authentication: log in with AUTH frames (SCRAM-SHA-256) first',
    });
    await raw.closed;
    assert.equal(h.messages.length, 0);
  });

  it('a connection that does not log in within the time allowed is closed', async () => {
    const h = await start({ authTimeoutMs: 200 });
    const raw = await Raw.open(h.port);
    assert.deepEqual(decodeError((await raw.next()).payload), { id: 0, reason: 'the login did not finish in time' });
    await raw.closed;
    await until('the server to let the connection go', () => h.server.stats().connections === 0);
  });

  it('over the tenant’s rate a frame is refused with when to send it again; the session goes on', async () => {
    const h = await start({ rate: new TenantRateLimiter({ sql: async () => db, scope: 'tcp-rate-test', ratePerSecond: 1, burst: 1 }) });
    const a = await h.client('SN-A', 'key-of-a');
    assert.equal(await a.sendReadings('json', { n: 1 }), 1);
    await assert.rejects(
      a.sendReadings('json', { n: 2 }),
      /^DeviceRefusedError: rate limit: tenant "default" sends more messages per second than allowed; send again in 1 s$/,
    );
    await elapse(1_100); // the tenant's rate refills with time
    assert.equal(await a.sendReadings('json', { n: 2 }), 3);
    assert.deepEqual(
      h.messages.map((m) => m.payload[0].v),
      [1, 2],
    );
  });

  it('a flow that does not keep up stops the reading of the socket instead of queueing without bound', async () => {
    const held: Array<() => void> = [];
    let handed = 0;
    const h = await start({
      maxInFlightPerSession: 4,
      onReadings: () => {
        handed++;
        return new Promise<void>((resolve) => held.push(resolve));
      },
    });
    const a = await h.client('SN-A', 'key-of-a');
    const sent = Array.from({ length: 200 }, (_, i) => a.sendReadings('json', { i }));
    await until('the window handed on', () => handed >= 4);
    await elapse(100); // a negative check: no fifth is handed on
    assert.equal(handed, 4, 'only the window is handed on');
    assert.equal(h.server.inFlight, 4);
    await until(
      () => `all 200 handed on (${handed})`,
      () => {
        for (const release of held.splice(0)) release();
        return handed >= 200;
      },
    );
    for (const release of held.splice(0)) release();
    assert.deepEqual(
      await Promise.all(sent),
      Array.from({ length: 200 }, (_, i) => i + 1),
      'every frame ACKed, by its number',
    );
  });

  it('a half-open connection is closed after the idle timeout; a device answering PINGs stays', async () => {
    const h = await start({ limits: { idleTimeoutMs: 600 } });
    const silent = await h.client('SN-A', 'key-of-a', { answerPings: false });
    const alive = await h.client('SN-B', 'key-of-b');
    const pings: number[] = [];
    alive.on('frame', (f: Frame) => f.type === FrameType.PING && pings.push(Date.now()));
    const t0 = Date.now();
    await silent.closed;
    const took = Date.now() - t0;
    assert.ok(took >= 550 && took < 3_000, `closed after ${took} ms`);
    assert.match(silent.closeReason ?? '', /^idle timeout: nothing received/);
    await elapse(1_200); // idle timeouts are the subject: time must pass
    assert.ok(alive.open, 'the device that answers PINGs is still connected');
    assert.ok(pings.length >= 2, `PINGs at half the idle timeout (${pings.length})`);
    // A PING may cross the data frame on the wire: its PONG then goes before or after it.
    const before = pings.length;
    const number = await alive.sendReadings('json', { ok: 1 });
    assert.ok(number >= before + 1 && number <= pings.length + 1, `PONGs are numbered frames too: frame ${number} after ${before}..${pings.length} PONGs`);
    assert.equal(h.sessions.get('default', 'SN-A'), undefined);
    assert.ok(h.events.some((e) => e.code === 'idle-timeout'));
  });

  it('a slow sender writing one byte at a time completes its frame', async () => {
    const h = await start({ limits: { idleTimeoutMs: 300 } });
    const a = await h.client('SN-A', 'key-of-a');
    const acked = new Promise<Frame>((resolve) => a.on('frame', (f: Frame) => f.type === FrameType.ACK && resolve(f)));
    const bytes = encodeFrame(FrameType.JSON, '{"slow": 1, "steady": 2}');
    for (const byte of bytes) {
      a.writeRaw(Buffer.from([byte]));
      await elapse(20); // a slow sender, byte by byte
    }
    a.countRawFrames(1);
    assert.equal((await acked).payload.readUInt32BE(0), 1);
    const [msg] = await h.received(1);
    assert.deepEqual(
      msg.payload.map((r) => r.n),
      ['SN-A/slow', 'SN-A/steady'],
    );
    assert.ok(bytes.length * 20 > 300, 'the frame took longer than the idle timeout');
  });

  it('1,000 concurrent authenticated sessions each send a reading and all arrive', async function () {
    this.timeout(120_000);
    const n = 1_000;
    const t0 = Date.now();
    const serials = Array.from({ length: n }, (_, i) => `SN-C${String(i).padStart(4, '0')}`);
    for (let i = 0; i < n; i += 50) {
      await Promise.all(
        serials.slice(i, i + 50).map(async (serial) => {
          const d = await store.create('default', 'devices', { serial });
          await store.create('default', 'device_keys', { device_id: d.id, key: `key-${serial}` });
        }),
      );
    }
    const created = Date.now();
    const h = await start();
    const connected: TcpDeviceClient[] = [];
    for (let i = 0; i < n; i += 100) {
      connected.push(...(await Promise.all(serials.slice(i, i + 100).map((serial) => h.client(serial, `key-${serial}`)))));
    }
    assert.equal(h.server.stats().sessions, n);
    assert.equal(h.sessions.size, n);
    const ids = await Promise.all(connected.map((c, i) => c.sendReadings('json', { i })));
    assert.deepEqual(new Set(ids), new Set([1]));
    const messages = await h.received(n);
    assert.deepEqual(messages.map((m) => `${m.device?.id}=${m.payload[0].v}`).sort(), serials.map((s, i) => `${s}=${i}`).sort());
    assert.ok(
      connected.every((c) => c.open),
      'all sessions stay open together',
    );
    if (process.env.CONFLUX_TEST_VERBOSE) console.log(`devices created in ${created - t0} ms, sessions and readings in ${Date.now() - created} ms`);
  });

  it('TLS with a certificate made by the test; with client certificates required a client without one is refused', async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-tls-'));
    try {
      const pem = makeCertificates(dir);
      const h = await start({ tls: { cert: pem.serverCert, key: pem.serverKey } });
      const a = await h.client('SN-A', 'key-of-a', { tls: { ca: pem.ca } });
      assert.equal(await a.sendReadings('json', { secure: 1 }), 1);
      await assert.rejects(connect({ port: h.port, serial: 'SN-A', key: 'key-of-a', tls: {} }), /self-signed|unable to verify|certificate/i, 'an unknown CA');

      const m = await start({ tls: { cert: pem.serverCert, key: pem.serverKey, ca: pem.ca, requestCert: true } });
      await assert.rejects(connect({ port: m.port, serial: 'SN-A', key: 'key-of-a', tls: { ca: pem.ca } }));
      await until('the TLS refusal to be reported', () => m.events.some((e) => e.code === 'tls'));
      assert.equal(m.sessions.size, 0);
      const b = await m.client('SN-B', 'key-of-b', { tls: { ca: pem.ca, cert: pem.clientCert, key: pem.clientKey } });
      assert.equal(await b.sendReadings('json', { mutual: 1 }), 1);
      assert.equal((await m.received(1))[0].device?.id, 'SN-B');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('UDP tokens on request, at most 100 at a time', async () => {
    const h = await start();
    const a = await h.client('SN-A', 'key-of-a');
    const grant = await a.requestUdpTokens(5);
    assert.equal(grant.tokens.length, 5);
    assert.ok(grant.expiresAt > Date.now() + 290_000);
    assert.equal((await h.tokens.spend('SN-A', grant.tokens[0])).ok, true);
    assert.deepEqual(await h.tokens.spend('SN-B', grant.tokens[1]), { ok: false, reason: 'foreign' });
    const refused = new Promise<Frame>((resolve) => a.once('frame', resolve));
    const id = a.sendFrame(FrameType.TOKEN, Buffer.from([101]));
    assert.deepEqual(decodeError((await refused).payload), { id, reason: 'TOKEN request: ask for 1 to 100 tokens, not 101' });
    assert.equal((await a.requestUdpTokens()).tokens.length, 1);
  });

  it('commands reach the device through its session; results and requests reach the handler', async () => {
    const h = await start();
    const a = await h.client('SN-A', 'key-of-a');
    a.onCommand((cmd) => ({ rebooted: cmd.name === 'reboot' }));
    await h.sessions.get('default', 'SN-A')!.send('command', { id: 'c-1', name: 'reboot' });
    await until('the command result', () => h.deviceMessages.length === 1);
    assert.deepEqual(h.deviceMessages[0].kind, 'command-result');
    assert.deepEqual(h.deviceMessages[0].body, { id: 'c-1', result: { rebooted: true } });
    assert.equal(h.deviceMessages[0].device.serial, 'SN-A');

    const answer = a.request({ id: 'r-1', want: 'config' });
    await until('the request', () => h.deviceMessages.length === 2);
    assert.deepEqual(h.deviceMessages[1].body, { id: 'r-1', want: 'config' });
    await h.deviceMessages[1].session.send('response', { id: 'r-1', interval: 60 });
    assert.deepEqual(await answer, { id: 'r-1', interval: 60 });
    await assert.rejects(h.sessions.get('default', 'SN-A')!.send('command', { name: 'no id' }), /correlation id/);
  });

  it('a device connecting again replaces its older session, which is told why', async () => {
    const h = await start();
    const first = await h.client('SN-A', 'key-of-a');
    const second = await h.client('SN-A', 'key-of-a');
    await first.closed;
    assert.equal(first.closeReason, 'replaced by a newer session of this device');
    assert.equal(await second.sendReadings('json', { n: 2 }), 1);
    assert.equal(h.sessions.size, 1);
  });

  it('close() ends every session with a reason and frees the port', async () => {
    const h = await start();
    const a = await h.client('SN-A', 'key-of-a');
    await h.server.close('maintenance');
    await a.closed;
    assert.equal(a.closeReason, 'maintenance');
    assert.equal(h.sessions.size, 0);
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => again.once('error', reject).listen(h.port, '127.0.0.1', () => resolve()));
    await new Promise((resolve) => again.close(resolve));
  });
});

describe('conflux-tcp-in node', function () {
  this.timeout(30_000);
  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(() => helper.unload());

  const NODES = [postgresNode, gatewayNode, tcpInNode, catchNode];

  it('emits canonical messages from logged-in devices, sends refusals to Catch, and frees its port on unload', async () => {
    const port = await freePort();
    const flow = [
      { id: 'tab', type: 'tab' },
      { id: 'db', type: 'conflux-postgres', url: '' },
      { id: 'gw', type: 'conflux-gateway', database: 'db', idleTimeout: '60' },
      { id: 'listener', type: 'conflux-tcp-in', z: 'tab', gateway: 'gw', host: '127.0.0.1', port: String(port), wires: [['out']] },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'out', type: 'helper', z: 'tab' },
      { id: 'caught', type: 'helper', z: 'tab' },
    ];
    await helper.load(NODES, flow as helper.TestFlows);
    const sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
    const business = createBusinessStore(sql);
    const d = await business.create('default', 'devices', { serial: 'SN-NODE' });
    await business.create('default', 'device_keys', { device_id: d.id, key: 'node-key' });

    // The listener opens its port asynchronously after the flow starts.
    const client = await retry('the device to log in', () => connect({ port, serial: 'SN-NODE', key: 'node-key' }));
    const got = new Promise<Record<string, any>>((resolve) => helper.getNode('out').once('input', resolve));
    assert.equal(await client.sendReadings('ascii', 't|21.5'), 1);
    const msg = await got;
    assert.deepEqual(msg.device, { tenant: 'default', id: 'SN-NODE' });
    assert.deepEqual(
      msg.payload.map((r: { n: string; v: number }) => [r.n, r.v]),
      [['SN-NODE/t', 21.5]],
    );
    assert.equal(msg.source.transport, 'tcp');
    assert.equal(msg.source.format, 'ultralight');

    const caught = new Promise<Record<string, any>>((resolve) => helper.getNode('caught').once('input', resolve));
    await assert.rejects(client.sendReadings('json', '{oops'), /JSON frame: invalid JSON/);
    const report = await caught;
    assert.match(report.error.message, /device "SN-NODE" from 127\.0\.0\.1:\d+: JSON frame: invalid JSON/);
    assert.deepEqual(report.device, { tenant: 'default', id: 'SN-NODE' });
    assert.equal(report.payload.toString(), '{oops');

    await helper.unload();
    await client.closed;
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => again.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
    await new Promise((resolve) => again.close(resolve));
  });

  it('ACKs a frame only once the flow has finished with it, and answers ERROR with the reason when a node failed it', async () => {
    const port = await freePort();
    const held: Array<(err?: Error) => void> = [];
    const holdNode = (RED: NodeAPI) =>
      RED.nodes.registerType('test-hold', function (this: Node, def: NodeDef) {
        RED.nodes.createNode(this, def);
        this.on('input', (_msg, _send, done) => void held.push(done));
      });
    await helper.load([...NODES, holdNode], [
      { id: 'tab', type: 'tab' },
      { id: 'db', type: 'conflux-postgres', url: '' },
      { id: 'gw', type: 'conflux-gateway', database: 'db', idleTimeout: '60' },
      { id: 'listener', type: 'conflux-tcp-in', z: 'tab', gateway: 'gw', host: '127.0.0.1', port: String(port), wires: [['hold']] },
      { id: 'hold', type: 'test-hold', z: 'tab' },
    ] as helper.TestFlows);
    const sql = await (helper.getNode('db') as unknown as { sql(): Promise<SqlClient> }).sql();
    const business = createBusinessStore(sql);
    const d = await business.create('default', 'devices', { serial: 'SN-HOLD' });
    await business.create('default', 'device_keys', { device_id: d.id, key: 'hold-key' });
    const client = await retry('the device to log in', () => connect({ port, serial: 'SN-HOLD', key: 'hold-key' }));
    try {
      let acked = false;
      const first = client.sendReadings('ascii', 't|1').then((n) => ((acked = true), n));
      await until('the flow to hold the reading', () => held.length >= 1);
      await elapse(50); // a negative check: no ACK in this window
      assert.equal(acked, false, 'no ACK while the flow holds the reading');
      assert.equal(client.unacknowledged.length, 1);
      held.shift()!();
      assert.equal(await first, 1);
      const second = client.sendReadings('ascii', 't|2');
      await until('the flow to hold the reading', () => held.length >= 1);
      held.shift()!(new Error('the time series is unreachable'));
      await assert.rejects(second, /not accepted: the time series is unreachable/);
      const third = client.sendReadings('ascii', 't|3'); // the session goes on
      await until('the flow to hold the reading', () => held.length >= 1);
      held.shift()!();
      assert.equal(await third, 3);
    } finally {
      for (const done of held.splice(0)) done();
      client.destroy();
    }
  });
});
