/**
 * The catalogue of event types: the platform's own (fixed, each with a description and an
 * example event built by the same code that emits it, so docs/events.md cannot drift from it —
 * test/unit/events.test.ts compares them), and the custom types flows emit through conflux-event
 * nodes, which join the catalogue while such a node is deployed. Framework-free.
 */
import { readingEvent, type PlatformEvent } from './event';
import { commandAnswered, commandTimedOut, deliveryFailed, deviceChanged, deviceConnected, deviceDisconnected, subscriptionDisabled } from './platform';

export interface EventTypeInfo {
  type: string;
  /** One line, in English (the editor translates its own texts, not the catalogue). */
  description: string;
  /** Who emits it: the platform, or a flow (custom types). */
  origin: 'platform' | 'flow';
  /** An example of `data`; null for a custom type (a flow's data is its own). */
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

export const isPlatformType = (type: string): type is PlatformEventType => (PLATFORM_EVENT_TYPES as readonly string[]).includes(type);

// The examples' shared facts: one tenant, one device, one morning.
const TENANT = 'acme';
const SERIAL = 'truck-0042';
const T0 = Date.parse('2026-03-02T08:15:00.000Z');
const DEVICE_ROW = {
  id: 17,
  serial: SERIAL,
  name: 'Delivery truck 42',
  model: 'tracker-x2',
  attributes: { fleet: 'north' },
  created_at: new Date(T0),
  updated_at: new Date(T0),
  disabled_at: null,
  last_seen_at: null,
};

const PLATFORM: Record<PlatformEventType, { description: string; example: () => PlatformEvent }> = {
  'device.created': {
    description: 'A device was registered through the conflux-business node, or the demo device was created at first start.',
    example: () => deviceChanged('created', TENANT, DEVICE_ROW),
  },
  'device.updated': {
    description: 'A device row was changed; data.changed names the fields the update was given.',
    example: () => deviceChanged('updated', TENANT, { ...DEVICE_ROW, name: 'Truck 42 (north)', updated_at: new Date(T0 + 3_600_000) }, { changed: ['name'] }),
  },
  'device.deleted': {
    description: 'A device was deleted; data.device is the row as it was.',
    example: () => deviceChanged('deleted', TENANT, DEVICE_ROW, { at: T0 + 7_200_000 }),
  },
  'device.connected': {
    description: 'A device opened a session (TCP login or MQTT connection) after authenticating.',
    example: () => deviceConnected({ tenant: TENANT, serial: SERIAL, transport: 'tcp', connectedAt: T0 }),
  },
  'device.disconnected': {
    description: 'A device session ended: closed by the device, timed out, refused, replaced by a newer session, or the gateway stopped.',
    example: () =>
      deviceDisconnected({ tenant: TENANT, serial: SERIAL, transport: 'tcp', connectedAt: T0, disconnectedAt: T0 + 5_400_000, reason: 'idle timeout' }),
  },
  'reading.received': {
    description: 'A device reading, as the canonical message (resolved SenML records) that a flow passes to an outgoing connector.',
    example: () =>
      readingEvent({
        payload: [
          { n: `${SERIAL}/gps/lat`, u: 'lat', v: 48.1372, t: T0 / 1000 },
          { n: `${SERIAL}/gps/lon`, u: 'lon', v: 11.5756, t: T0 / 1000 },
          { n: `${SERIAL}/engine/temperature`, u: 'Cel', v: 87.5, t: T0 / 1000 },
        ],
        device: { tenant: TENANT, id: SERIAL },
        source: { transport: 'tcp', format: 'senml+json', receivedAt: T0 + 120 },
      }),
  },
  'command.answered': {
    description: 'A device answered a command: ok with its result, or not ok with the reason it refused.',
    example: () =>
      commandAnswered({
        tenant: TENANT,
        serial: SERIAL,
        commandId: '5b0c2d4e-8f61-4f3a-9d2b-7e4a1c9f0b36',
        command: 'reboot',
        at: T0 + 60_000,
        answer: { ok: true, result: { rebooted: true } },
      }),
  },
  'command.timed_out': {
    description: 'A command got no answer in time (reason "timeout"), or a queued one expired before its device connected (reason "expired").',
    example: () =>
      commandTimedOut({
        tenant: TENANT,
        serial: SERIAL,
        commandId: '0e3f9a7c-2b41-4c8d-a6e5-91d07b3c5f28',
        command: 'reboot',
        at: T0 + 90_000,
        reason: 'timeout',
        queued: false,
        timeoutMs: 30_000,
      }),
  },
  'delivery.failed': {
    description: 'A delivery to a webhook or queue subscriber was given up after its last try and went to dead letters.',
    example: () =>
      deliveryFailed({
        tenant: TENANT,
        channel: 'webhook',
        subscription: '12',
        eventId: 'evt_ybndrfg8ejkmcpqxot1uwisza3',
        eventType: 'vehicle.processed',
        attempts: 8,
        lastError: 'HTTP 503',
        lastStatus: 503,
        at: T0 + 3 * 86_400_000,
      }),
  },
  'subscription.disabled': {
    description: 'A webhook subscription was turned off by the platform (the receiver answered 410 Gone).',
    example: () =>
      subscriptionDisabled({
        tenant: TENANT,
        subscription: '12',
        url: 'https://example.com/hooks/conflux',
        reason: 'the receiver answered 410 Gone',
        status: 410,
        at: T0,
      }),
  },
};

/** The example event of a platform type, exactly as the platform would send it. */
export function exampleEvent(type: PlatformEventType): PlatformEvent {
  return PLATFORM[type].example();
}

export function platformCatalogue(): EventTypeInfo[] {
  return PLATFORM_EVENT_TYPES.map((type) => ({ type, description: PLATFORM[type].description, origin: 'platform' as const, example: exampleEvent(type).data }));
}

/** At most this many custom types are known at once: types taken from messages must not grow it without end. */
export const MAX_CUSTOM_TYPES = 1_000;

/**
 * The custom types of one runtime. A conflux-event node registers its configured type (with its
 * description) when it starts and withdraws it when it closes; types a node takes from messages
 * are noted as they are emitted, up to MAX_CUSTOM_TYPES, and withdrawn with the node.
 */
export class CustomTypes {
  /** type → owner (node id) → description ('' when none). */
  private readonly types = new Map<string, Map<string, string>>();

  get size(): number {
    return this.types.size;
  }

  /** Registers `type` for `owner`; false when the catalogue is full. Platform types are refused by the caller. */
  register(owner: string, type: string, description = ''): boolean {
    let owners = this.types.get(type);
    if (!owners) {
      if (this.types.size >= MAX_CUSTOM_TYPES) return false;
      owners = new Map();
      this.types.set(type, owners);
    }
    if (!owners.has(owner) || description !== '') owners.set(owner, description);
    return true;
  }

  /** Withdraws every type `owner` registered (a node closing). */
  withdraw(owner: string): void {
    for (const [type, owners] of this.types) {
      owners.delete(owner);
      if (owners.size === 0) this.types.delete(type);
    }
  }

  list(): EventTypeInfo[] {
    return [...this.types].map(([type, owners]) => ({
      type,
      // Several nodes may emit one type: the first description given wins, so the text is stable.
      description: [...owners.values()].find((d) => d !== '') ?? '',
      origin: 'flow' as const,
      example: null,
    }));
  }
}

/** The whole catalogue, platform and custom types, sorted by type. */
export function fullCatalogue(custom?: CustomTypes): EventTypeInfo[] {
  return [...platformCatalogue(), ...(custom?.list() ?? [])].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}
