/**
 * The event model (ids stable for the same happening, validation, type patterns), custom events
 * from messages, the platform events' builders, the catalogue, the events the session registry
 * and the command router emit, and docs/events.md against the catalogue (so they cannot drift).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CommandError, CommandRouter } from '../../nodes/core/devices/commands';
import { SessionRegistry, type Session } from '../../nodes/core/devices/sessions';
import { CustomTypes, exampleEvent, fullCatalogue, MAX_CUSTOM_TYPES, PLATFORM_EVENT_TYPES, platformCatalogue } from '../../nodes/core/events/catalogue';
import { canonicalJson, eventFromMessage, type EmitOptions } from '../../nodes/core/events/emit';
import {
  createEvent,
  EventError,
  eventId,
  isEventPattern,
  parseEvent,
  readingEvent,
  typeMatches,
  typesMatch,
  type PlatformEvent,
} from '../../nodes/core/events/event';
import { businessEvent, commandAnswered, commandTimedOut, deviceChanged, deviceConnected, deviceDisconnected } from '../../nodes/core/events/platform';
import { root } from '../support/platform';
import { until } from '../support/wait';

const base = { type: 'vehicle.processed', tenant: 'acme', subject: 'VIN1', data: { ok: true } };

describe('events: the model', () => {
  it('gives the same happening the same id, and another happening another id', () => {
    const at = '2026-03-02T08:15:00.000Z';
    const a = createEvent({ ...base, occurredAt: at });
    const b = createEvent({ ...base, occurredAt: new Date(at) });
    assert.equal(a.id, b.id);
    assert.match(a.id, /^evt_[a-z2-7]{26}$/);
    assert.notEqual(createEvent({ ...base, occurredAt: Date.parse(at) + 1 }).id, a.id, 'another time');
    assert.notEqual(createEvent({ ...base, subject: 'VIN2', occurredAt: at }).id, a.id, 'another subject');
    assert.notEqual(createEvent({ ...base, tenant: 'other', occurredAt: at }).id, a.id, 'another tenant');
    assert.notEqual(createEvent({ ...base, type: 'vehicle.created', occurredAt: at }).id, a.id, 'another type');
    assert.equal(eventId('x.y', 't', 1, 'a'), eventId('x.y', 't', 1, 'a'));
    assert.equal(createEvent({ ...base, id: 'ext-42' }).id, 'ext-42', 'a given id is kept');
  });

  it('refuses a bad type, tenant, subject, time, data or id, naming the field', () => {
    const bad: Array<[Partial<Parameters<typeof createEvent>[0]>, RegExp]> = [
      [{ type: 'Vehicle.Processed' }, /type must be a dotted lower-case name/],
      [{ type: 'vehicle..processed' }, /type/],
      [{ type: '' }, /type/],
      [{ tenant: '' }, /tenant/],
      [{ subject: 'x'.repeat(257) }, /subject/],
      [{ occurredAt: 'yesterday' }, /occurredAt is not a time/],
      [{ data: undefined }, /data is missing/],
      [{ id: '' }, /id must be/],
    ];
    for (const [change, reason] of bad)
      assert.throws(
        () => createEvent({ ...base, ...change } as never),
        (err: Error) => err instanceof EventError && reason.test(err.message),
      );
  });

  it('parses an event back, and refuses what is not one', () => {
    const e = createEvent(base);
    assert.deepEqual(parseEvent(JSON.parse(JSON.stringify(e))), e);
    assert.throws(() => parseEvent({ ...e, id: undefined }), /id must be a string/);
    assert.throws(() => parseEvent([e]), /an event must be an object/);
    assert.throws(() => parseEvent({ ...e, type: 'NOPE' }), /type/);
  });

  it('matches types against patterns: *, a prefix with .*, or the type itself', () => {
    assert.ok(typeMatches('*', 'device.connected'));
    assert.ok(typeMatches('device.*', 'device.connected'));
    assert.ok(typeMatches('vehicle.*', 'vehicle.image.cropped'), 'at any depth');
    assert.ok(!typeMatches('device.*', 'devices.connected'));
    assert.ok(!typeMatches('device.*', 'device'));
    assert.ok(typeMatches('command.timed_out', 'command.timed_out'));
    assert.ok(!typeMatches('command.timed_out', 'command.answered'));
    assert.ok(typesMatch(['reading.received', 'device.*'], 'device.deleted'));
    assert.ok(!typesMatch([], 'device.deleted'));
    for (const p of ['*', 'device.*', 'vehicle.processed']) assert.ok(isEventPattern(p), p);
    for (const p of ['', '**', 'device.**', '*.created', 'Device.*', 3]) assert.ok(!isEventPattern(p), String(p));
  });

  it('reading.received: the same reading sent twice is one event, with one body', () => {
    const msg = { payload: [{ n: 'sn1/t/temp', v: 21, t: 1_700_000_000 }], device: { tenant: 'acme', id: 'sn1' } };
    const again = { ...msg, payload: [{ n: 'sn1/t/temp', v: 21, t: 1_700_000_000 }], source: { transport: 'tcp', format: 'senml+json', receivedAt: 5 } };
    assert.equal(readingEvent(msg).id, readingEvent(again).id);
    // A copy that arrived later (a device's resend, a broker's redelivery) is the same event, byte for byte.
    const later = { ...again, source: { ...again.source, receivedAt: 9 } };
    assert.equal(JSON.stringify(readingEvent(later)), JSON.stringify(readingEvent(again)));
    assert.deepEqual(readingEvent(again).data.source, { transport: 'tcp', format: 'senml+json' });
    assert.notEqual(readingEvent(msg).id, readingEvent({ ...msg, payload: [{ n: 'sn1/t/temp', v: 21, t: 1_700_000_001 }] }).id);
    assert.equal(readingEvent(msg).occurredAt, new Date(1_700_000_000_000).toISOString());
    assert.equal(readingEvent(msg).subject, 'sn1');
  });
});

describe('events: custom events from a message (emit mode)', () => {
  const options: EmitOptions = { type: 'vehicle.processed', typeFromMessage: false, subjectProperty: 'subject', tenant: 'default', identity: 'occurrence' };
  const at = Date.parse('2026-03-02T08:15:00.000Z');

  it('takes msg.payload as data, the subject, tenant and time from the message', () => {
    const e = eventFromMessage({ payload: { vin: 'WVW1', images: 12 }, subject: 'WVW1', tenant: 'acme', occurredAt: at }, options);
    assert.deepEqual(
      { ...e, id: undefined },
      {
        id: undefined,
        type: 'vehicle.processed',
        tenant: 'acme',
        occurredAt: '2026-03-02T08:15:00.000Z',
        subject: 'WVW1',
        data: { vin: 'WVW1', images: 12 },
      },
    );
    assert.equal(
      eventFromMessage({ payload: 1, device: { tenant: 'dev-t', id: 'sn9' }, tenant: 'msg-t' }, options).tenant,
      'dev-t',
      'the listener’s tenant wins',
    );
    assert.equal(eventFromMessage({ payload: 1, device: { tenant: 'dev-t', id: 'sn9' } }, options).subject, 'sn9', 'the device, when no subject');
    assert.equal(eventFromMessage({ payload: 1 }, options).tenant, 'default');
    assert.equal(eventFromMessage({ payload: { vin: 'X1' } }, { ...options, subjectProperty: 'payload.vin' }).subject, 'X1');
    assert.equal(eventFromMessage({ payload: 1, subject: 42 }, options).subject, '42');
  });

  it('a repeat is the same event: same id for the same data and time, whatever the key order', () => {
    const one = eventFromMessage({ payload: { a: 1, b: { c: 2, d: 3 } }, subject: 'V', occurredAt: at }, options);
    const two = eventFromMessage({ payload: { b: { d: 3, c: 2 }, a: 1 }, subject: 'V', occurredAt: new Date(at).toISOString() }, options);
    assert.equal(one.id, two.id);
    assert.notEqual(eventFromMessage({ payload: { a: 2 }, subject: 'V', occurredAt: at }, options).id, one.id, 'other data');
    assert.notEqual(eventFromMessage({ payload: { a: 1, b: { c: 2, d: 3 } }, subject: 'V', occurredAt: at + 1 }, options).id, one.id, 'another time');
    // Without a time the moment of emission counts; identity "content" leaves time out.
    assert.notEqual(eventFromMessage({ payload: 1, subject: 'V' }, options, at).id, eventFromMessage({ payload: 1, subject: 'V' }, options, at + 1000).id);
    const content = { ...options, identity: 'content' as const };
    assert.equal(eventFromMessage({ payload: 1, subject: 'V' }, content, at).id, eventFromMessage({ payload: 1, subject: 'V' }, content, at + 1000).id);
    assert.equal(eventFromMessage({ payload: 1, eventId: 'crm-77' }, options).id, 'crm-77');
    assert.equal(canonicalJson({ b: [{ y: 1, x: 2 }], a: null }), '{"a":null,"b":[{"x":2,"y":1}]}');
  });

  it('takes the type from msg.eventType or msg.topic only when allowed', () => {
    const open = { ...options, typeFromMessage: true };
    assert.equal(eventFromMessage({ payload: 1, eventType: 'vehicle.created' }, open).type, 'vehicle.created');
    assert.equal(eventFromMessage({ payload: 1, topic: 'vehicle.deleted' }, open).type, 'vehicle.deleted');
    assert.equal(eventFromMessage({ payload: 1, topic: 'vehicle.deleted' }, open).type, 'vehicle.deleted');
    assert.equal(eventFromMessage({ payload: 1, eventType: 'vehicle.created' }, options).type, 'vehicle.processed', 'not allowed: the node’s type');
    assert.equal(eventFromMessage({ payload: 1 }, open).type, 'vehicle.processed', 'none in the message: the node’s type');
  });

  it('refuses a bad type, a platform type, a missing payload, a bad time or subject, with a clear reason', () => {
    const open = { ...options, type: '', typeFromMessage: true };
    const cases: Array<[Parameters<typeof eventFromMessage>[0], EmitOptions, RegExp]> = [
      [{ payload: 1 }, open, /no event type: set the node’s Type, or allow msg.eventType/],
      [{ payload: 1, eventType: 'Vehículo Procesado' }, open, /msg.eventType "Vehículo Procesado" is not an event type: .*vehicle.processed/],
      [{ payload: 1, topic: 'sensors/temp' }, open, /msg.topic "sensors\/temp" is not an event type/],
      [{ payload: 1, eventType: 'device.connected' }, open, /"device.connected" is a platform event type/],
      [{ payload: 1 }, { ...options, type: 'command.answered' }, /the node’s Type "command.answered" is a platform event type/],
      [{}, options, /msg.payload is missing/],
      [{ payload: { n: 1n } }, options, /msg.payload is not JSON/],
      [{ payload: () => 1 }, options, /msg.payload is not JSON/],
      [{ payload: 1, occurredAt: 'soon' }, options, /msg.occurredAt must be a time/],
      [{ payload: 1, subject: { vin: 1 } }, options, /msg.subject must be a string or a number/],
      [{ payload: 1, tenant: 7 }, options, /tenant must be a tenant id/],
      [{ payload: 1, eventId: '' }, options, /msg.eventId must be/],
      [{ payload: [{ n: 'x' }] }, { ...options, type: 'reading.received' }, /reading.received is made from a canonical message/],
    ];
    for (const [msg, opts, reason] of cases)
      assert.throws(
        () => eventFromMessage(msg, opts),
        (err: Error) => err instanceof EventError && reason.test(err.message),
        String(reason),
      );
  });

  it('reading.received from a canonical message: the same id as readingEvent gives the connectors', () => {
    const msg = { payload: [{ n: 'sn1/t/temp', v: 21, t: 1_700_000_000 }], device: { tenant: 'acme', id: 'sn1' } };
    assert.deepEqual(eventFromMessage(msg, { ...options, type: 'reading.received' }), readingEvent(msg));
  });
});

describe('events: the platform’s builders', () => {
  const session = { tenant: 'acme', serial: 'sn1', transport: 'tcp', connectedAt: 1_000 };

  it('a session’s connected and disconnected are named by the device and the session’s start', () => {
    assert.equal(deviceConnected(session).id, deviceConnected({ ...session }).id);
    assert.notEqual(deviceConnected(session).id, deviceConnected({ ...session, connectedAt: 2_000 }).id, 'another session');
    const gone = deviceDisconnected({ ...session, disconnectedAt: 61_000, reason: 'idle timeout' });
    assert.equal(gone.id, deviceDisconnected({ ...session, disconnectedAt: 99_000, reason: 'reported again' }).id, 'one end per session');
    assert.notEqual(gone.id, deviceConnected(session).id);
    assert.deepEqual(gone.data, { device: 'sn1', transport: 'tcp', connectedAt: new Date(1_000).toISOString(), durationMs: 60_000, reason: 'idle timeout' });
  });

  it('a command’s answer and time-out are named by its correlation id', () => {
    const c = { tenant: 'acme', serial: 'sn1', commandId: 'c-1', command: 'reboot', at: 5 };
    assert.equal(commandAnswered({ ...c, answer: { ok: true, result: 1 } }).id, commandAnswered({ ...c, at: 9, answer: { ok: true, result: 1 } }).id);
    assert.notEqual(
      commandAnswered({ ...c, answer: { ok: true, result: 1 } }).id,
      commandAnswered({ ...c, commandId: 'c-2', answer: { ok: true, result: 1 } }).id,
    );
    assert.equal(commandTimedOut({ ...c, reason: 'timeout', queued: false, timeoutMs: 10 }).data.timeoutMs, 10);
  });

  it('device rows: created and deleted by the row id, updated also by its updated_at; only devices, and only real updates', () => {
    const row = { id: 7, serial: 'sn7', created_at: new Date(1_000), updated_at: new Date(1_000) };
    const created = deviceChanged('created', 'acme', row);
    assert.equal(created.subject, 'sn7');
    assert.equal(created.occurredAt, new Date(1_000).toISOString());
    assert.deepEqual(created.data, { device: { id: 7, serial: 'sn7', created_at: new Date(1_000).toISOString(), updated_at: new Date(1_000).toISOString() } });
    const u1 = businessEvent('update', 'devices', 'acme', { ...row, updated_at: new Date(2_000) }, { name: 'x' })!;
    const u2 = businessEvent('update', 'devices', 'acme', { ...row, updated_at: new Date(3_000) }, { name: 'y' })!;
    assert.equal(u1.type, 'device.updated');
    assert.notEqual(u1.id, u2.id);
    assert.deepEqual((u1.data as { changed: string[] }).changed, ['name']);
    assert.equal(businessEvent('update', 'devices', 'acme', row, {}), undefined, 'an empty patch changes nothing');
    assert.equal(businessEvent('create', 'channels', 'acme', row, {}), undefined);
    assert.equal(businessEvent('read', 'devices', 'acme', row, {}), undefined);
    assert.equal(businessEvent('delete', 'devices', 'acme', row, undefined)!.type, 'device.deleted');
  });
});

describe('events: the catalogue', () => {
  it('describes every platform type with an example built by the code that emits it', () => {
    const cat = platformCatalogue();
    assert.deepEqual(
      cat.map((c) => c.type),
      [...PLATFORM_EVENT_TYPES],
    );
    for (const info of cat) {
      assert.ok(info.description.length > 20, info.type);
      assert.equal(info.origin, 'platform');
      const e = exampleEvent(info.type as (typeof PLATFORM_EVENT_TYPES)[number]);
      assert.equal(e.type, info.type);
      assert.deepEqual(parseEvent(JSON.parse(JSON.stringify(e))), JSON.parse(JSON.stringify(e)), `${info.type}: a valid event`);
      assert.deepEqual(exampleEvent(info.type as never), e, `${info.type}: the example is stable`);
    }
  });

  it('adds custom types while their nodes are deployed, sorted with the platform’s', () => {
    const custom = new CustomTypes();
    custom.register('n1', 'vehicle.processed', 'Vehículo procesado: the images are ready');
    custom.register('n2', 'vehicle.processed', 'another text');
    custom.register('n2', 'vehicle.created');
    const all = fullCatalogue(custom);
    assert.deepEqual(
      all.map((c) => c.type),
      [...all.map((c) => c.type)].sort(),
    );
    assert.deepEqual(
      all.filter((c) => c.origin === 'flow'),
      [
        { type: 'vehicle.created', description: '', origin: 'flow', example: null },
        { type: 'vehicle.processed', description: 'Vehículo procesado: the images are ready', origin: 'flow', example: null },
      ],
    );
    custom.withdraw('n2');
    assert.deepEqual(
      fullCatalogue(custom)
        .filter((c) => c.origin === 'flow')
        .map((c) => c.type),
      ['vehicle.processed'],
    );
    custom.withdraw('n1');
    assert.equal(fullCatalogue(custom).length, PLATFORM_EVENT_TYPES.length);
  });

  it('holds at most MAX_CUSTOM_TYPES custom types', () => {
    const custom = new CustomTypes();
    for (let i = 0; i < MAX_CUSTOM_TYPES; i++) assert.ok(custom.register('n', `t.x${i}`));
    assert.equal(custom.register('n', 'one.more'), false);
    assert.ok(custom.register('m', 't.x1'), 'a known type is still taken');
    assert.equal(custom.size, MAX_CUSTOM_TYPES);
  });

  it('the editor refuses the platform types (but reading.received) as an emit node’s Type, as the runtime does', () => {
    const html = fs.readFileSync(path.join(root, 'nodes', 'events', 'event.html'), 'utf8');
    const source = /var PLATFORM = \/(.+)\/;/.exec(html);
    assert.ok(source, 'nodes/events/event.html defines PLATFORM');
    const editor = new RegExp(source[1]);
    for (const type of PLATFORM_EVENT_TYPES) assert.equal(editor.test(type), type !== 'reading.received', type);
    assert.ok(!editor.test('vehicle.processed'));
  });

  it('docs/events.md shows each platform type with its description and exactly the example event the code builds', () => {
    const doc = fs.readFileSync(path.join(root, 'docs', 'events.md'), 'utf8');
    for (const info of platformCatalogue()) {
      const section = new RegExp('### `' + info.type.replace('.', '\\.') + '`\\n\\n([^\\n]+)\\n\\n```json\\n([\\s\\S]*?)\\n```').exec(doc);
      assert.ok(section, `docs/events.md has no section for ${info.type}`);
      assert.equal(section[1], info.description, `${info.type}: the description`);
      const expected = JSON.stringify(exampleEvent(info.type as never), null, 2);
      assert.equal(section[2], expected, `${info.type}: the example in docs/events.md should be:\n${expected}`);
    }
  });
});

interface FakeSession extends Session {
  closedWith?: string;
  sent: unknown[];
}

function fakeSession(serial: string, transport: Session['transport'] = 'tcp', tenant = 'acme'): FakeSession {
  const s: FakeSession = {
    device: { tenant, serial, id: 1 },
    transport,
    sent: [],
    send: async (_kind, payload) => void s.sent.push(payload),
    close: (reason) => void (s.closedWith = reason),
  };
  return s;
}

describe('events: emitted by the session registry and the command router', () => {
  it('one connected per session and one disconnected at its end: removed, replaced or all closed', () => {
    const events: PlatformEvent[] = [];
    const sessions = new SessionRegistry(10, { onEvent: (e) => events.push(e) });
    const a = fakeSession('sn1');
    sessions.add(a);
    assert.deepEqual(
      events.map((e) => [e.type, e.subject, (e.data as { transport: string }).transport]),
      [['device.connected', 'sn1', 'tcp']],
    );
    const b = fakeSession('sn1', 'mqtt');
    sessions.add(b);
    assert.equal(a.closedWith, 'replaced by a newer session of this device');
    assert.deepEqual(
      events.slice(1).map((e) => [e.type, (e.data as { reason?: string }).reason]),
      [
        ['device.disconnected', 'replaced by a newer session of this device'],
        ['device.connected', undefined],
      ],
    );
    assert.equal(
      events[1].id,
      deviceDisconnected({ tenant: 'acme', serial: 'sn1', transport: 'tcp', connectedAt: Date.parse(events[0].occurredAt), disconnectedAt: 0, reason: '' }).id,
    );
    sessions.remove(a, 'the device closed the connection'); // the replaced one going away: already ended
    assert.equal(events.length, 3);
    sessions.remove(b, 'idle timeout');
    assert.equal((events[3].data as { reason: string }).reason, 'idle timeout');
    sessions.remove(b, 'again');
    const c = fakeSession('sn2');
    sessions.add(c);
    sessions.closeAll('the gateway is stopping');
    sessions.remove(c, 'the socket closed after');
    assert.deepEqual(
      events.slice(4).map((e) => [e.type, e.subject]),
      [
        ['device.connected', 'sn2'],
        ['device.disconnected', 'sn2'],
      ],
    );
    // No sink: no events, and nothing breaks.
    new SessionRegistry(1).add(fakeSession('x'));
  });

  it('a command answered gives command.answered; one not answered in time gives command.timed_out', async () => {
    const events: PlatformEvent[] = [];
    const sessions = new SessionRegistry(10);
    const device = fakeSession('sn1');
    sessions.add(device);
    const router = new CommandRouter({
      sessions,
      sql: () => Promise.reject(new Error('no store')),
      lookup: async (serial) => (serial === 'sn1' ? device.device : undefined),
      onEvent: (e) => events.push(e),
    });
    try {
      const ticket = await router.send('acme', 'sn1', { name: 'reboot' }, { timeoutMs: 10_000, queueIfOffline: false, expiresInMs: 1 });
      await until('the command to reach the device', () => device.sent.length === 1);
      assert.ok(router.result(device.device, { id: ticket.id, result: { rebooted: true } }));
      assert.deepEqual(await ticket.answer, { rebooted: true });
      const refused = await router.send('acme', 'sn1', { name: 'dim' }, { timeoutMs: 10_000, queueIfOffline: false, expiresInMs: 1 });
      await until('the second command to reach the device', () => device.sent.length === 2);
      router.result(device.device, { id: refused.id, error: 'busy' });
      await assert.rejects(refused.answer, /busy/);
      const slow = await router.send('acme', 'sn1', { name: 'slow' }, { timeoutMs: 30, queueIfOffline: false, expiresInMs: 1 });
      await assert.rejects(slow.answer, (err: CommandError) => err.code === 'timeout');
      assert.deepEqual(
        events.map((e) => [e.type, e.subject, e.data]),
        [
          ['command.answered', 'sn1', { device: 'sn1', commandId: ticket.id, command: 'reboot', ok: true, result: { rebooted: true } }],
          ['command.answered', 'sn1', { device: 'sn1', commandId: refused.id, command: 'dim', ok: false, error: 'busy' }],
          ['command.timed_out', 'sn1', { device: 'sn1', commandId: slow.id, command: 'slow', reason: 'timeout', queued: false, timeoutMs: 30 }],
        ],
      );
      assert.ok(events.every((e) => e.tenant === 'acme'));
    } finally {
      router.close();
    }
    assert.equal(events.length, 3, 'closing the router is no event');
  });
});
