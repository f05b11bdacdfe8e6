/**
 * SenML XML (RFC 8428 section 7, application/senml+xml): a sensml root in the SenML namespace
 * holding senml elements whose attributes are the fields. Attributes arrive as text; they are
 * typed here by Table 5 (xsd:double, xsd:int, xsd:boolean, xsd:string) before resolve.
 */
import { CodecError } from '../errors';
import { resolve, validateResolved, type ResolvedRecord, type ResolveOptions, type SenMLRecord } from '../model/senml';
import { utf8Text } from './senml-common';
import { escapeXml, parseXml, type XmlNode } from './xml';

const FORMAT = 'senml-xml';
export const SENML_XML_NAMESPACE = 'urn:ietf:params:xml:ns:senml';

type XmlType = 'string' | 'double' | 'int' | 'boolean';
// A Map, not an object literal: attribute names such as "constructor" must not find anything.
const TYPES = new Map<string, XmlType>([
  ['bn', 'string'],
  ['bt', 'double'],
  ['bu', 'string'],
  ['bv', 'double'],
  ['bs', 'double'],
  ['bver', 'int'],
  ['n', 'string'],
  ['u', 'string'],
  ['v', 'double'],
  ['vs', 'string'],
  ['vd', 'string'],
  ['vb', 'boolean'],
  ['s', 'double'],
  ['t', 'double'],
  ['ut', 'double'],
]);

// xsd:double's lexical form without INF and NaN (SenML numbers are finite); Number() alone would
// also take '', '0x1f' and 'Infinity'.
const DOUBLE_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const INT_RE = /^[+-]?\d+$/;

function fail(reason: string, index?: number, field?: string): never {
  throw new CodecError(FORMAT, reason, index, field);
}

function typed(text: string, type: XmlType, index: number, field: string): string | number | boolean {
  switch (type) {
    case 'string':
      return text;
    case 'double': {
      if (!DOUBLE_RE.test(text)) fail(`"${text}" is not a finite xsd:double`, index, field);
      const x = Number(text);
      if (!Number.isFinite(x)) fail(`"${text}" is out of the range of a double`, index, field);
      return x;
    }
    case 'int': {
      const x = Number(text);
      if (!INT_RE.test(text) || x < -(2 ** 31) || x >= 2 ** 31) fail(`"${text}" is not an xsd:int`, index, field);
      return x;
    }
    case 'boolean':
      if (text === 'true' || text === '1') return true;
      if (text === 'false' || text === '0') return false;
      return fail(`"${text}" is not an xsd:boolean (true, false, 1 or 0)`, index, field);
  }
}

/**
 * The parser merges attributes and text-only child elements into one object, so child elements
 * are found here, in the text: every start tag must be the root or a record. Comments and CDATA
 * are cut out first; anywhere else '<' can only open markup.
 */
function checkElementNames(text: string, root: string, record: string): void {
  const markup = text.includes('<!') ? text.replace(/<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>/g, '') : text;
  const tag = /<([^\s/>!?]+)/g;
  for (let m = tag.exec(markup); m !== null; m = tag.exec(markup)) {
    if (m[1] !== root && m[1] !== record) fail(`unexpected element <${m[1]}>: a ${root} holds only ${record} elements, and those hold only attributes`);
  }
}

function findRoot(doc: XmlNode): { name: string; prefix: string; node: XmlNode } {
  const names = Object.keys(doc).filter((k) => !k.startsWith('?'));
  if (names.length !== 1) fail('expected exactly one root element');
  const name = names[0];
  const colon = name.indexOf(':');
  const prefix = colon < 0 ? '' : name.slice(0, colon + 1);
  if (name.slice(colon + 1) !== 'sensml') fail(`the root element must be <sensml>, not <${name}>`);
  const node = doc[name];
  if (Array.isArray(node)) fail('expected exactly one root element');
  if (node === null || typeof node !== 'object') fail(`<${name}> must declare xmlns="${SENML_XML_NAMESPACE}" and hold senml elements`);
  const ns = (node as XmlNode)[prefix === '' ? 'xmlns' : `xmlns:${prefix.slice(0, -1)}`];
  if (ns !== SENML_XML_NAMESPACE) fail(`<${name}> must be in the namespace ${SENML_XML_NAMESPACE}, not ${ns === undefined ? 'none' : `"${String(ns)}"`}`);
  return { name, prefix, node: node as XmlNode };
}

