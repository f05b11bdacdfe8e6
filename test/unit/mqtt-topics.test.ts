/** The MQTT binding's topics (FIWARE's IoT Agents' and one for SenML) and its command payloads. */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { encodeSenmlCbor } from '../../nodes/core/codecs/senml-cbor';
import { CodecError } from '../../nodes/core/errors';
import {
  commandFormat,
  decodeDevicePublish,
  decodeLevel,
  DEVICE_PUBLISH_FILTERS,
  deviceTopic,
  encodeCommand,
  encodeLevel,
  parseDeviceTopic,
  sharedFilter,
  tokenCount,
  type DeviceTopic,
} from '../../nodes/core/protocol/mqtt-topics';
import { parseCommand, senmlCbor } from '../../tools/device-client/mqtt';

const now = 1.7e9;
const bytes = (s: string) => Buffer.from(s);

/** MQTT topic filter matching (+ one level, # the rest), to check the default filters. */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

describe('mqtt topics: FIWARE forms', () => {
  const cases: Array<[string, Partial<DeviceTopic>]> = [
    ['/ul/ABCDEF/id_sen1/attrs', { prefix: 'ul', leadingSlash: true, tenant: 'ABCDEF', deviceId: 'id_sen1', kind: 'attrs' }],
    ['ul/ABCDEF/id_sen1/attrs', { prefix: 'ul', leadingSlash: false, kind: 'attrs' }],
    ['/json/acme/SN-1/attrs', { prefix: 'json', tenant: 'acme', deviceId: 'SN-1', kind: 'attrs' }],
    ['/senml/acme/SN-1/attrs', { prefix: 'senml', kind: 'attrs' }],
    ['/ABCDEF/id_sen1/attrs', { prefix: '', leadingSlash: true, tenant: 'ABCDEF', deviceId: 'id_sen1', kind: 'attrs' }],
    ['ABCDEF/id_sen1/attrs', { prefix: '', leadingSlash: false, kind: 'attrs' }],
    ['/ABCDEF/id_sen1/attrs/h', { prefix: '', kind: 'attr', attribute: 'h' }],
    ['/json/ABCDEF/id_sen1/attrs/h', { prefix: 'json', kind: 'attr', attribute: 'h' }],
    ['/ABCDEF/id_sen1/cmd', { prefix: '', kind: 'cmd' }],
    ['ABCDEF/id_sen1/cmdexe', { prefix: '', leadingSlash: false, kind: 'cmdexe' }],
    ['/ul/ABCDEF/id_sen1/cmdexe', { prefix: 'ul', kind: 'cmdexe' }],
    ['/ABCDEF/id_sen1/tokens', { prefix: '', kind: 'tokens' }],
  ];
  for (const [topic, expected] of cases) {
    it(`reads ${topic}`, () => {
      const parsed = parseDeviceTopic(topic);
      assert.ok(parsed, `${topic} is a device topic`);
      for (const [k, v] of Object.entries(expected)) assert.deepEqual((parsed as unknown as Record<string, unknown>)[k], v, `${topic}: ${k}`);
      assert.equal(deviceTopic(parsed), topic, 'built back as it was');
    });
  }

  it('refuses what is not a device topic of the binding', () => {
    for (const t of [
      '',
      '/',
      'a/b',
      '/a/b/c',
      '/ul/a/b/c',
      '/a/b/attrs/x/y',
      '/senml/a/b/attrs/x',
      '/ul/a/+/attrs',
      '/ul/a/#',
      '/a//attrs',
      '//b/attrs',
      '/ul/a/b/attrs/',
      '/a/b%2/attrs',
      '$SYS/x/attrs',
      '$share/g/b/attrs',
    ]) {
      assert.equal(parseDeviceTopic(t), undefined, t);
    }
  });

  it('a four-level topic starting with a prefix word is the prefixed form', () => {
    assert.deepEqual(parseDeviceTopic('ul/x/attrs/attrs'), { prefix: 'ul', leadingSlash: false, tenant: 'x', deviceId: 'attrs', kind: 'attrs' });
    assert.equal(parseDeviceTopic('other/x/attrs/t')?.kind, 'attr');
  });

  it('percent-encodes / + # % in a level and reads it back', () => {
    assert.equal(encodeLevel('a/b+c#d%e'), 'a%2Fb%2Bc%23d%25e');
    assert.equal(decodeLevel('a%2Fb%2Bc%23d%25e'), 'a/b+c#d%e');
    assert.equal(encodeLevel('$x$'), '%24x$', 'a level starting with $ cannot start the topic as it is');
    assert.equal(decodeLevel('bad%'), undefined);
    assert.equal(decodeLevel('bad%zz'), undefined);
    const topic = deviceTopic({ tenant: 'team/1', deviceId: 'dev#2', kind: 'attrs', prefix: 'ul' });
    assert.equal(topic, '/ul/team%2F1/dev%232/attrs');
    assert.deepEqual(parseDeviceTopic(topic), { prefix: 'ul', leadingSlash: true, tenant: 'team/1', deviceId: 'dev#2', kind: 'attrs' });
  });

  it('round-trips any tenant and device id (property)', () => {
    const level = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !['ul', 'json', 'senml'].includes(s));
    fc.assert(
      fc.property(
        level,
        level,
        fc.constantFrom('', 'ul', 'json', 'senml'),
        fc.constantFrom('attrs', 'cmd', 'cmdexe'),
        fc.boolean(),
        (tenant, deviceId, prefix, kind, leadingSlash) => {
          const parts = { tenant, deviceId, prefix: prefix as '', kind: kind as 'attrs', leadingSlash };
          assert.deepEqual(parseDeviceTopic(deviceTopic(parts)), parts);
        },
      ),
    );
  });

  it('the default client filters match every device → Conflux topic once, and no command topic', () => {
    const publish = [
      '/ul/t/d/attrs',
      'ul/t/d/attrs',
      '/t/d/attrs',
      't/d/attrs',
      '/t/d/attrs/h',
      't/d/attrs/h',
      '/json/t/d/attrs/h',
      'json/t/d/attrs/h',
      '/t/d/cmdexe',
      't/d/cmdexe',
      '/ul/t/d/cmdexe',
      'senml/t/d/cmdexe',
    ];
    for (const t of publish) assert.equal(DEVICE_PUBLISH_FILTERS.filter((f) => matches(f, t)).length, 1, t);
    for (const t of ['/t/d/cmd', 't/d/cmd', '/ul/t/d/cmd']) assert.equal(DEVICE_PUBLISH_FILTERS.filter((f) => matches(f, t)).length, 0, t);
    assert.equal(sharedFilter('conflux', '+/+/attrs'), '$share/conflux/+/+/attrs');
    assert.throws(() => sharedFilter('a/b', '#'), /group/);
  });
});

