/**
 * The TCP device protocol's frames (docs/protocol-tcp.md). Framework-free.
 *
 *   offset  size  field
 *   0       4     length: unsigned 32-bit big-endian, the number of bytes that follow (type + payload), ≥ 1
 *   4       1     type
 *   5       n     payload, n = length − 1
 *
 * A frame's size is its length field: at most the gateway's maxFrameBytes. A length of 0 or over
 * the limit cannot be skipped safely (the framing is lost), so it ends the connection; anything
 * wrong inside a frame whose length is fine is answered with an ERROR frame and the connection
 * goes on.
 *
 * After authentication every frame the device sends is numbered, 1, 2, 3… on that connection, in
 * the order sent; ACK and ERROR frames name the number of the frame they answer (0: none).
 */
import { isUtf8 } from 'node:buffer';
import { detectSenmlFormat } from '../codecs/senml-common';
import type { DeviceFormat } from '../devices/ingest';

export const FrameType = {
  /** device → server: SenML CBOR (RFC 8428 section 6). */
  BINARY: 0x01,
  /** device → server: UltraLight 2.0 text, 7-bit ASCII only. */
  ASCII: 0x02,
  /** device → server: UltraLight 2.0 text, UTF-8. */
  UTF8: 0x03,
  /** device → server: a SenML JSON array, or a JSON object of attribute values. */
  JSON: 0x04,
  /** both ways: SCRAM-SHA-256 messages as UTF-8 text. */
  AUTH: 0x10,
  /** server → device: a command, a JSON object with "id". */
  COMMAND: 0x11,
  /** device → server: a command's outcome, a JSON object with the command's "id". */
  COMMAND_RESULT: 0x12,
  /** device → server: a request for the central system, a JSON object with "id". */
  REQUEST: 0x13,
  /** server → device: the central system's answer to a REQUEST, a JSON object with its "id". */
  RESPONSE: 0x14,
  /** both ways: answered with a PONG carrying the same payload. */
  PING: 0x15,
  PONG: 0x16,
  /** device → server: UDP tokens wanted (1 byte, 1..100); server → device: the grant. */
  TOKEN: 0x17,
  /** server → device: the data frame with this number was accepted (4-byte id). */
  ACK: 0x18,
  /** both ways: a refusal, 4-byte id of the frame it answers (0: none) then a UTF-8 reason. */
  ERROR: 0x1f,
} as const;
export type FrameTypeName = keyof typeof FrameType;

/** Length field plus type byte. */
export const FRAME_HEADER_BYTES = 5;
export const LENGTH_BYTES = 4;
/** Most UDP tokens one TOKEN request may ask for. */
export const MAX_TOKENS_PER_REQUEST = 100;
/** Bytes of one UDP token in a grant. */
export const TOKEN_GRANT_BYTES = 16;

const NAMES = new Map<number, FrameTypeName>(Object.entries(FrameType).map(([name, type]) => [type, name as FrameTypeName]));

export interface Frame {
  type: number;
  payload: Buffer;
}

/**
 * Something wrong with a frame. `fatal`: the stream cannot be read further (a bad length), the
 * connection must close; otherwise only this frame is refused.
 */
export class FrameError extends Error {
  override readonly name = 'FrameError';

  constructor(
    message: string,
    readonly fatal = false,
  ) {
    super(message);
  }
}

export function isKnownFrameType(type: number): boolean {
  return NAMES.has(type);
}

/** "JSON", or "unknown type 0x07". */
export function frameTypeName(type: number): string {
  return NAMES.get(type) ?? `unknown type 0x${type.toString(16).padStart(2, '0')}`;
}

export function isDataFrame(type: number): boolean {
  return type >= FrameType.BINARY && type <= FrameType.JSON;
}