/** One senml element's attributes to a SenML record, typed by Table 5. */
function toRecord(element: unknown, index: number): SenMLRecord {
  if (element === '') return {}; // <senml/> with no attributes; resolve says what is missing
  if (element === null || typeof element !== 'object' || Array.isArray(element)) fail('a senml element holds only attributes', index);
  const rec: SenMLRecord = {};
  const attrs = element as XmlNode;
  for (const key in attrs) {
    const value = attrs[key];
    if (typeof value !== 'string') fail('a senml element holds only attributes', index, key);
    const type = TYPES.get(key);
    if (type !== undefined) rec[key] = typed(value, type, index, key);
    else if (key === '#text') fail('a senml element holds no text', index);
    else if (key === 'xmlns') {
      if (value !== SENML_XML_NAMESPACE) fail(`a senml element must be in the namespace ${SENML_XML_NAMESPACE}`, index, key);
    }
    // Unknown labels are ignored (RFC 8428 section 4.4) but those ending in '_' must be understood;
    // qualified names (a:b, xmlns:a) belong to other vocabularies.
    else if (key.endsWith('_') && !key.includes(':')) throw new CodecError('senml', 'unknown field that must be understood', index, key);
  }
  return rec;
}

/** Decodes SenML XML text or UTF-8 bytes into resolved records. */
export function decodeSenmlXml(input: string | Uint8Array, options: ResolveOptions = {}): ResolvedRecord[] {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) fail('expected SenML XML text or UTF-8 bytes');
  const text = typeof input === 'string' ? input : utf8Text(input);
  const doc = parseXml(text, FORMAT, { arrays: ['senml'] });
  const root = findRoot(doc);
  const recordName = `${root.prefix}senml`;
  checkElementNames(text, root.name, recordName);
  for (const key in root.node) {
    if (key === '#text') fail(`<${root.name}> holds no text, only senml elements`);
  }
  const found = root.node[recordName];
  if (found === undefined) fail(`<${root.name}> must hold at least one senml element`);
  const elements = Array.isArray(found) ? found : [found]; // 'arrays' knows only the unprefixed name
  const pack: SenMLRecord[] = new Array(elements.length);
  for (let i = 0; i < elements.length; i++) pack[i] = toRecord(elements[i], i);
  return resolve(pack, options);
}

// Characters XML 1.0 cannot carry at all, not even as character references.
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const charRef = (c: string): string => `&#x${c.charCodeAt(0).toString(16)};`;

/**
 * An attribute value that reads back exactly: XML parsers normalise tab, CR and LF in attributes
 * to spaces and ours trims values, so those and any edge whitespace go as character references.
 */
function attr(name: string, text: string, index: number): string {
  if (NOT_XML.test(text)) throw new CodecError(FORMAT, 'holds a character XML 1.0 cannot represent', index, name);
  let out = escapeXml(text).replace(/[\t\n\r]/g, charRef);
  if (/^\s|\s$/.test(out)) out = out.replace(/^\s+|\s+$/g, (ws) => ws.replace(/\s/g, charRef));
  return ` ${name}="${out}"`;
}

/** Encodes resolved records as SenML XML, fields in the same fixed order as the JSON encoder. */
export function encodeSenmlXml(records: ResolvedRecord[]): string {
  const list = validateResolved(records, FORMAT);
  let out = `<sensml xmlns="${SENML_XML_NAMESPACE}">`;
  for (let i = 0; i < list.length; i++) {
    const r = list[i];
    out += '<senml' + attr('n', r.n, i);
    if (r.u !== undefined) out += attr('u', r.u, i);
    out += ` t="${r.t}"`; // String(number) is the shortest text that reads back as the same double
    if (r.v !== undefined) out += ` v="${r.v}"`;
    else if (r.vs !== undefined) out += attr('vs', r.vs, i);
    else if (r.vb !== undefined) out += ` vb="${r.vb}"`;
    else if (r.vd !== undefined) out += ` vd="${r.vd}"`;
    if (r.s !== undefined) out += ` s="${r.s}"`;
    if (r.ut !== undefined) out += ` ut="${r.ut}"`;
    if (r.bver !== undefined) out += ` bver="${r.bver}"`;
    out += '/>';
  }
  return out + '</sensml>';
}
