/**
 * What the three SenML codecs (JSON, XML, CBOR) share: UTF-8 and base64url helpers, and telling
 * the formats apart.
 */
import { CodecError } from '../errors';

export type SenmlWireFormat = 'json' | 'xml' | 'cbor';

/** Decodes UTF-8 bytes without copying them (a Buffer view over the same memory). */
export function utf8Text(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

export function bytesToBase64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * base64url (RFC 4648 section 5, no padding) to bytes, for text checkResolved or resolve accepted.
 * Stray low bits in the last character are dropped, as RFC 4648 section 3.5 allows decoders to.
 */
export function base64urlToBytes(text: string): Uint8Array {
  return Buffer.from(text, 'base64url');
}

/** JSON's whitespace plus a UTF-8 byte order mark, which some senders put in front. */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0xfeff;
}

function fromChar(c: number): SenmlWireFormat | undefined {
  return c === 0x5b /* [ */ ? 'json' : c === 0x3c /* < */ ? 'xml' : undefined;
}

/**
 * Tells SenML JSON, XML and CBOR apart from their first significant byte: '[' is JSON, '<' is XML,
 * a CBOR array head (major type 4, 0x80-0x9f, or the self-describe tag d9 d9 f7) is CBOR. A CBOR
 * array head is never whitespace, '[' or '<', so bytes are checked for CBOR first.
 */
export function detectSenmlFormat(input: unknown): SenmlWireFormat {
  if (Array.isArray(input)) return 'json';
  if (typeof input === 'string') {
    let i = 0;
    while (i < input.length && isSpace(input.charCodeAt(i))) i++;
    const format = fromChar(input.charCodeAt(i));
    if (format) return format;
  } else if (input instanceof Uint8Array) {
    const b0 = input[0];
    if ((b0 >= 0x80 && b0 <= 0x9f) || (b0 === 0xd9 && input[1] === 0xd9 && input[2] === 0xf7)) return 'cbor';
    let i = input[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf ? 3 : 0; // UTF-8 BOM
    while (i < input.length && isSpace(input[i])) i++;
    const format = fromChar(input[i]);
    if (format) return format;
  }
  throw new CodecError('senml', 'cannot tell the SenML format: expected JSON (starting with "["), XML (starting with "<") or a CBOR array');
}