/** One frame's bytes. */
export function encodeFrame(type: number, payload: Uint8Array | string = Buffer.alloc(0)): Buffer {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new RangeError(`frame type must be a byte, got ${type}`);
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  out.writeUInt32BE(body.length + 1, 0);
  out[4] = type;
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

export interface DecodeResult {
  frames: Frame[];
  /** Set once the stream can no longer be read (always fatal); the decoder then takes nothing more. */
  error?: FrameError;
}

/**
 * Cuts a byte stream into frames; never throws. Bytes of a frame arriving in pieces wait, at most
 * one frame's worth (maxFrameBytes + 4), and are joined once, when the frame is complete, so a
 * sender writing one byte at a time costs linear work.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(LENGTH_BYTES);
  private headerFill = 0;
  /** Bytes the current frame still needs after its length field; 0 while reading a length. */
  private need = 0;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private failure: FrameError | undefined;

  constructor(readonly maxFrameBytes: number) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1) throw new RangeError('maxFrameBytes must be a positive integer');
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.need > 0 ? LENGTH_BYTES + this.partsBytes : this.headerFill;
  }

  get failed(): FrameError | undefined {
    return this.failure;
  }

  push(chunk: Uint8Array): DecodeResult {
    const frames: Frame[] = [];
    if (this.failure) return { frames, error: this.failure };
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = 0;
    while (at < data.length) {
      if (this.need === 0) {
        // Reading a length field, possibly across chunks.
        if (this.headerFill === 0 && data.length - at >= LENGTH_BYTES) {
          const length = data.readUInt32BE(at);
          at += LENGTH_BYTES;
          if (!this.startFrame(length)) break;
        } else {
          const take = Math.min(LENGTH_BYTES - this.headerFill, data.length - at);
          data.copy(this.header, this.headerFill, at, at + take);
          this.headerFill += take;
          at += take;
          if (this.headerFill < LENGTH_BYTES) break;
          this.headerFill = 0;
          if (!this.startFrame(this.header.readUInt32BE(0))) break;
        }
        continue;
      }
      const take = Math.min(this.need, data.length - at);
      if (this.partsBytes === 0 && take === this.need) {
        // The whole frame is in this chunk: no copy.
        frames.push(toFrame(data.subarray(at, at + take)));
      } else {
        this.parts.push(data.subarray(at, at + take));
        this.partsBytes += take;
        if (take === this.need) {
          frames.push(toFrame(Buffer.concat(this.parts, this.partsBytes)));
          this.parts = [];
          this.partsBytes = 0;
        }
      }
      this.need -= take;
      at += take;
    }
    return this.failure ? { frames, error: this.failure } : { frames };
  }

  private startFrame(length: number): boolean {
    if (length === 0) {
      this.failure = new FrameError('frame length 0: a frame holds at least its type byte', true);
      return false;
    }
    if (length > this.maxFrameBytes) {
      this.failure = new FrameError(`frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes} bytes`, true);
      return false;
    }
    this.need = length;
    return true;
  }
}

function toFrame(body: Buffer): Frame {
  return { type: body[0], payload: body.subarray(1) };
}

// --- payloads -------------------------------------------------------------------------------

/** What decodeDevicePayload takes for a data frame. */
export interface DataFramePayload {
  format: DeviceFormat;
  body: unknown;
}

/** Strict UTF-8 (no overlongs, no surrogates, nothing truncated); a BOM is kept. */
export function utf8Payload(payload: Buffer, what: string): string {
  if (!isUtf8(payload)) throw new FrameError(`${what}: not valid UTF-8`);
  return payload.toString('utf8');
}

/** The bytes of a data frame (types 0x01 to 0x04) as the format and body decodeDevicePayload reads; throws FrameError with the reason. */
export function dataFramePayload(frame: Frame): DataFramePayload {
  const { type, payload } = frame;
  if (payload.length === 0) throw new FrameError(`${frameTypeName(type)} frame: empty payload`);
  switch (type) {
    case FrameType.BINARY: {
      let wire: string;
      try {
        wire = detectSenmlFormat(payload);
      } catch {
        wire = '';
      }
      if (wire !== 'cbor') throw new FrameError('BINARY frame: expected SenML CBOR (RFC 8428 section 6), a CBOR array');
      return { format: 'senml', body: payload };
    }
    case FrameType.ASCII: {
      for (let i = 0; i < payload.length; i++) {
        if (payload[i] > 0x7f) throw new FrameError(`ASCII frame: byte 0x${payload[i].toString(16)} at offset ${i} is not 7-bit ASCII`);
      }
      return { format: 'ultralight', body: payload.toString('latin1') };
    }
    case FrameType.UTF8:
      return { format: 'ultralight', body: utf8Payload(payload, 'UTF8 frame') };
    case FrameType.JSON: {
      const value = parseJson(payload, 'JSON frame');
      if (Array.isArray(value)) return { format: 'senml', body: value };
      if (value !== null && typeof value === 'object') return { format: 'attributes', body: value };
      throw new FrameError(`JSON frame: expected a SenML array or an object of attribute values, got ${value === null ? 'null' : typeof value}`);
    }
    default:
      throw new FrameError(`${frameTypeName(type)} is not a data frame`);
  }
}

