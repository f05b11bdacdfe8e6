/**
 * What a conflux-webhook-in endpoint makes of a body, framework-free: any Conflux codec turns it
 * into the canonical message (the converters of ../convert, as the converter nodes run them), or
 * JSON passes through as it is, with the event it holds when it is a platform event.
 *
 *   json        any JSON value → msg.payload; a PlatformEvent ({id, type, subject, occurredAt,
 *               data}) also → msg.event, its tenant the authenticated one
 *   senml       SenML JSON, CBOR or XML (from the node's format, else the Content-Type, else the
 *               first byte) → resolved records
 *   sen1        the federation's Sen1Message XML → records (msg.sen1 keeps its metadata)
 *   ultralight  UltraLight 2.0 text → records under the node's device id
 *   eapi        the data logger's eapi_* JSON → records
 *   map         any JSON through the node's JSONata expression → records
 *
 * A body that does not decode throws CodecError with the codec's reason (the endpoint answers
 * 400 and stores nothing). Each codec accepts the media types that can carry it (else 415).
 */
import { CodecError } from '../errors';
import { convert, type Converter, type ConvertibleMessage } from '../convert/converter';
import { eapiConverter } from '../convert/eapi';
import { mapConverter } from '../convert/map';
import { sen1Converter } from '../convert/sen1';
import { senmlConverter, type SenmlFormat } from '../convert/senml';
import { ultralightConverter } from '../convert/ultralight';
import { parseEvent, type PlatformEvent } from '../events/event';
import type { DeviceRef } from '../model/message';
import { parseContentType } from '../protocol/http-ingest';

export type WebhookCodec = 'json' | 'senml' | 'sen1' | 'ultralight' | 'eapi' | 'map';
export const CODECS: readonly WebhookCodec[] = ['json', 'senml', 'sen1', 'ultralight', 'eapi', 'map'];

export interface DecodeConfig {
  codec: WebhookCodec;
  /** senml: the wire format; 'auto' reads the Content-Type, then the first byte. */
  senmlFormat?: SenmlFormat;
  /** The device the records belong to (msg.device.id; UltraLight measures need one). */
  deviceId?: string;
  /** map: the JSONata expression. */
  expression?: string;
}

export interface DecodedBody {
  payload: unknown;
  /** The wire format read: `json`, `senml+json`, `sen1`, `ultralight`, `eapi`... */
  format: string;
  device?: DeviceRef;
  event?: PlatformEvent;
  /** sen1: the message's metadata, for a later encode. */
  sen1?: unknown;
}

export interface BodyDecoder {
  readonly codec: WebhookCodec;
  /** The media types this codec takes, for a 415's detail and Accept-Post. */
  readonly accepts: readonly string[];
  /** undefined when the Content-Type (absent is fine) can carry this codec, else the reason. */
  mediaRefusal(contentType: string | undefined): string | undefined;
  /** Decodes for `tenant`; throws CodecError with the reason. `nowMs` is the reception time. */
  decode(body: Buffer, contentType: string | undefined, tenant: string, nowMs: number): Promise<DecodedBody>;
}

const JSON_TYPES = ['application/json'];
const MEDIA: Record<WebhookCodec, readonly string[]> = {
  json: JSON_TYPES,
  senml: ['application/senml+json', 'application/senml+cbor', 'application/senml+xml', 'application/json', 'application/cbor', 'application/xml', 'text/xml'],
  sen1: ['application/xml', 'text/xml'],
  ultralight: ['text/plain'],
  eapi: JSON_TYPES,
  map: JSON_TYPES,
};
const CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii']);
const BINARY = new Set(['application/senml+cbor', 'application/cbor']);
const SENML_BY_TYPE: Record<string, SenmlFormat> = {
  'application/senml+json': 'json',
  'application/json': 'json',
  'application/senml+cbor': 'cbor',
  'application/cbor': 'cbor',
  'application/senml+xml': 'xml',
  'application/xml': 'xml',
  'text/xml': 'xml',
};

function acceptsType(codec: WebhookCodec, type: string): boolean {
  // JSON codecs also take the structured-syntax suffix (application/cloudevents+json, ...).
  return MEDIA[codec].includes(type) || (MEDIA[codec] === JSON_TYPES && /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(type));
}

