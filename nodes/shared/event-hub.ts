/**
 * One event hub per Node-RED runtime: the platform's nodes publish their events here (device
 * connected, command answered, delivery failed…) and conflux-event nodes in "platform events"
 * mode pass them into flows, where a webhook-out or an AMQP-out node stores them in the outbox.
 * In process and not durable by itself: what must not be lost is written to the outbox by the
 * flow before the listener acknowledges. The runtime's custom event types (conflux-event nodes
 * in "emit" mode) are kept here too, for the catalogue.
 */
import { EventEmitter } from 'node:events';
import type { NodeAPI } from 'node-red';
import { CustomTypes } from '../core/events/catalogue';
import type { PlatformEvent } from '../core/events/event';

/** What travels with an event on the hub, beside it. */
export interface EventMeta {
  /**
   * How many conflux-event emissions led to this one (0: the platform's own). A flow that feeds a
   * listener's events back into an emitter would otherwise loop for ever; the emitter stops it.
   */
  depth: number;
}

interface Hub {
  emitter: EventEmitter;
  custom: CustomTypes;
}

const hubs = new WeakMap<object, Hub>();

// Node-RED gives each node module its own RED object; RED.events is the runtime's one emitter.
function hubOf(RED: NodeAPI): Hub {
  const key: object = (RED as { events?: object }).events ?? RED;
  let hub = hubs.get(key);
  if (!hub) {
    const emitter = new EventEmitter();
    emitter.setMaxListeners(0);
    hub = { emitter, custom: new CustomTypes() };
    hubs.set(key, hub);
  }
  return hub;
}

/** Publishes to every listener, synchronously; a listener's failure never reaches the publisher. */
export function publishEvent(RED: NodeAPI, event: PlatformEvent, meta: EventMeta = { depth: 0 }): void {
  for (const listener of hubOf(RED).emitter.listeners('event') as Array<(e: PlatformEvent, m: EventMeta) => void>) {
    try {
      listener(event, meta);
    } catch (err) {
      RED.log.warn(`conflux event hub: a listener failed on ${event.type}: ${(err as Error).message}`);
    }
  }
}

/** Calls listener with every event published from now on; returns the unsubscribe. */
export function onEvent(RED: NodeAPI, listener: (event: PlatformEvent, meta: EventMeta) => void): () => void {
  const hub = hubOf(RED).emitter;
  hub.on('event', listener);
  return () => hub.off('event', listener);
}

/** The runtime's custom event types (registered by conflux-event nodes). */
export function customTypesOf(RED: NodeAPI): CustomTypes {
  return hubOf(RED).custom;
}
