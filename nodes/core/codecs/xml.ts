/**
 * The one XML entry point for every codec: fast-xml-parser with validation on, values kept as
 * text (each codec types them), and no DTD at all, so neither external entities (XXE) nor entity
 * expansion bombs can reach the parser.
 */
import { XMLParser } from 'fast-xml-parser';
import { CodecError } from '../errors';

/** Bodies larger than this are refused before parsing; endpoints bound them earlier still. */
export const MAX_XML_BYTES = 4 * 1024 * 1024;

export type XmlNode = Record<string, unknown>;

export interface XmlOptions {
  /** element names that always parse as arrays, even with one occurrence */
  arrays?: readonly string[];
}

const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const REFERENCE_RE = /&(#x[0-9A-Fa-f]+|#[0-9]+|[A-Za-z_][\w.-]*);|&/g;

function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/**
 * XML's own references only: the five predefined entities and character references. One shared
 * decoder, because fast-xml-parser's default builds an entity table on every parse, and anything
 * else (an undeclared entity, a bare '&', a reference to a character XML forbids) is malformed.
 */
const xmlEntities = {
  reset(): void {},
  setXmlVersion(): void {},
  addInputEntities(): void {},
  setExternalEntities(): void {},
  decode(text: string): string {
    if (!text.includes('&')) return text;
    return text.replace(REFERENCE_RE, (whole: string, ref: string | undefined) => {
      if (ref === undefined) throw new Error("a bare '&' (write &amp;)");
      if (ref.charCodeAt(0) !== 35 /* # */) {
        const value = PREDEFINED[ref];
        if (value === undefined) throw new Error(`undeclared entity ${whole}`);
        return value;
      }
      const cp = ref.charCodeAt(1) === 120 /* x */ ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      if (!isXmlChar(cp)) throw new Error(`${whole} is not a character XML allows`);
      return String.fromCodePoint(cp);
    });
  },
};

const parsers = new Map<string, XMLParser>();

/** The parser parseXml uses for these options (benchmarks measure against the bare parser with them). */
export function parserFor(options: XmlOptions): XMLParser {
  const key = (options.arrays ?? []).join(',');
  let parser = parsers.get(key);
  if (!parser) {
    const arrays = new Set(options.arrays ?? []);
    parser = new XMLParser({
      ignoreAttributes: false,
      attributeNamePrefix: '',
      removeNSPrefix: false,
      parseTagValue: false,
      parseAttributeValue: false,
      processEntities: true,
      entityDecoder: xmlEntities,
      trimValues: true,
      isArray: (name: string) => arrays.has(name),
    });
    parsers.set(key, parser);
  }
  return parser;
}

/** Parses XML text or UTF-8 bytes into plain objects; throws CodecError for anything unsafe or malformed. */
export function parseXml(input: string | Uint8Array, format: string, options: XmlOptions = {}): XmlNode {
  const text = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');
  if (text.length > MAX_XML_BYTES) throw new CodecError(format, `XML larger than ${MAX_XML_BYTES} bytes`);
  if (text.includes('<!DOCTYPE') || text.includes('<!ENTITY')) {
    throw new CodecError(format, 'XML with a DOCTYPE or ENTITY declaration is refused (no DTDs, so no external entities or entity expansion)');
  }
  let doc: unknown;
  try {
    doc = parserFor(options).parse(text, true);
  } catch (err) {
    throw new CodecError(format, `malformed XML: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object') throw new CodecError(format, 'malformed XML');
  return doc as XmlNode;
}

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Escapes text for an XML element body or a double-quoted attribute. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => XML_ESCAPES[c]);
}
