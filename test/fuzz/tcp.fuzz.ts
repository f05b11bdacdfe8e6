/**
 * The TCP device server under fuzz (nodes/core/protocol/tcp-server.ts, docs/protocol-tcp.md), over
 * a real loopback connection: a device logged in with the reference client
 * (tools/device-client/tcp.ts) sends generated frames — data frames of every type with payloads
 * from the formats' examples mutated, every other frame type both ways, unknown types — written in
 * pieces as TCP may cut them, and now and then a length field that loses the framing. Each frame
 * gets the answer section 4 of the protocol names: ACK n or ERROR n with a reason for a data
 * frame, PONG for PING, a grant or ERROR n for TOKEN, a RESPONSE or ERROR n for REQUEST, the
 * handler or ERROR n for COMMAND_RESULT, ERROR n for what goes the wrong way; a bad length is
 * ERROR 0 with the reason and the close, after which the device logs in again and goes on.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { createDeviceDirectory } from '../../nodes/core/devices/directory';
import { TenantRateLimiter } from '../../nodes/core/devices/tenant-rate';
import { SessionRegistry } from '../../nodes/core/devices/sessions';
import { UdpTokens } from '../../nodes/core/devices/udp-tokens';
import { decodeAck, decodeError, decodeTokenGrant, encodeFrame, FrameType, frameTypeName, type Frame } from '../../nodes/core/protocol/frames';
import { TcpDeviceServer, type TcpEventError } from '../../nodes/core/protocol/tcp-server';
import { connect, type TcpDeviceClient } from '../../tools/device-client/tcp';
import { assertReason, budget, fuzz, type Outcomes } from './fuzz';
import { DEVICE_SEEDS, noise, payload } from './inputs';
import { DEVICE_KEY, fuzzStore } from './store';

const MAX_FRAME = 65_536;
const ANSWER_MS = 10_000;

type Input =
  | { kind: 'frame'; type: number; payload: Buffer; cuts: number[] }
  /** A length field of 0 or over the limit: the framing is lost, the connection closes. */
  | { kind: 'bad-length'; length: number };

const DATA_TYPES = [FrameType.BINARY, FrameType.ASCII, FrameType.UTF8, FrameType.JSON];
const OTHER_TYPES = [
  FrameType.PING,
  FrameType.PONG,
  FrameType.TOKEN,
  FrameType.COMMAND_RESULT,
  FrameType.REQUEST,
  FrameType.ERROR,
  FrameType.AUTH,
  FrameType.COMMAND,
  FrameType.RESPONSE,
  FrameType.ACK,
  0x00,
  0x07,
  0x20,
  0xff,
];
const CORRELATED = ['{"id":"r1","q":"time"}', '{"id":7,"result":"ok"}', '{"id":""}', '{"x":1}', '[]', '{"id":1e400}', '{"id":{"a":1}}'];

const input: fc.Arbitrary<Input> = fc.oneof(
  {
    weight: 24,
    arbitrary: fc.record({
      kind: fc.constant<'frame'>('frame'),
      type: fc.constantFrom(...DATA_TYPES),
      payload: payload(DEVICE_SEEDS),
      cuts: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 3 }),
    }),
  },
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant<'frame'>('frame'),
      type: fc.constantFrom(...OTHER_TYPES),
      payload: fc.oneof(
        payload(CORRELATED),
        fc.constantFrom(Buffer.alloc(0), Buffer.from([5]), Buffer.from([0]), Buffer.from([101]), Buffer.from([1, 2])),
        noise,
      ),
      cuts: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant<'bad-length'>('bad-length'), length: fc.constantFrom(0, MAX_FRAME + 1, 0xffffffff) }) },
);

/** The reference client with a queue of every frame the server sends, and a wait for one. */
class Device {
  private readonly frames: Frame[] = [];
  private wake: (() => void) | undefined;
  seq = 0;
  closedBy: string | undefined;