describe('mqtt topics: payloads', () => {
  const topic = (t: string) => parseDeviceTopic(t)!;

  it('attrs: UltraLight, JSON attributes and SenML by prefix, under the device', () => {
    assert.deepEqual(decodeDevicePublish(topic('/ul/acme/SN-1/attrs'), bytes('t|21.5|on|yes'), 'SN-1', now), {
      records: [
        { n: 'SN-1/t', t: now, v: 21.5 },
        { n: 'SN-1/on', t: now, vs: 'yes' },
      ],
      format: 'ultralight',
    });
    assert.deepEqual(decodeDevicePublish(topic('/json/acme/SN-1/attrs'), bytes('{"t": 21.5, "on": true, "mode": {"value": "eco"}}'), 'SN-1', now).records, [
      { n: 'SN-1/t', t: now, v: 21.5 },
      { n: 'SN-1/on', t: now, vb: true },
      { n: 'SN-1/mode', t: now, vs: 'eco' },
    ]);
    const senml = decodeDevicePublish(topic('/senml/acme/SN-1/attrs'), bytes('[{"bn":"room/","n":"temp","u":"Cel","v":22,"t":1.7e9}]'), 'SN-1', now);
    assert.deepEqual(senml, { records: [{ n: 'SN-1/room/temp', t: 1.7e9, u: 'Cel', v: 22 }], format: 'senml+json' });
    const cbor = decodeDevicePublish(topic('/senml/acme/SN-1/attrs'), Buffer.from(encodeSenmlCbor([{ n: 'SN-1/p', t: now, v: 1 }])), 'SN-1', now);
    assert.deepEqual(cbor, { records: [{ n: 'SN-1/p', t: now, v: 1 }], format: 'senml+cbor' });
    const fromClient = decodeDevicePublish(topic('/senml/acme/SN-1/attrs'), senmlCbor([{ bn: 'SN-1/', n: 'q', v: 2, t: now }]), 'SN-1', now);
    assert.deepEqual(fromClient.records, [{ n: 'SN-1/q', t: now, v: 2 }], "the reference client's CBOR decodes");
  });

  it('unprefixed attrs: a JSON object, else UltraLight, as both FIWARE agents publish there', () => {
    assert.equal(decodeDevicePublish(topic('/acme/SN-1/attrs'), bytes('  {"h": 70}'), 'SN-1', now).format, 'attributes+json');
    assert.deepEqual(decodeDevicePublish(topic('/acme/SN-1/attrs'), bytes('h|70|t|15'), 'SN-1', now).records, [
      { n: 'SN-1/h', t: now, v: 70 },
      { n: 'SN-1/t', t: now, v: 15 },
    ]);
  });

  it('attrs/<name>: one value, typed by JSON on json topics, UltraLight-style elsewhere', () => {
    assert.deepEqual(decodeDevicePublish(topic('/ABCDEF/SN-1/attrs/h'), bytes('70'), 'SN-1', now).records, [{ n: 'SN-1/h', t: now, v: 70 }]);
    assert.deepEqual(decodeDevicePublish(topic('/ul/ABCDEF/SN-1/attrs/s'), bytes('on'), 'SN-1', now).records, [{ n: 'SN-1/s', t: now, vs: 'on' }]);
    assert.deepEqual(decodeDevicePublish(topic('/json/ABCDEF/SN-1/attrs/s'), bytes('true'), 'SN-1', now).records, [{ n: 'SN-1/s', t: now, vb: true }]);
    assert.deepEqual(decodeDevicePublish(topic('/json/ABCDEF/SN-1/attrs/s'), bytes('"70"'), 'SN-1', now).records, [{ n: 'SN-1/s', t: now, vs: '70' }]);
    assert.throws(() => decodeDevicePublish(topic('/json/ABCDEF/SN-1/attrs/s'), bytes('{"a":1}'), 'SN-1', now), CodecError);
    assert.throws(() => decodeDevicePublish(topic('/ABCDEF/SN-1/attrs/s'), bytes('  '), 'SN-1', now), /empty/);
  });

  it('cmdexe: UltraLight and JSON results become <command>_info records with the results', () => {
    const ul = decodeDevicePublish(topic('/ABCDEF/SN-1/cmdexe'), bytes('SN-1@ping|1234567890'), 'SN-1', now);
    assert.deepEqual(ul, {
      records: [{ n: 'SN-1/ping_info', t: now, vs: '1234567890' }],
      format: 'ultralight',
      commands: [{ name: 'ping', result: '1234567890' }],
    });
    const json = decodeDevicePublish(topic('/json/ABCDEF/SN-1/cmdexe'), bytes('{"ping": "pong", "reset": {"ok": true}}'), 'SN-1', now);
    assert.deepEqual(json.commands, [
      { name: 'ping', result: 'pong' },
      { name: 'reset', result: '{"ok":true}' },
    ]);
    assert.equal(json.format, 'json');
  });

  it('refuses with a CodecError what would name another device, and bad payloads', () => {
    assert.throws(() => decodeDevicePublish(topic('/ul/a/SN-1/cmdexe'), bytes('SN-2@ping|x'), 'SN-1', now), /names device "SN-2"/);
    assert.deepEqual(
      decodeDevicePublish(topic('/ul/a/SN-1/attrs'), bytes('SN-2@ping|x'), 'SN-1', now).records.map((r) => r.n),
      ['SN-1/SN-2/ping_info'],
      'scoped under the sender',
    );
    assert.throws(() => decodeDevicePublish(topic('/ul/a/SN-1/attrs'), bytes('t|'), 'SN-1', now), CodecError);
    assert.throws(() => decodeDevicePublish(topic('/json/a/SN-1/attrs'), bytes('[1,2]'), 'SN-1', now), /JSON object/);
    assert.throws(() => decodeDevicePublish(topic('/senml/a/SN-1/attrs'), bytes('{"n":1}'), 'SN-1', now), CodecError);
    assert.throws(() => decodeDevicePublish(topic('/a/SN-1/cmd'), bytes('x'), 'SN-1', now), /does not publish readings on its cmd topic/);
    assert.throws(() => decodeDevicePublish(topic('/a/SN-1/tokens'), bytes('3'), 'SN-1', now), /tokens topic/);
  });

  it('a UDP tokens request is a count from 1 to 100', () => {
    assert.deepEqual(
      ['', ' 5 ', '1', '100'].map((t) => tokenCount(bytes(t))),
      [1, 5, 1, 100],
    );
    for (const t of ['0', '101', '-1', '1.5', 'five', '1e2', '0x10']) assert.equal(tokenCount(bytes(t)), undefined, t);
  });

  it('commands in FIWARE syntax, read back by the reference client', () => {
    assert.equal(encodeCommand('ultralight', 'id_sen1', { name: 'ping', params: '22' }).toString(), 'id_sen1@ping|22');
    assert.equal(encodeCommand('ultralight', 'ws167', { name: 'ping', params: { param1: '1', param2: 2 } }).toString(), 'ws167@ping|param1=1|param2=2');
    assert.equal(encodeCommand('ultralight', 'r1', { name: 'reset' }).toString(), 'r1@reset');
    assert.equal(encodeCommand('ultralight', 'r1', { name: 'say', params: 'a|b=c' }).toString(), 'r1@say|a\\|b\\=c');
    assert.equal(encodeCommand('json', 'sen1', { name: 'ping', params: { data: 22 } }).toString(), '{"ping":{"data":22}}');
    assert.deepEqual(parseCommand('/t/ws167/cmd', encodeCommand('ultralight', 'ws167', { name: 'ping', params: { p1: '1', p2: 'x=y' } })).params, {
      p1: '1',
      p2: 'x=y',
    });
    assert.equal(parseCommand('/t/r1/cmd', encodeCommand('ultralight', 'r1', { name: 'say', params: 'a|b=c' })).value, 'a|b=c');
    assert.deepEqual(parseCommand('/json/t/s/cmd', encodeCommand('json', 's', { name: 'ping', params: { data: 22 } })), {
      name: 'ping',
      value: { data: 22 },
      topic: '/json/t/s/cmd',
      raw: Buffer.from('{"ping":{"data":22}}'),
    });
    assert.equal(commandFormat({ prefix: 'ul' }, 'attributes+json'), 'ultralight');
    assert.equal(commandFormat({ prefix: 'json' }), 'json');
    assert.equal(commandFormat({ prefix: '' }), 'ultralight', 'unprefixed, before any measure: UltraLight');
    assert.equal(commandFormat({ prefix: '' }, 'attributes+json'), 'json', 'unprefixed: the syntax of its measures');
  });
});