/** UTF-8 JSON; throws FrameError naming what failed. */
export function parseJson(payload: Buffer, what: string): unknown {
  const text = utf8Payload(payload, what);
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    throw new FrameError(`${what}: invalid JSON: ${(err as Error).message}`);
  }
}

/** A JSON object with a string or number "id" (COMMAND, COMMAND_RESULT, REQUEST, RESPONSE). */
export function parseCorrelated(payload: Buffer, what: string): Record<string, unknown> & { id: string } {
  const value = parseJson(payload, what);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FrameError(`${what}: expected a JSON object`);
  const id = (value as { id?: unknown }).id;
  if (!((typeof id === 'string' && id !== '') || (typeof id === 'number' && Number.isFinite(id)))) {
    throw new FrameError(`${what}: field "id" (the correlation id) must be a non-empty string or a number`);
  }
  return { ...(value as Record<string, unknown>), id: String(id) };
}

/** ACK payload: the accepted frame's number, 4 bytes big-endian. */
export function encodeAck(id: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(id >>> 0, 0);
  return out;
}

export function decodeAck(payload: Buffer): number {
  if (payload.length !== 4) throw new FrameError(`ACK frame: expected a 4-byte id, got ${payload.length} bytes`);
  return payload.readUInt32BE(0);
}

/** ERROR payload: 4-byte number of the frame refused (0: none), then the reason in UTF-8. */
export function encodeError(id: number, reason: string): Buffer {
  const text = Buffer.from(reason, 'utf8');
  const out = Buffer.alloc(4 + text.length);
  out.writeUInt32BE(id >>> 0, 0);
  text.copy(out, 4);
  return out;
}

export function decodeError(payload: Buffer): { id: number; reason: string } {
  if (payload.length < 4) return { id: 0, reason: payload.toString('utf8') };
  return { id: payload.readUInt32BE(0), reason: payload.subarray(4).toString('utf8') };
}

/** TOKEN request payload: how many tokens, one byte 1..100 (an empty payload asks for one). */
export function encodeTokenRequest(count: number): Buffer {
  if (!Number.isInteger(count) || count < 1 || count > MAX_TOKENS_PER_REQUEST) {
    throw new RangeError(`a TOKEN request asks for 1 to ${MAX_TOKENS_PER_REQUEST} tokens, got ${count}`);
  }
  return Buffer.from([count]);
}

export function decodeTokenRequest(payload: Buffer): number {
  if (payload.length === 0) return 1;
  if (payload.length !== 1) throw new FrameError(`TOKEN request: expected 1 byte (how many tokens), got ${payload.length}`);
  const count = payload[0];
  if (count < 1 || count > MAX_TOKENS_PER_REQUEST) throw new FrameError(`TOKEN request: ask for 1 to ${MAX_TOKENS_PER_REQUEST} tokens, not ${count}`);
  return count;
}

export interface TokenGrant {
  /** The number of the TOKEN request answered. */
  id: number;
  /** Milliseconds the tokens stay valid, from when the grant was sent. */
  ttlMs: number;
  tokens: Buffer[];
}

/** TOKEN grant payload: request number (4 bytes), lifetime in ms (4 bytes), then the 16-byte tokens. */
export function encodeTokenGrant(grant: TokenGrant): Buffer {
  const out = Buffer.alloc(8 + grant.tokens.length * TOKEN_GRANT_BYTES);
  out.writeUInt32BE(grant.id >>> 0, 0);
  out.writeUInt32BE(Math.max(0, Math.min(0xffffffff, Math.floor(grant.ttlMs))), 4);
  grant.tokens.forEach((t, i) => {
    if (t.length !== TOKEN_GRANT_BYTES) throw new RangeError(`a UDP token has ${TOKEN_GRANT_BYTES} bytes, got ${t.length}`);
    t.copy(out, 8 + i * TOKEN_GRANT_BYTES);
  });
  return out;
}

export function decodeTokenGrant(payload: Buffer): TokenGrant {
  if (payload.length < 8 || (payload.length - 8) % TOKEN_GRANT_BYTES !== 0) {
    throw new FrameError(`TOKEN grant: expected 8 bytes and 16 per token, got ${payload.length} bytes`);
  }
  const tokens: Buffer[] = [];
  for (let at = 8; at < payload.length; at += TOKEN_GRANT_BYTES) tokens.push(Buffer.from(payload.subarray(at, at + TOKEN_GRANT_BYTES)));
  return { id: payload.readUInt32BE(0), ttlMs: payload.readUInt32BE(4), tokens };
}
