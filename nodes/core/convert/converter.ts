/**
 * What every converter node does, free of Node-RED: pick a direction, run a codec, and leave the
 * message in canonical form (DESIGN.md) on decode or in the wire format on encode.
 */
import type { DeviceRef, SourceInfo } from '../model/message';
import type { ResolvedRecord } from '../model/senml';

export type Mode = 'auto' | 'decode' | 'encode';
export type Direction = 'decode' | 'encode';

/** A Node-RED message as converters see it: any properties, canonical ones typed. */
export interface ConvertibleMessage {
  payload?: unknown;
  device?: DeviceRef;
  source?: Partial<SourceInfo>;
  [property: string]: unknown;
}

export interface Decoded {
  records: ResolvedRecord[];
  /** the wire format read, e.g. senml+json; written to msg.source.format */
  format: string;
}

export interface Converter {
  /** the way `auto` goes for this message */
  direction(msg: ConvertibleMessage): Direction;
  /** may also set format-specific properties on msg (e.g. msg.sen1) for a later encode */
  decode(msg: ConvertibleMessage, now: number): Decoded | Promise<Decoded>;
  encode(msg: ConvertibleMessage): unknown | Promise<unknown>;
  /** encode yields an array of payloads, each sent as its own message (one per AMQP or XMPP message) */
  encodesMany?: boolean;
}

export interface Outcome {
  direction: Direction;
  /** records decoded, or records encoded */
  records: number;
  /** with encodesMany: the payloads, one message each */
  payloads?: unknown[];
}

export function parseMode(value: unknown): Mode {
  return value === 'decode' || value === 'encode' ? value : 'auto';
}

/** True for text or bytes: what a listener hands over before anything has decoded it. */
export function isWireData(payload: unknown): payload is string | Uint8Array {
  return typeof payload === 'string' || payload instanceof Uint8Array;
}

/** True when a Conflux decoder already made this message canonical. */
export function isCanonical(msg: ConvertibleMessage): boolean {
  return Array.isArray(msg.payload) && typeof msg.source?.format === 'string';
}

/** Converts msg in place; throws CodecError when the payload cannot be converted. */
export async function convert(converter: Converter, msg: ConvertibleMessage, mode: Mode, nowMs = Date.now()): Promise<Outcome> {
  const direction = mode === 'auto' ? converter.direction(msg) : mode;
  if (direction === 'decode') {
    const { records, format } = await converter.decode(msg, nowMs / 1000);
    msg.payload = records;
    msg.source = {
      transport: msg.source?.transport ?? 'flow',
      format,
      receivedAt: msg.source?.receivedAt ?? nowMs,
    };
    return { direction, records: records.length };
  }
  const count = Array.isArray(msg.payload) ? msg.payload.length : 0;
  const encoded = await converter.encode(msg);
  if (converter.encodesMany) return { direction, records: count, payloads: encoded as unknown[] };
  msg.payload = encoded;
  return { direction, records: count };
}
