/**
 * The embedded MQTT broker under fuzz (nodes/core/protocol/mqtt-broker.ts, docs/protocol-mqtt.md),
 * over a real loopback connection: device SN-1 (MQTT 5, QoS 1) publishes generated payloads — each
 * format's examples mutated, bad UTF-8, NUL bytes, deep nesting, large bodies — on every form of its
 * own topics (attrs, attrs/<name>, cmdexe, tokens), and now and then on a topic that is not its own.
 * Each publish is answered as section 4 of the protocol says: PUBACK 0x00 once handed on, PUBACK
 * 0x99 (payload format invalid) with the refusal reported with its reason, PUBACK 0x87 for a topic
 * not its own; the session goes on, and a valid reading is still accepted at the end.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import mqtt from 'mqtt';
import { createDeviceDirectory } from '../../nodes/core/devices/directory';
import { TenantRateLimiter } from '../../nodes/core/devices/tenant-rate';
import { SessionRegistry } from '../../nodes/core/devices/sessions';
import { UdpTokens } from '../../nodes/core/devices/udp-tokens';
import { MqttDeviceBroker, type MqttRejection } from '../../nodes/core/protocol/mqtt-broker';
import { assertReason, budget, fuzz } from './fuzz';
import { ATTRIBUTES, DEVICE_SEEDS, payload, UL_COMMANDS } from './inputs';
import { DEVICE_KEY, fuzzStore, TENANT } from './store';

const OWN = [
  `/ul/${TENANT}/SN-1/attrs`,
  `/json/${TENANT}/SN-1/attrs`,
  `/senml/${TENANT}/SN-1/attrs`,
  `/${TENANT}/SN-1/attrs`,
  `${TENANT}/SN-1/attrs`,
  `/${TENANT}/SN-1/attrs/h`,
  `/json/${TENANT}/SN-1/attrs/t`,
  `/${TENANT}/SN-1/cmdexe`,
  `/ul/${TENANT}/SN-1/cmdexe`,
  `/json/${TENANT}/SN-1/cmdexe`,
  `/${TENANT}/SN-1/tokens`,
];
const FOREIGN = [`/ul/${TENANT}/SN-2/attrs`, '/ul/other/SN-1/attrs', `/${TENANT}/SN-1/cmd`, '/nothing', '$SYS/x', `/ul/${TENANT}/SN-1/attrs/a/b`];

const input = fc.record({
  topic: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...OWN) }, { weight: 1, arbitrary: fc.constantFrom(...FOREIGN) }),
  payload: payload([...DEVICE_SEEDS, ...ATTRIBUTES, ...UL_COMMANDS, '21.5', '"x"', 'true', '5', '']),
});

describe('fuzz: MQTT payloads', function () {
  this.timeout(budget(3));
  let broker: MqttDeviceBroker;
  let client: mqtt.MqttClient;
  let accepted = 0;
  const rejections: MqttRejection[] = [];

  before(async function () {
    this.timeout(60_000);
    const store = await fuzzStore();
    const directory = createDeviceDirectory(store.db);
    broker = new MqttDeviceBroker({
      port: 0,
      host: '127.0.0.1',
      directory: () => directory,
      sessions: new SessionRegistry(100),
      rate: new TenantRateLimiter({ sql: async () => store.db, scope: 'fuzz', ratePerSecond: 0 }),
      tokens: new UdpTokens(async () => store.db, { ttlMs: 60_000 }),
      limits: { maxFrameBytes: 65_536, idleTimeoutMs: 600_000, maxSessions: 100 },
      onReadings: () => {
        accepted++;
      },
      onRejected: (r) => void rejections.push(r),
    });
    const { port } = await broker.listen();
    client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 5,
      username: 'SN-1',
      password: DEVICE_KEY,
      clientId: 'SN-1',
      reconnectPeriod: 0,
    });
    // Subscribed to its cmd topic, so that a tokens request can be granted there.
    await client.subscribeAsync(`/${TENANT}/SN-1/cmd`, { qos: 1 });
  });

  after(async () => {
    await client?.endAsync();
    await broker?.close();
  });

  function publish(topic: string, body: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no PUBACK for ${topic} within 10 s`)), 10_000);
      client.publish(topic, body, { qos: 1 }, (err) => {
        clearTimeout(timer);
        if (!err) return resolve(0);
        const code = (err as Error & { code?: number }).code;
        if (typeof code === 'number') resolve(code);
        else reject(err);
      });
    });
  }

  it('answers every publish with PUBACK 0x00, or a reason code with the refusal reported; the session goes on', async () => {
    await fuzz({
      target: 'endpoint MQTT payloads',
      arbitrary: input,
      check: async ({ topic, payload: body }, o) => {
        assert.ok(client.connected, 'the session is still open');
        const before = accepted;
        rejections.length = 0; // only this input's: the test itself must not hold memory across inputs
        const reported = 0;
        const code = await publish(topic, body);
        const what = `${topic} (${body.length} bytes)`;
        if (code === 0) {
          // A reading handed on, or a tokens request granted (it comes as a command).
          assert.ok(accepted === before + 1 || topic.endsWith('/tokens'), `${what}: PUBACK 0x00 without a reading handed on`);
          o.add(topic.endsWith('/tokens') ? 'tokens granted' : 'PUBACK 0x00');
          return;
        }
        assert.equal(accepted, before, `${what}: refused but handed on`);
        assert.ok([0x87, 0x99].includes(code), `${what}: PUBACK 0x${code.toString(16)}`);
        assert.equal(rejections.length, reported + 1, `${what}: the refusal is reported`);
        const r = rejections[reported];
        assert.equal(r.reason, code === 0x99 ? 'payload' : 'topic');
        assertReason(r.detail, `${what}: refused as ${r.reason}`);
        assert.ok(!/internal error/i.test(r.detail), `${what}: ${r.detail}`);
        o.add(`PUBACK 0x${code.toString(16)} ${r.reason}`);
      },
    });
    assert.equal(await publish(`/ul/${TENANT}/SN-1/attrs`, Buffer.from('t|21.5')), 0, 'a valid reading after the fuzz inputs');
  });
});
