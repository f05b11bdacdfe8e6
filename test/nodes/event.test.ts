/**
 * conflux-event in Node-RED (node-red-node-test-helper): emit mode (the event in msg.payload,
 * published to platform listeners, a bad type to Catch), platform mode (type patterns and the
 * tenant filter), catalogue mode (platform and custom types, withdrawn with their node), and the
 * guard against a flow that feeds a listener's events back into an emitter.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NodeAPI } from 'node-red';
import { PLATFORM_EVENT_TYPES } from '../../nodes/core/events/catalogue';
import { createEvent, type PlatformEvent } from '../../nodes/core/events/event';
import { publishEvent } from '../../nodes/shared/event-hub';
import { catchNode, helper, nextMessage } from '../support/node-red';
import { root } from '../support/platform';
import { until } from '../support/wait';
import eventNode = require('../../nodes/events/event');

const injectNode = require('@node-red/nodes/core/common/20-inject.js');

type Msg = Record<string, any>;

/** The RED the node module was registered with: what the gateway and the business node publish through. */
let RED: NodeAPI | undefined;
function eventModule(red: NodeAPI): void {
  RED = red;
  eventNode(red);
}

/** Every message that reaches the helper node `id`, from now on. */
function collect(id: string): Msg[] {
  const seen: Msg[] = [];
  helper.getNode(id).on('input', (msg: Msg) => seen.push(msg));
  return seen;
}

const tab = { id: 'tab', type: 'tab' };
const catcher = { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] };

describe('conflux-event', function () {
  this.timeout(10_000);
  afterEach(() => helper.unload());

  it('emit: a custom event in msg.payload, with its type in msg.topic, published to platform listeners', async () => {
    await helper.load([eventModule, catchNode], [
      tab,
      {
        id: 'emitter',
        type: 'conflux-event',
        z: 'tab',
        mode: 'emit',
        eventType: 'vehicle.processed',
        subject: 'payload.vin',
        tenant: 'acme',
        description: 'Vehículo procesado',
        wires: [['out']],
      },
      { id: 'listen', type: 'conflux-event', z: 'tab', mode: 'platform', patterns: 'vehicle.*', wires: [['heard']] },
      { id: 'out', type: 'helper', z: 'tab' },
      { id: 'heard', type: 'helper', z: 'tab' },
    ] as never);
    const heard = collect('heard');
    const out = nextMessage('out');
    helper.getNode('emitter').receive({ payload: { vin: 'WVW1', images: 24 }, occurredAt: '2026-03-02T08:15:00Z' } as never);
    const msg = await out;
    const event = msg.payload as PlatformEvent;
    assert.deepEqual(
      { ...event, id: undefined },
      {
        id: undefined,
        type: 'vehicle.processed',
        tenant: 'acme',
        occurredAt: '2026-03-02T08:15:00.000Z',
        subject: 'WVW1',
        data: { images: 24, vin: 'WVW1' },
      },
    );
    assert.match(event.id, /^evt_/);
    assert.equal(msg.topic, 'vehicle.processed');
    await until('the platform listener to hear it', () => heard.length === 1);
    assert.deepEqual(heard[0].payload, event);
    assert.equal(heard[0].topic, 'vehicle.processed');

    // The same message again is the same event (same id): a receiver takes it once.
    const again = nextMessage('out');
    helper.getNode('emitter').receive({ payload: { images: 24, vin: 'WVW1' }, occurredAt: 1772439300000 } as never);
    assert.equal((await again).payload.id, event.id);
  });

  it('emit: a bad or platform type goes to Catch with the reason; publish off keeps the event off the hub', async () => {
    await helper.load([eventModule, catchNode], [
      tab,
      { id: 'emitter', type: 'conflux-event', z: 'tab', mode: 'emit', eventType: '', typeFromMessage: true, publish: false, wires: [['out']] },
      { id: 'listen', type: 'conflux-event', z: 'tab', mode: 'platform', patterns: '*', wires: [['heard']] },
      catcher,
      { id: 'out', type: 'helper', z: 'tab' },
      { id: 'heard', type: 'helper', z: 'tab' },
      { id: 'caught', type: 'helper', z: 'tab' },
    ] as never);
    const heard = collect('heard');
    const caught = collect('caught');
    const emit = helper.getNode('emitter');
    emit.receive({ payload: 1, eventType: 'Vehículo Procesado' } as never);
    emit.receive({ payload: 1, topic: 'device.connected' } as never);
    emit.receive({ payload: 1 } as never);
    await until('three errors at Catch', () => caught.length === 3);
    assert.match(caught[0].error.message, /conflux-event: msg.eventType "Vehículo Procesado" is not an event type/);
    assert.match(caught[1].error.message, /"device.connected" is a platform event type/);
    assert.match(caught[2].error.message, /no event type/);
    const out = nextMessage('out');
    emit.receive({ payload: { ok: true }, topic: 'vehicle.created', subject: 'V1' } as never);
    assert.equal((await out).payload.type, 'vehicle.created');
    // A platform event published after it arrives; the flow event, not published, never did.
    publishEvent(RED!, createEvent({ type: 'device.created', tenant: 't', subject: 's', data: {} }));
    await until('the published platform event', () => heard.length === 1);
    assert.equal(heard[0].payload.type, 'device.created');
  });

  it('platform: only the types its patterns match, of the tenants it lists', async () => {
    await helper.load([eventModule], [
      tab,
      { id: 'listen', type: 'conflux-event', z: 'tab', mode: 'platform', patterns: 'device.*, command.timed_out', tenants: 'acme', wires: [['heard']] },
      { id: 'heard', type: 'helper', z: 'tab' },
    ] as never);
    const heard = collect('heard');
    const publish = (type: string, tenant = 'acme') => publishEvent(RED!, createEvent({ type, tenant, subject: 'x', data: {} }));
    publish('device.connected');
    publish('command.answered');
    publish('device.connected', 'other');
    publish('command.timed_out');
    publish('devices.x');
    publish('device.deleted');
    await until('three events', () => heard.length === 3);
    assert.deepEqual(
      heard.map((m) => m.payload.type),
      ['device.connected', 'command.timed_out', 'device.deleted'],
    );
    assert.equal(heard[0].eventDepth, 0, 'a platform event');
  });

  it('catalogue: the platform types and the deployed custom types, sorted; a removed node takes its type along', async () => {
    const flow = [
      tab,
      { id: 'emitter', type: 'conflux-event', z: 'tab', mode: 'emit', eventType: 'vehicle.processed', description: 'Vehículo procesado', wires: [[]] },
      { id: 'cat', type: 'conflux-event', z: 'tab', mode: 'catalogue', wires: [['out']] },
      { id: 'out', type: 'helper', z: 'tab' },
    ];
    await helper.load([eventModule], flow as never);
    let answer = nextMessage('out');
    helper.getNode('cat').receive({ payload: 'read' } as never);
    let catalogue = (await answer).payload as Array<{ type: string; origin: string; description: string; example: unknown }>;
    const types = catalogue.map((c) => c.type);
    assert.deepEqual(types, [...types].sort());
    assert.deepEqual(
      catalogue.filter((c) => c.origin === 'platform').map((c) => c.type),
      [...PLATFORM_EVENT_TYPES].sort(),
    );
    assert.deepEqual(
      catalogue.find((c) => c.type === 'vehicle.processed'),
      { type: 'vehicle.processed', description: 'Vehículo procesado', origin: 'flow', example: null },
    );
    assert.ok(catalogue.every((c) => c.origin === 'flow' || (c.description && c.example)));
    await helper.unload();
    await helper.load([eventModule], flow.filter((n) => n.id !== 'emitter') as never);
    answer = nextMessage('out');
    helper.getNode('cat').receive({ payload: 'read' } as never);
    catalogue = (await answer).payload;
    assert.equal(
      catalogue.find((c) => c.type === 'vehicle.processed'),
      undefined,
    );
  });

  it('stops a flow that feeds a listener’s events back into an emitter of the same types', async () => {
    await helper.load([eventModule, catchNode], [
      tab,
      { id: 'listen', type: 'conflux-event', z: 'tab', mode: 'platform', patterns: 'loop.*', wires: [['emitter']] },
      { id: 'emitter', type: 'conflux-event', z: 'tab', mode: 'emit', eventType: 'loop.again', wires: [[]] },
      catcher,
      { id: 'caught', type: 'helper', z: 'tab' },
    ] as never);
    const caught = nextMessage('caught');
    helper.getNode('emitter').receive({ payload: { n: 1 } } as never);
    const report = await caught;
    assert.match(report.error.message, /an event loop: this message went through 8 event emitters/);
  });
});

