/**
 * What conflux-amqp-out sends, and what conflux-amqp-in makes of what it receives. Framework-free.
 *
 * Out: a canonical reading message becomes the cloud logger's eapi_* messages (seed 004, through
 * the eapi codec), one AMQP message each, routing key `<customer>.eapi_<type>`; or, in "event"
 * mode, its reading.received event. A platform event (msg.payload or msg.event) goes as its JSON
 * with routing key `<customer>.event.<type>`. Every message has a stable id: the event's id, or a
 * hash of the customer and the eapi body, so the same reading sent twice is one id and a consumer
 * de-duplicates on it (the outbox too).
 *
 * In: the body is decoded with a chosen codec (eapi, SenML JSON, or JSON passed through).
 */
import { createHash } from 'node:crypto';
import { decodeEapi, encodeEapi } from '../codecs/eapi';
import { decodeSenmlJson } from '../codecs/senml-json';
import { carriedEvent, readingEvent, type PlatformEvent } from '../events/event';
import type { CanonicalMessage } from '../model/message';
import type { ResolvedRecord } from '../model/senml';
import { routingKey } from './topology';

/** What the outbox keeps for one AMQP message (JSON). */
export interface QueuedAmqp {
  customer: string;
  routingKey: string;
  type: string;
  body: string;
  /** ms since the epoch: when it happened (the reading's or event's time). */
  timestamp: number;
}

export interface Prepared {
  messageId: string;
  message: QueuedAmqp;
}

export type ReadingMode = 'eapi' | 'event';

interface InputMessage {
  payload?: unknown;
  event?: unknown;
  device?: { tenant?: unknown; id?: unknown };
  source?: unknown;
}

function fromEvent(customer: string, event: PlatformEvent): Prepared {
  return {
    messageId: event.id,
    message: {
      customer,
      routingKey: routingKey(customer, { eventType: event.type }),
      type: event.type,
      body: JSON.stringify(event),
      timestamp: Date.parse(event.occurredAt),
    },
  };
}

/** The AMQP messages of one Node-RED message; throws with the reason when it is neither a reading nor an event. */
export function prepareOutgoing(msg: InputMessage, customer: string, mode: ReadingMode, fallbackTenant = 'default'): Prepared[] {
  const event = carriedEvent(msg);
  if (event) return [fromEvent(customer, event)];
  const records = msg.payload as ResolvedRecord[];
  if (mode === 'event') return [fromEvent(customer, readingEvent(msg as CanonicalMessage, fallbackTenant))];
  // encodeEapi formats and validates each message once: its JSON is the body as it is.
  return encodeEapi(records).map((m) => {
    const { type, data } = m;
    const body = JSON.stringify(m);
    return {
      messageId: `eapi_${createHash('sha256').update(customer).update('\n').update(body).digest('base64url').slice(0, 32)}`,
      message: { customer, routingKey: routingKey(customer, { eapiType: type }), type, body, timestamp: Date.parse(data.timeStamp) },
    };
  });
}

export type InCodec = 'eapi' | 'senml' | 'json';

export interface Decoded {
  payload: unknown;
  /** The device the records are of (eapi: deviceId), when the codec knows it. */
  deviceId?: string;
  format: string;
}

/** Decodes a received body; throws CodecError (eapi, SenML) or SyntaxError (JSON) when it cannot. */
export function decodeIncoming(body: Buffer, codec: InCodec): Decoded {
  switch (codec) {
    case 'eapi': {
      const records = decodeEapi(body);
      return { payload: records, deviceId: records[0]?.n.split('/')[0], format: 'eapi' };
    }
    case 'senml':
      return { payload: decodeSenmlJson(body), format: 'senml+json' };
    case 'json':
      return { payload: JSON.parse(body.toString('utf8')) as unknown, format: 'json' };
  }
}
