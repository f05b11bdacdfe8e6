/** Routing by consumers, id mapping both ways, stable message ids and the proxy's settings (nodes/core/federation/). */
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeSen1, encodeSen1 } from '../../nodes/core/codecs/sen1';
import { toLocalItems } from '../../nodes/core/federation/deliver';
import { sourceOf } from '../../nodes/core/federation/push';
import {
  DatumError,
  invertMapping,
  MappingError,
  messageIdOf,
  parseDatum,
  parseMapping,
  parseSelector,
  route,
  splitName,
  type RouteConsumer,
} from '../../nodes/core/federation/routing';
import { parseSettings, SettingsError } from '../../nodes/core/federation/settings';

const consumer = (id: number, over: Partial<RouteConsumer> = {}): RouteConsumer => ({
  id,
  source: {},
  mapping: null,
  username: 'alice@fed',
  applicationSrc: 'legacy',
  applicationDst: 'partner',
  jid: 'proxy-b@fed.example',
  ...over,
});

const datum = parseDatum({ id: 17, object: '5368', name: 'temperature', value: 21.5, unit: 'Cel', time: '2026-01-01T00:00:05Z' });

describe('federation routing', () => {
  it('parses a reading of the local system, refusing what is no datum', () => {
    assert.deepEqual(datum, { id: '17', object: '5368', name: 'temperature', value: 21.5, unit: 'Cel', t: 1_767_225_605 });
    assert.equal(parseDatum({ id: 'a', object: 'o', name: 'n', value: false, time: 10 }).t, 10);
    for (const bad of [
      null,
      [],
      {},
      { id: 1 },
      { id: 1, object: 'o', name: 'n', time: 1 },
      { id: 1, object: 'o', name: 'n', value: {}, time: 1 },
      { id: 1, object: 'o', name: 'n', value: 1, time: 'soon' },
    ]) {
      assert.throws(() => parseDatum(bad), DatumError, JSON.stringify(bad));
    }
  });

  it('sends a datum to every consumer that wants it, one message each, under the target’s ids', () => {
    const consumers = [
      consumer(1, { source: parseSelector({ objects: ['5368'] }), mapping: { '5368': 'room-1' } }),
      consumer(2, { source: parseSelector({ names: ['humidity'] }) }),
      consumer(3, { source: parseSelector({ object: '5368', name: 'temperature' }), jid: 'proxy-c@fed.example', applicationDst: 'other', username: 'bob@fed' }),
    ];
    const out = route('acme', datum, consumers);
    assert.deepEqual(
      out.map((m) => [m.to, m.payload[0].n, m.sen1.username, m.sen1.applicationDst]),
      [
        ['proxy-b@fed.example', 'room-1/temperature', 'alice@fed', 'partner'],
        ['proxy-c@fed.example', '5368/temperature', 'bob@fed', 'other'],
      ],
    );
    assert.deepEqual(out[0].sen1, {
      username: 'alice@fed',
      name: 'room-1/temperature',
      type: 'dt_numeric',
      unite: 'Cel',
      applicationSrc: 'legacy',
      applicationDst: 'partner',
    });
    assert.deepEqual(out[0].payload, [{ n: 'room-1/temperature', t: 1_767_225_605, v: 21.5, u: 'Cel' }]);
    assert.equal(route('acme', { ...datum, value: 3 }, consumers)[0].sen1.type, 'dt_integer');
    assert.equal(route('acme', { ...datum, value: true }, consumers)[0].payload[0].vb, true);
    assert.throws(() => route('acme', datum, [consumer(9, { mapping: { '5368': 'room one' } })]), MappingError);
    assert.throws(() => route('acme', { ...datum, object: 'room one' }, [consumer(9)]), DatumError);
  });

  it('gives a datum the same message id every time, and different ids to different data, consumers and tenants', () => {
    fc.assert(
      fc.property(fc.string(), fc.nat(), fc.string(), fc.string(), (tenant, c, a, b) => {
        assert.equal(messageIdOf(tenant, c, a), messageIdOf(tenant, c, a));
        if (a !== b) assert.notEqual(messageIdOf(tenant, c, a), messageIdOf(tenant, c, b));
        assert.notEqual(messageIdOf(tenant, c, a), messageIdOf(tenant, c + 1, a));
        assert.notEqual(messageIdOf(tenant, c, a), messageIdOf(`${tenant}x`, c, a));
      }),
    );
    assert.equal(route('acme', datum, [consumer(1)])[0].messageId, route('acme', { ...datum, value: 99 }, [consumer(1)])[0].messageId);
  });

  it('maps ids back on delivery, and the message survives Sen1 XML on the way', () => {
    const mapping = parseMapping({ '5368': 'room-1', '7': 'room-2', bad: 3 });
    assert.deepEqual(mapping, { '5368': 'room-1', '7': 'room-2' });
    const [msg] = route('acme', datum, [consumer(1, { mapping })]);
    const [xml] = encodeSen1(msg.payload, { ...msg.sen1 });
    assert.match(xml, /<username>alice@fed<\/username>/);
    const decoded = decodeSen1(xml);
    assert.deepEqual(toLocalItems(decoded.records, invertMapping(mapping)), [
      { object: '5368', name: 'temperature', value: 21.5, unit: 'Cel', time: '2026-01-01T00:00:05.000Z' },
    ]);
    assert.deepEqual(splitName('a/b/c'), { object: 'a/b', name: 'c' });
    assert.deepEqual(invertMapping({ a: 'x', b: 'x' }), { x: 'a' });
  });
});

describe('federation settings', () => {
  it('fills defaults and names the first bad field', () => {
    const s = parseSettings({ application: 'legacy', baseUrl: 'http://legacy.example/base' });
    assert.equal(s.readingsPath, '/api/readings');
    assert.equal(s.pageSize, 500);
    const url = new URL(sourceOf(s, { ...consumer(4, { source: { objects: ['a', 'b'], names: ['t'] } }) }).url);
    assert.equal(url.pathname, '/base/api/readings');
    assert.deepEqual([url.searchParams.getAll('object'), url.searchParams.getAll('name')], [['a', 'b'], ['t']]);
    for (const [bad, field] of [
      [{ baseUrl: 'http://x' }, 'application'],
      [{ application: 'l', baseUrl: 'ftp://x' }, 'baseUrl'],
      [{ application: 'l', baseUrl: 'http://x', pageSize: 0 }, 'pageSize'],
      [{ application: 'l', baseUrl: 'http://x', ingestPath: 'api' }, 'ingestPath'],
      [{ application: 'l', baseUrl: 'http://x', extra: 1 }, 'extra'],
    ] as const) {
      assert.throws(
        () => parseSettings(bad),
        (err: unknown) => err instanceof SettingsError && err.field === field,
        field,
      );
    }
  });
});
