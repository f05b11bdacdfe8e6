/**
 * What travels in the message stanzas between proxies, framework-free (docs/xmpp.md):
 *
 *   <message to="peer@domain" id="<message id>" type="normal">
 *     <body>Sen1Message or SenML XML document, as text</body>
 *     <request xmlns="urn:xmpp:receipts"/>                          XEP-0184
 *   </message>
 *
 * The document travels as the body's text, as seed 003's proxies send it (a message body in
 * XML). On receipt a Sen1Message (http://xmpp.rocks) or sensml (urn:ietf:params:xml:ns:senml)
 * child element of the message is accepted as well. The stanza id is the message id: the
 * receiving proxy drops a repeat of an id it has already stored from the same sender.
 */
import { createHash } from 'node:crypto';
import { CodecError } from '../errors';
import { decodeSen1, encodeSen1, formatSen1, SEN1_NAMESPACE, type Sen1Message, type Sen1Meta, type Sen1EncodeMeta } from '../codecs/sen1';
import { decodeSenmlXml, encodeSenmlXml, SENML_XML_NAMESPACE } from '../codecs/senml-xml';
import type { ResolvedRecord } from '../model/senml';
import type { XmlBuilder, XmlElement } from './client';
import { bareJid } from './connection';

export const NS_RECEIPTS = 'urn:xmpp:receipts';
export type WireFormat = 'sen1' | 'senml-xml';

/** One stanza to send, as the outbox keeps it. */
export interface OutgoingStanza {
  /** The peer's bare JID. */
  peer: string;
  /** The stanza id: the message id. */
  id: string;
  format: WireFormat;
  /** The XML document, the body's text. */
  body: string;
}

/** Sen1Message header fields of msg.sen1 (contract with the federation). */
export type Sen1Header = Partial<Omit<Sen1Message, 'datas'>>;

const nonEmpty = (x: unknown): string | undefined => (typeof x === 'string' && x !== '' ? x : undefined);

function isSen1Message(x: unknown): x is Sen1Message {
  return x !== null && typeof x === 'object' && !Array.isArray(x) && Array.isArray((x as { datas?: unknown }).datas);
}

/** A JID one can send to (user@domain, no resource needed); throws a CodecError otherwise. */
export function checkPeer(jid: unknown): string {
  if (typeof jid !== 'string' || !/^[^@/\s]+@[^@/\s]+(\/.*)?$/.test(jid))
    throw new CodecError('xmpp', `not a peer JID (user@domain): ${String(jid)}`, undefined, 'to');
  return bareJid(jid);
}

/** The id of a message without msg.messageId: the same peer and body always get the same one. */
export function derivedId(peer: string, body: string): string {
  return `sha256:${createHash('sha256').update(peer).update('\n').update(body).digest('base64url').slice(0, 32)}`;
}

/**
 * The documents of one flow message: a Sen1 object is sent as it is; records become Sen1
 * documents (one per name, value kind and unit: recordsToSen1) or one SenML XML document. Each
 * gets the message id, suffixed with :n when the records make several documents.
 */
export function outgoing(
  payload: unknown,
  options: { peer: string; format: WireFormat; messageId?: string; sen1?: Sen1Header; username?: string },
): OutgoingStanza[] {
  let bodies: string[];
  let format = options.format;
  if (isSen1Message(payload)) {
    bodies = [formatSen1({ ...payload, ...(options.sen1 ?? {}), datas: payload.datas } as Sen1Message)];
    format = 'sen1';
  } else if (Array.isArray(payload)) {
    const records = payload as ResolvedRecord[];
    if (format === 'senml-xml') bodies = [encodeSenmlXml(records)];
    else {
      const h = options.sen1 ?? {};
      const username = nonEmpty(h.username) ?? nonEmpty(options.username);
      if (!username) throw new CodecError('sen1', "no username: set msg.sen1.username or the node's Username", undefined, 'username');
      const meta: Sen1EncodeMeta = {
        username,
        applicationSrc: nonEmpty(h.applicationSrc),
        applicationDst: nonEmpty(h.applicationDst),
        metaname: nonEmpty(h.metaname),
        metavalue: nonEmpty(h.metavalue),
        type: h.type,
      };
      bodies = encodeSen1(records, meta);
    }
  } else throw new CodecError('xmpp', 'msg.payload must be canonical records (an array) or a Sen1Message object (with datas)');
  const base = options.messageId;
  return bodies.map((body, i) => ({
    peer: options.peer,
    format,
    body,
    id: base === undefined ? derivedId(options.peer, body) : bodies.length > 1 ? `${base}:${i}` : base,
  }));
}

export function messageStanza(xml: XmlBuilder, s: OutgoingStanza): XmlElement {
  return xml('message', { to: s.peer, id: s.id, type: 'normal' }, xml('body', {}, s.body), xml('request', { xmlns: NS_RECEIPTS }));
}

export function receiptStanza(xml: XmlBuilder, to: string, id: string): XmlElement {
  return xml('message', { to, id: `r-${id}`.slice(0, 200) }, xml('received', { xmlns: NS_RECEIPTS, id }));
}

export type Incoming =
  /** A proxy's message: the document, and whether the sender asked for a receipt. */
  | { kind: 'message'; id: string; from: string; to: string; body: string; receipt: boolean }
  /** A peer's receipt for one of our stanza ids. */
  | { kind: 'receipt'; id: string; from: string }
  | { kind: 'other' };

/** Classifies a received stanza. Messages without id or without a document are 'other'. */
export function classify(stanza: XmlElement): Incoming {
  if (stanza.name !== 'message' || stanza.attrs.type === 'error' || stanza.attrs.type === 'groupchat') return { kind: 'other' };
  const from = stanza.attrs.from ?? '';
  const received = stanza.getChild('received', NS_RECEIPTS);
  if (received?.attrs.id) return { kind: 'receipt', id: received.attrs.id, from };
  const id = stanza.attrs.id;
  if (!id || !from) return { kind: 'other' };
  let body = stanza.getChildText('body');
  if (!body) {
    const child = stanza.getChild('Sen1Message', SEN1_NAMESPACE) ?? stanza.getChild('sensml', SENML_XML_NAMESPACE);
    if (child) body = child.toString();
  }
  if (!body) return { kind: 'other' };
  return { kind: 'message', id, from, to: stanza.attrs.to ?? '', body, receipt: stanza.getChild('request', NS_RECEIPTS) !== undefined };
}

/** The records of a received document, its format and (Sen1) its header fields. */
export function decodeBody(body: string): { records: ResolvedRecord[]; format: WireFormat; sen1?: Sen1Meta } {
  if (/^\s*(<\?xml[^>]*>\s*)?<sensml[\s>]/.test(body)) return { records: decodeSenmlXml(body), format: 'senml-xml' };
  const { records, meta } = decodeSen1(body);
  return { records, format: 'sen1', sen1: meta };
}
