/**
 * The UDP telemetry datagram (docs/protocol-udp.md): who sends, the single-use token that
 * proves it, and the payload, in one compact binary layout.
 *
 *   offset      size  field
 *   0           1     version, 1
 *   1           1     L: serial length in bytes, 1 to 255
 *   2           L     serial number, UTF-8
 *   2+L         16    token, as issued over an authenticated session
 *   18+L        1     payload type, the TCP frame type numbers:
 *                       0x01 binary SenML CBOR
 *                       0x02 ASCII UltraLight
 *                       0x03 UTF-8 UltraLight
 *                       0x04 JSON: a SenML JSON array, or an object of attribute values
 *   19+L        rest  payload, at least one byte
 *
 * Parsing never throws: a datagram is either read or refused with a reason a device maker can
 * act on. Framework-free.
 */
import { TOKEN_BYTES } from '../devices/udp-tokens';
import { decodeDevicePayload, scopeToDevice, type Decoded } from '../devices/ingest';
import { detectSenmlFormat } from '../codecs/senml-common';
import { CodecError } from '../errors';

export const DATAGRAM_VERSION = 1;
/** Bytes before the payload, besides the serial: version, serial length, token, payload type. */
export const DATAGRAM_OVERHEAD = 1 + 1 + TOKEN_BYTES + 1;
export const MAX_SERIAL_BYTES = 255;

export const PayloadType = {
  senmlCbor: 0x01,
  ultralightAscii: 0x02,
  ultralightUtf8: 0x03,
  json: 0x04,
} as const;
export type PayloadTypeCode = (typeof PayloadType)[keyof typeof PayloadType];

const TYPE_NAMES: Record<number, string> = {
  0x01: 'binary SenML CBOR',
  0x02: 'ASCII UltraLight',
  0x03: 'UTF-8 UltraLight',
  0x04: 'JSON',
};

const hex = (n: number) => `0x${n.toString(16).padStart(2, '0')}`;
const KNOWN_TYPES = Object.entries(TYPE_NAMES)
  .map(([code, name]) => `${hex(Number(code))} ${name}`)
  .join(', ');

export function isPayloadType(n: number): n is PayloadTypeCode {
  return n in TYPE_NAMES;
}

export interface Datagram {
  serial: string;
  /** TOKEN_BYTES bytes (a view over the datagram). */
  token: Buffer;
  type: PayloadTypeCode;
  /** A view over the datagram. */
  payload: Buffer;
}

export type ParsedDatagram = { ok: true; datagram: Datagram } | { ok: false; reason: string };

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Strict UTF-8: undefined when the bytes are not valid UTF-8. */
function utf8(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

const refuse = (reason: string): ParsedDatagram => ({ ok: false, reason });

/** Reads a datagram's layout (not its payload); never throws. */
export function parseDatagram(input: Uint8Array): ParsedDatagram {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length === 0) return refuse('empty datagram');
  if (buf[0] !== DATAGRAM_VERSION) return refuse(`version ${buf[0]} is not supported (expected ${DATAGRAM_VERSION})`);
  if (buf.length < 2) return refuse('datagram ends before the serial length (byte 1)');
  const serialLength = buf[1];
  if (serialLength === 0) return refuse('serial length is 0: a datagram names its device');
  const tokenAt = 2 + serialLength;
  if (buf.length < tokenAt) return refuse(`datagram ends inside the serial (${serialLength} bytes declared, ${buf.length - 2} present)`);
  const serial = utf8(buf.subarray(2, tokenAt));
  if (serial === undefined) return refuse('serial is not valid UTF-8');
  const typeAt = tokenAt + TOKEN_BYTES;
  if (buf.length < typeAt)
    return refuse(`datagram ends inside the token (${TOKEN_BYTES} bytes expected at offset ${tokenAt}, ${buf.length - tokenAt} present)`);
  if (buf.length <= typeAt) return refuse(`datagram ends before the payload type (offset ${typeAt})`);
  const type = buf[typeAt];
  if (!isPayloadType(type)) return refuse(`payload type ${hex(type)} is unknown (expected ${KNOWN_TYPES})`);
  if (buf.length === typeAt + 1) return refuse('no payload');
  return {
    ok: true,
    datagram: { serial, token: buf.subarray(tokenAt, typeAt), type, payload: buf.subarray(typeAt + 1) },
  };
}

