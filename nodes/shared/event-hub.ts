/**
 * One event hub per Node-RED runtime: the platform's nodes publish their events here (device
 * connected, command answered, delivery failed…) and conflux-event nodes in "platform events"
 * mode pass them into flows, where a webhook-out or an AMQP-out node stores them in the outbox.
 * In process and not durable by itself: what must not be lost is written to the outbox by the
 * flow before the listener acknowledges.
 */
import { EventEmitter } from 'node:events';
import type { NodeAPI } from 'node-red';
import type { PlatformEvent } from '../core/events/event';

const hubs = new WeakMap<object, EventEmitter>();

// Node-RED gives each node module its own RED object; RED.events is the runtime's one emitter.
function hubOf(RED: NodeAPI): EventEmitter {
  const key: object = (RED as { events?: object }).events ?? RED;
  let hub = hubs.get(key);
  if (!hub) {
    hub = new EventEmitter();
    hub.setMaxListeners(0);
    hubs.set(key, hub);
  }
  return hub;
}

export function publishEvent(RED: NodeAPI, event: PlatformEvent): void {
  hubOf(RED).emit('event', event);
}

/** Calls listener with every event published from now on; returns the unsubscribe. */
export function onEvent(RED: NodeAPI, listener: (event: PlatformEvent) => void): () => void {
  const hub = hubOf(RED);
  hub.on('event', listener);
  return () => hub.off('event', listener);
}
