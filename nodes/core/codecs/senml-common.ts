/**
 * What the three SenML codecs (JSON, XML, CBOR) share: UTF-8 and base64url helpers, the extra
 * checks encoders make on top of validateResolved, and telling the formats apart.
 */
import { CodecError } from '../errors';
import { SENML_VERSION, validateResolved, type ResolvedRecord } from '../model/senml';

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

/**
 * Everything an encoder needs beyond validateResolved: s, ut finite; vd of a possible length; bver, when present, the same
 * integer below 10 in every record (RFC 8428 section 4.6: present in all or in none).
 */
export function checkResolved(records: unknown, format: string): ResolvedRecord[] {
  const list = validateResolved(records, format);
  const version = list.length > 0 ? list[0].bver : undefined;
  for (let i = 0; i < list.length; i++) {
    const r = list[i];
    if (r.s !== undefined && (typeof r.s !== 'number' || !Number.isFinite(r.s))) throw new CodecError(format, 'expected a finite number', i, 's');
    if (r.ut !== undefined && (typeof r.ut !== 'number' || !Number.isFinite(r.ut))) throw new CodecError(format, 'expected a finite number', i, 'ut');
    if (r.vd !== undefined && r.vd.length % 4 === 1) throw new CodecError(format, 'expected base64url data without padding', i, 'vd');
    if (r.bver !== version) throw new CodecError(format, 'bver must be in every resolved record with the same value, or in none', i, 'bver');
    if (version !== undefined && (!Number.isInteger(version) || version < 0 || version >= SENML_VERSION)) {
      throw new CodecError(format, `expected an integer from 0 to ${SENML_VERSION - 1} (version ${SENML_VERSION} is never written)`, i, 'bver');
    }
  }
  return list;
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