function textOf(body: Buffer): string {
  const text = body.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * Deepest nesting of a JSON body. JSON.parse takes any depth, but JSON.stringify (storing the
 * event) and a flow's message cloning recurse: a body of 8,000 `[` made the receiver answer 500.
 */
export const MAX_JSON_DEPTH = 256;

/** The nesting depth of JSON text (brackets outside strings), stopping once past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b /* [ { */) {
      if (++depth > max && (max = depth) > limit) return max;
    } else if (c === 0x5d || c === 0x7d /* ] } */) depth--;
  }
  return max;
}

export function parseJsonBody(body: Buffer, format = 'json'): unknown {
  const text = textOf(body);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CodecError(format, `the body is not JSON: ${(err as Error).message}`);
  }
  if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw new CodecError(format, `the body is nested deeper than ${MAX_JSON_DEPTH} levels`);
  return value;
}

/** The platform event a JSON value is, for the authenticated tenant; undefined when it is not one. */
export function eventOf(value: unknown, tenant: string): PlatformEvent | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.id !== 'string' || typeof v.type !== 'string') return undefined;
  try {
    // The sender speaks for the tenant it authenticated as, whatever the body claims.
    return parseEvent({ ...v, tenant });
  } catch {
    return undefined;
  }
}

export function createBodyDecoder(config: DecodeConfig): BodyDecoder {
  const codec = config.codec;
  if (!CODECS.includes(codec)) throw new Error(`unknown codec ${JSON.stringify(codec)}`);
  const deviceId = config.deviceId ?? '';
  let converter: Converter | undefined;
  switch (codec) {
    case 'sen1':
      converter = sen1Converter({ username: '', applicationSrc: '', applicationDst: '', type: '' });
      break;
    case 'ultralight':
      converter = ultralightConverter({ deviceId, map: {} });
      break;
    case 'eapi':
      converter = eapiConverter();
      break;
    case 'map':
      if (!config.expression?.trim()) throw new Error('the map codec needs a JSONata expression');
      converter = mapConverter(config.expression); // compiles now: a syntax error shows at deploy
      break;
  }

  function mediaRefusal(contentType: string | undefined): string | undefined {
    if (contentType === undefined || contentType.trim() === '') return undefined;
    const media = parseContentType(contentType);
    if (!media) return `malformed Content-Type ${JSON.stringify(contentType.slice(0, 100))}`;
    if (!acceptsType(codec, media.type)) return `${media.type} cannot carry ${codec}: send one of ${MEDIA[codec].join(', ')}`;
    const charset = media.params.charset?.toLowerCase();
    if (charset !== undefined && !BINARY.has(media.type) && !CHARSETS.has(charset)) return `charset ${media.params.charset} is not accepted: send UTF-8`;
    return undefined;
  }

  async function decode(body: Buffer, contentType: string | undefined, tenant: string, nowMs: number): Promise<DecodedBody> {
    if (body.length === 0) throw new CodecError(codec, 'the body is empty');
    const device = deviceId ? { tenant, id: deviceId } : undefined;
    if (codec === 'json') {
      const payload = parseJsonBody(body);
      return { payload, format: 'json', device, event: eventOf(payload, tenant) };
    }
    let c = converter;
    let input: unknown = body;
    if (codec === 'senml') {
      const type = contentType ? parseContentType(contentType)?.type : undefined;
      const format: SenmlFormat =
        config.senmlFormat && config.senmlFormat !== 'auto' ? config.senmlFormat : ((type ? SENML_BY_TYPE[type] : undefined) ?? 'auto');
      c = senmlConverter({ format });
    } else if (codec === 'map' || codec === 'eapi') input = parseJsonBody(body, codec);
    const msg: ConvertibleMessage = { payload: input, device };
    await convert(c!, msg, 'decode', nowMs);
    const records = msg.payload as unknown[];
    if (records.length === 0) throw new CodecError(String(msg.source?.format ?? codec), 'the body holds no readings');
    return { payload: records, format: String(msg.source?.format ?? codec), device, sen1: msg.sen1 };
  }

  return { codec, accepts: MEDIA[codec], mediaRefusal, decode };
}