export interface DatagramFields {
  serial: string;
  token: Uint8Array;
  type: PayloadTypeCode;
  payload: Uint8Array | string;
}

/** Builds a datagram (the device side); throws RangeError on fields the layout cannot carry. */
export function encodeDatagram({ serial, token, type, payload }: DatagramFields): Buffer {
  const s = Buffer.from(serial, 'utf8');
  if (s.length === 0 || s.length > MAX_SERIAL_BYTES) throw new RangeError(`the serial must be 1 to ${MAX_SERIAL_BYTES} bytes of UTF-8, got ${s.length}`);
  if (token.length !== TOKEN_BYTES) throw new RangeError(`a token is ${TOKEN_BYTES} bytes, got ${token.length}`);
  if (!isPayloadType(type)) throw new RangeError(`payload type ${hex(type)} is unknown (expected ${KNOWN_TYPES})`);
  const p = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (p.length === 0) throw new RangeError('the payload is empty');
  const out = Buffer.allocUnsafe(DATAGRAM_OVERHEAD + s.length + p.length);
  out[0] = DATAGRAM_VERSION;
  out[1] = s.length;
  s.copy(out, 2);
  out.set(token, 2 + s.length);
  out[2 + s.length + TOKEN_BYTES] = type;
  out.set(p, DATAGRAM_OVERHEAD + s.length);
  return out;
}

/** `internal` marks a failure that is our bug, not the payload's (still a refusal: the listener must not crash). */
export type DecodedPayload = { ok: true; decoded: Decoded } | { ok: false; reason: string; internal?: true };

/**
 * Decodes a datagram's payload for the (authenticated) device `serial`; never throws. Record
 * names are scoped to the device. `now` in seconds, for records without a time.
 */
export function decodeDatagramPayload(type: PayloadTypeCode, payload: Uint8Array, serial: string, now = Date.now() / 1000): DecodedPayload {
  if (payload.length === 0) return { ok: false, reason: 'no payload' };
  try {
    let decoded: Decoded;
    switch (type) {
      case PayloadType.senmlCbor: {
        let wire: string;
        try {
          wire = detectSenmlFormat(payload);
        } catch {
          wire = 'unknown';
        }
        if (wire !== 'cbor') return { ok: false, reason: `payload type 0x01 expects a SenML CBOR array, but the payload starts with byte ${hex(payload[0])}` };
        decoded = decodeDevicePayload('senml', payload, serial, now);
        break;
      }
      case PayloadType.ultralightAscii: {
        const at = payload.findIndex((b) => b > 0x7f);
        if (at >= 0) return { ok: false, reason: `payload type 0x02 is ASCII, but payload byte ${at} is ${hex(payload[at])}` };
        decoded = decodeDevicePayload('ultralight', payload, serial, now);
        break;
      }
      case PayloadType.ultralightUtf8: {
        const text = utf8(payload);
        if (text === undefined) return { ok: false, reason: 'payload type 0x03 is UTF-8, but the payload is not valid UTF-8' };
        decoded = decodeDevicePayload('ultralight', text, serial, now);
        break;
      }
      case PayloadType.json: {
        const text = utf8(payload);
        if (text === undefined) return { ok: false, reason: 'payload type 0x04 is JSON, but the payload is not valid UTF-8' };
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch (err) {
          return { ok: false, reason: `payload is not JSON: ${(err as Error).message}` };
        }
        if (Array.isArray(value)) decoded = decodeDevicePayload('senml', value, serial, now);
        else if (value !== null && typeof value === 'object') decoded = decodeDevicePayload('attributes', value, serial, now);
        else return { ok: false, reason: 'a JSON payload is a SenML array or an object of attribute values' };
        break;
      }
      default:
        return { ok: false, reason: `payload type ${hex(type as number)} is unknown (expected ${KNOWN_TYPES})` };
    }
    // Every name under "<serial>/", whatever the format (an UltraLight command-result group names a device itself).
    scopeToDevice(decoded.records, serial);
    return { ok: true, decoded };
  } catch (err) {
    if (err instanceof CodecError) return { ok: false, reason: err.message };
    return { ok: false, reason: `internal error: ${err instanceof Error ? err.message : String(err)}`, internal: true };
  }
}

/** The payload type's name, for messages and docs. */
export function payloadTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `unknown type ${hex(type)}`;
}