  private constructor(readonly client: TcpDeviceClient) {
    client.on('frame', (f: Frame) => {
      this.frames.push(f);
      this.wake?.();
    });
    client.on('close', (reason?: string) => {
      this.closedBy = reason ?? '';
      this.wake?.();
    });
  }

  static async open(port: number): Promise<Device> {
    const client = await connect({ port, serial: 'SN-1', key: DEVICE_KEY, answerPings: false, timeoutMs: ANSWER_MS });
    // A frame written in pieces must not wait for Nagle's algorithm at each piece.
    (client as unknown as { socket: import('node:net').Socket }).socket.setNoDelay(true);
    return new Device(client);
  }

  /** A frame already received that `match` accepts (taken from the queue), without waiting. */
  take(match: (f: Frame) => boolean): Frame | undefined {
    const i = this.frames.findIndex(match);
    return i >= 0 ? this.frames.splice(i, 1)[0] : undefined;
  }

  /** The first frame (taken from the queue) that `match` accepts; fails after ANSWER_MS. */
  async answer(what: string, match: (f: Frame) => boolean, orClosed = false): Promise<Frame | undefined> {
    const deadline = Date.now() + ANSWER_MS;
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.closedBy !== undefined && orClosed) return undefined;
      assert.ok(this.closedBy === undefined, `${what}: the connection closed (${this.closedBy}) without an answer`);
      const left = deadline - Date.now();
      assert.ok(left > 0, `${what}: no answer within ${ANSWER_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Writes a frame in pieces (as TCP may deliver it); returns its number on the connection. */
  send(type: number, body: Buffer, cuts: number[]): number {
    const bytes = encodeFrame(type, body);
    let at = 0;
    for (const cut of cuts) {
      if (at >= bytes.length) break;
      this.client.writeRaw(bytes.subarray(at, at + cut));
      at += cut;
    }
    if (at < bytes.length) this.client.writeRaw(bytes.subarray(at));
    this.client.countRawFrames(1);
    return ++this.seq;
  }

  /** Frames left unclaimed (answers nobody asked for). */
  get pending(): number {
    return this.frames.length;
  }
}

const errorFor = (n: number) => (f: Frame) => f.type === FrameType.ERROR && decodeError(f.payload).id === n;

describe('fuzz: TCP frames', function () {
  this.timeout(budget(3));
  let server: TcpDeviceServer;
  let port = 0;
  let device: Device;
  const faults: string[] = [];
  const deviceMessages: string[] = [];
  const deviceErrors: string[] = [];

  before(async function () {
    this.timeout(60_000);
    const store = await fuzzStore();
    server = new TcpDeviceServer({
      directory: createDeviceDirectory(store.db),
      sessions: new SessionRegistry(100),
      rate: new TenantRateLimiter({ sql: async () => store.db, scope: 'fuzz', ratePerSecond: 0 }),
      tokens: new UdpTokens(async () => store.db, { ttlMs: 60_000 }),
      limits: { maxFrameBytes: MAX_FRAME, idleTimeoutMs: 600_000 },
      onReadings: () => undefined,
      onDeviceMessage: async (ev) => {
        deviceMessages.push(ev.body.id);
        if (ev.kind === 'request') await ev.session.send('response', { id: ev.body.id, result: 'ok' });
      },
      onError: (err: TcpEventError) => {
        if (err.code === 'device-error') deviceErrors.push(err.message);
        // A frame handler that threw closes the connection with "internal error: …": our bug.
        if (/internal error/.test(err.message)) faults.push(`${err.code}: ${err.message}`);
      },
    });
    ({ port } = await server.listen(0, '127.0.0.1'));
    device = await Device.open(port);
  });

  after(async () => {
    await device?.client.close();
    await server?.close();
  });

  async function check(x: Input, o: Outcomes): Promise<void> {
    if (device.closedBy !== undefined) {
      device = await Device.open(port);
      o.add('logged in again');
    }
    if (x.kind === 'bad-length') {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(x.length, 0);
      device.client.writeRaw(head);
      const f = await device.answer('a bad length', errorFor(0));
      assertReason(decodeError(f!.payload).reason, 'ERROR 0');
      await device.client.closed;
      o.add('ERROR 0 + close');
      return;
    }
    const n = device.send(x.type, x.payload, x.cuts);
    const what = `frame ${n} type 0x${x.type.toString(16)} (${x.payload.length} bytes)`;
    const refusal = async (f: Frame) => {
      assertReason(decodeError(f.payload).reason, what);
      o.add(`ERROR to ${frameTypeName(x.type)}`);
    };
    if (x.payload.length + 1 > MAX_FRAME) {
      const f = await device.answer(what, errorFor(0));
      assertReason(decodeError(f!.payload).reason, what);
      o.add('ERROR 0 + close');
      await device.client.closed;
      return;
    }
    switch (x.type) {
      case FrameType.BINARY:
      case FrameType.ASCII:
      case FrameType.UTF8:
      case FrameType.JSON: {
        const f = (await device.answer(what, (g) => (g.type === FrameType.ACK && decodeAck(g.payload) === n) || errorFor(n)(g)))!;
        if (f.type === FrameType.ACK) o.add('ACK');
        else await refusal(f);
        return;
      }
      case FrameType.PING: {
        const f = (await device.answer(what, (g) => g.type === FrameType.PONG))!;
        assert.ok(f.payload.equals(x.payload), `${what}: the PONG carries the PING's payload`);
        o.add('PONG');
        return;
      }
      case FrameType.TOKEN: {
        const f = (await device.answer(what, (g) => (g.type === FrameType.TOKEN && decodeTokenGrant(g.payload).id === n) || errorFor(n)(g)))!;
        if (f.type === FrameType.TOKEN) o.add('TOKEN grant');
        else await refusal(f);
        return;
      }
      case FrameType.REQUEST: {
        const f = (await device.answer(what, (g) => g.type === FrameType.RESPONSE || errorFor(n)(g)))!;
        if (f.type === FrameType.RESPONSE) o.add('RESPONSE');
        else await refusal(f);
        return;
      }
      case FrameType.COMMAND_RESULT: {
        // Handled (no answer by the protocol), or refused: a PING after it tells which, its PONG coming after either.
        deviceMessages.length = 0; // only this input's: the test itself must not hold memory across inputs
        const seen = 0;
        device.send(FrameType.PING, Buffer.from('barrier'), []);
        await device.answer(what, (g) => g.type === FrameType.PONG);
        const refused = device.take(errorFor(n));
        if (refused) await refusal(refused);
        else {
          assert.equal(deviceMessages.length, seen + 1, `${what}: neither handled nor refused`);
          o.add('handled');
        }
        return;
      }
      case FrameType.PONG:
      case FrameType.ERROR: {
        // No answer by the protocol: the device's ERROR is reported; the connection goes on (a PING shows it).
        deviceErrors.length = 0;
        const reported = 0;
        device.send(FrameType.PING, Buffer.from('after'), []);
        await device.answer(what, (g) => g.type === FrameType.PONG);
        if (x.type === FrameType.ERROR) assert.equal(deviceErrors.length, reported + 1, `${what}: the device's ERROR is reported`);
        o.add(x.type === FrameType.ERROR ? 'reported' : 'PONG taken');
        return;
      }
      default: {
        const f = (await device.answer(what, errorFor(n)))!;
        await refusal(f);
      }
    }
  }

  it('answers every frame as the protocol says, closes only on a lost framing, and goes on', async () => {
    await fuzz({ target: 'endpoint TCP frames', arbitrary: input, check });
    assert.deepEqual(faults, [], 'no frame handler failed');
    // Still answering: a valid reading is ACKed.
    if (device.closedBy !== undefined) device = await Device.open(port);
    assert.ok((await device.client.sendReadings('ultralight', 't|21.5')) > 0);
  });
});
