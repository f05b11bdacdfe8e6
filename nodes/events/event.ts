/**
 * conflux-event (docs/events.md): in "emit" mode, a custom event from each message (seed 002's
 * vehicle.processed, msg.payload as data), passed on and published on the runtime's event hub;
 * in "platform" mode, the hub's events whose type matches the patterns (no input); in
 * "catalogue" mode, the event catalogue on each input. The event logic is nodes/core/events/.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { fullCatalogue, isPlatformType } from '../core/events/catalogue';
import { eventFromMessage, type EmitMessage, type EventIdentity } from '../core/events/emit';
import { isEventPattern, isEventType, typesMatch } from '../core/events/event';
import { customTypesOf, onEvent, publishEvent } from '../shared/event-hub';
import { boolField, listField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';

interface EventDef extends NodeDef {
  mode?: string;
  eventType?: string;
  typeFromMessage?: boolean | string;
  subject?: string;
  tenant?: string;
  description?: string;
  identity?: string;
  publish?: boolean | string;
  patterns?: string;
  tenants?: string;
}

/** An emitter fed, through a flow, by a listener of its own events stops here instead of looping. */
const MAX_DEPTH = 8;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function EventNode(this: Node, def: EventDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const mode = textField(def.mode) || 'emit';
    let count = 0;
    let failed = 0;
    const status = throttledStatus(node, () => {
      const text = t(mode === 'platform' ? 'event.status.passed' : mode === 'catalogue' ? 'event.status.read' : 'event.status.emitted', { n: count });
      return failed > 0
        ? { fill: 'yellow', shape: 'dot', text: `${text}, ${t('conflux.status.failed', { n: failed })}` }
        : { fill: 'green', shape: count > 0 ? 'dot' : 'ring', text };
    });
    const invalid = (reason: string) => {
      node.error(`conflux-event: ${reason}`);
      node.status({ fill: 'red', shape: 'ring', text: t('conflux.status.invalidConfig', { reason }) });
    };
    const custom = customTypesOf(RED);
    let stop = () => {};

    if (mode === 'platform') {
      const patterns = listField(def.patterns);
      if (patterns.length === 0) patterns.push('*');
      const tenants = listField(def.tenants);
      const bad = patterns.find((p) => !isEventPattern(p));
      if (bad !== undefined) invalid(`"${bad}" is not an event type pattern (*, a type, or a prefix like device.*)`);
      else {
        stop = onEvent(RED, (event, meta) => {
          if (!typesMatch(patterns, event.type) || (tenants.length > 0 && !tenants.includes(event.tenant))) return;
          count++;
          status.soon();
          node.send({ payload: event, topic: event.type, eventDepth: meta.depth } as NodeMessage);
        });
        node.status({ fill: 'green', shape: 'ring', text: patterns.join(', ').slice(0, 60) });
      }
    } else if (mode === 'catalogue') {
      node.on('input', (msg, send, done) => {
        msg.payload = fullCatalogue(custom);
        count++;
        status.soon();
        send(msg);
        done();
      });
    } else {
      const options = {
        type: textField(def.eventType),
        typeFromMessage: boolField(def.typeFromMessage),
        subjectProperty: textField(def.subject).replace(/^msg\./, '') || 'subject',
        tenant: textField(def.tenant) || 'default',
        identity: (textField(def.identity) === 'content' ? 'content' : 'occurrence') as EventIdentity,
      };
      const publish = boolField(def.publish, true);
      const description = textField(def.description);
      if (options.type !== '' && !isEventType(options.type))
        invalid(`"${options.type}" is not an event type (dotted lower-case words, e.g. vehicle.processed)`);
      else if (isPlatformType(options.type)) {
        if (options.type !== 'reading.received') invalid(`"${options.type}" is a platform event type; a flow emits its own types`);
      } else if (options.type !== '') custom.register(node.id, options.type, description);
      node.on('input', (input, send, done) => {
        const msg = input as NodeMessage & EmitMessage & { eventDepth?: unknown };
        const depth = (typeof msg.eventDepth === 'number' ? msg.eventDepth : 0) + 1;
        let event;
        try {
          if (depth > MAX_DEPTH)
            throw new Error(`an event loop: this message went through ${MAX_DEPTH} event emitters (a platform listener feeds its own events back?)`);
          event = eventFromMessage(msg, options);
        } catch (err) {
          failed++;
          status.soon();
          return done(new Error(`conflux-event: ${(err as Error).message}`));
        }
        if (!isPlatformType(event.type)) custom.register(node.id, event.type);
        msg.payload = event;
        msg.topic = event.type;
        msg.eventDepth = depth;
        count++;
        status.soon();
        // Listeners (platform mode) see flow events too; they get them before this node's wires.
        if (publish) publishEvent(RED, event, { depth });
        send(msg);
        done();
      });
    }

    node.on('close', (_removed: boolean, done: () => void) => {
      stop();
      custom.withdraw(node.id);
      status.close();
      done();
    });
  }
  RED.nodes.registerType('conflux-event', EventNode);
};