describe('conflux-event: the shipped example flow (flows/events-vehicle-processed.json)', function () {
  this.timeout(10_000);
  afterEach(() => helper.unload());

  it('emits vehicle.processed with the VIN as subject, heard by its platform listener, and lists it in the catalogue', async () => {
    const flow = (JSON.parse(fs.readFileSync(path.join(root, 'flows', 'events-vehicle-processed.json'), 'utf8')) as Msg[])
      .filter((n) => n.type !== 'comment')
      // The debug nodes become helper nodes with the same ids, so the test sees what the sidebar would.
      .map((n) => (n.type === 'debug' ? { id: n.id, type: 'helper', z: n.z, name: n.name } : n));
    await helper.load([eventModule, injectNode], flow as never);
    const byName = (name: string) => flow.find((n) => n.name === name)!.id as string;
    const [event, platform, catalogue] = [byName('the event'), byName('platform events'), byName('catalogue')];
    const heard = collect(platform);
    const emitted = nextMessage(event);
    helper.getNode(byName('vehicle processed')).receive({} as never);
    const first = (await emitted).payload as PlatformEvent;
    assert.equal(first.type, 'vehicle.processed');
    assert.equal(first.subject, 'WVWZZZ1JZXW000001');
    assert.equal(first.occurredAt, '2026-03-02T08:15:00.000Z');
    await until('the listener to hear it', () => heard.length === 1);
    const again = nextMessage(event);
    helper.getNode(byName('vehicle processed')).receive({} as never);
    assert.equal(((await again).payload as PlatformEvent).id, first.id, 'clicked twice: the same event');
    const listed = nextMessage(catalogue);
    helper.getNode(byName('read')).receive({} as never);
    const types = ((await listed).payload as Array<{ type: string; description: string }>).filter((c) => c.type === 'vehicle.processed');
    assert.deepEqual(types, [
      { type: 'vehicle.processed', description: 'Vehículo procesado: every image of the vehicle is processed', origin: 'flow', example: null },
    ]);
  });
});
