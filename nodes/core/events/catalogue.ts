/**
 * The catalogue of event types the platform itself emits. Flows add their own types (seed 002's
 * `vehicle.processed`) through the conflux-event node; those join the catalogue while the node is
 * deployed. docs/events.md shows an example body of each type.
 */

export interface EventTypeInfo {
  type: string;
  /** One line, in English (the editor translates its own texts, not the catalogue). */
  description: string;
  /** Who emits it: the platform, or a flow (custom types). */
  origin: 'platform' | 'flow';
  /** An example of `data`. */
  example: unknown;
}

export const PLATFORM_EVENT_TYPES = [
  'device.created',
  'device.updated',
  'device.deleted',
  'device.connected',
  'device.disconnected',
  'reading.received',
  'command.answered',
  'command.timed_out',
  'delivery.failed',
  'subscription.disabled',
] as const;

export type PlatformEventType = (typeof PLATFORM_EVENT_TYPES)[number];
