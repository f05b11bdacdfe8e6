/**
 * Routing by consumers (seed 003): a datum extracted from the local system goes, as one message
 * per consumer that wants it, to the consumer's target application, under the target's object
 * ids. Pure; the Push Outbox (push.ts) feeds it, conflux-xmpp-out sends what it returns.
 *
 *   datum     one value of the local system: {id, object, name, value, unit?, time}
 *   selector  a consumer's `source`: {objects?: [...], names?: [...]}; an absent or empty list
 *             takes every object (name)
 *   mapping   a consumer's `mapping`: {<source object id>: <target object id>}; an unmapped
 *             object keeps its id
 *
 * The record name in the federation is `<object>/<name>`, the object as the target knows it. The
 * message id is derived from the tenant, the consumer and the datum's id only, so the same datum
 * extracted again (a crash before the watermark was committed) is the same message, and a
 * receiving proxy drops it as a duplicate.
 */
import { createHash } from 'node:crypto';
import { isValidName, type ResolvedRecord } from '../model/senml';
import type { Sen1Type } from '../codecs/sen1';

export interface Datum {
  /** The local system's id of this value: what makes it the same datum when taken again. */
  id: string;
  object: string;
  name: string;
  value: number | string | boolean;
  unit?: string;
  /** Seconds since the epoch. */
  t: number;
}

export interface Selector {
  objects?: string[];
  names?: string[];
}

/** Source object id → target object id. */
export type Mapping = Record<string, string>;

/** What routing needs of a consumer (directory.ts reads it from the business store). */
export interface RouteConsumer {
  id: number | string;
  source: Selector;
  mapping: Mapping | null;
  /** The user's federation-wide id: Sen1Message/username. */
  username: string;
  /** The local application's name: applicationSrc. */
  applicationSrc: string;
  /** The target App: its name (applicationDst) and JID (where the message goes). */
  applicationDst: string;
  jid: string;
}

/** The header fields of the msg contract with conflux-xmpp-out (Sen1Message without its values). */
export interface Sen1Header {
  username: string;
  name: string;
  metaname?: string;
  metavalue?: string;
  unite?: string;
  type: Sen1Type;
  applicationSrc?: string;
  applicationDst?: string;
}

/** One message for conflux-xmpp-out: msg.payload, msg.to, msg.messageId, msg.sen1. */
export interface FederationMessage {
  payload: ResolvedRecord[];
  to: string;
  messageId: string;
  sen1: Sen1Header;
  /** Which consumer and datum it came from (for the flow and the logs). */
  federation: { consumer: number | string; datum: string };
}

/** A reading that is no datum: skipped (the watermark moves past it, so it cannot block the rest). */
export class DatumError extends Error {
  override readonly name = 'DatumError';
}

/** A consumer whose mapping gives a name SenML cannot carry: its run stops until the mapping is fixed. */
export class MappingError extends Error {
  override readonly name = 'MappingError';
}

const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined);

/** An item of the local system's readings API as a datum; DatumError says what is missing. */
export function parseDatum(item: unknown): Datum {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new DatumError('a reading must be an object');
  const r = item as Record<string, unknown>;
  const id = text(r.id);
  const object = text(r.object);
  const name = text(r.name);
  if (id === undefined) throw new DatumError('a reading needs an id');
  if (object === undefined || name === undefined) throw new DatumError(`reading ${id}: object and name are required`);
  const value = r.value;
  if (!(typeof value === 'number' && Number.isFinite(value)) && typeof value !== 'string' && typeof value !== 'boolean')
    throw new DatumError(`reading ${id}: value must be a number, a string or a boolean`);
  const t = typeof r.time === 'number' ? r.time : typeof r.time === 'string' ? Date.parse(r.time) / 1000 : NaN;
  if (!Number.isFinite(t)) throw new DatumError(`reading ${id}: time must be ISO 8601 or seconds since the epoch`);
  const unit = text(r.unit);
  return { id, object, name, value, t, ...(unit ? { unit } : {}) };
}

const listOf = (v: unknown): string[] | undefined =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : undefined;

/** A consumer's stored `source` as a selector (unknown fields ignored). */
export function parseSelector(source: unknown): Selector {
  const s = source !== null && typeof source === 'object' ? (source as Record<string, unknown>) : {};
  const objects = listOf(s.objects ?? s.object);
  const names = listOf(s.names ?? s.name);
  return { ...(objects?.length ? { objects } : {}), ...(names?.length ? { names } : {}) };
}

/** A stored `mapping` (an object of strings); anything else is no mapping. */
export function parseMapping(mapping: unknown): Mapping | null {
  if (mapping === null || typeof mapping !== 'object' || Array.isArray(mapping)) return null;
  const out: Mapping = {};
  for (const [k, v] of Object.entries(mapping as Record<string, unknown>)) if (typeof v === 'string' && v !== '') out[k] = v;
  return Object.keys(out).length > 0 ? out : null;
}

export function wants(selector: Selector, datum: Datum): boolean {
  if (selector.objects && !selector.objects.includes(datum.object)) return false;
  if (selector.names && !selector.names.includes(datum.name)) return false;
  return true;
}

/** The object id on the other side of a mapping (the id itself when unmapped). */
export const mapObject = (mapping: Mapping | null, object: string): string => (mapping && Object.hasOwn(mapping, object) ? mapping[object] : object);

/** The mapping turned round: target id → source id (the first source wins when two share a target). */
export function invertMapping(mapping: Mapping | null): Mapping | null {
  if (!mapping) return null;
  const out: Mapping = {};
  for (const [from, to] of Object.entries(mapping)) if (!Object.hasOwn(out, to)) out[to] = from;
  return out;
}

/** The stable message id of a datum sent to a consumer. */
export function messageIdOf(tenant: string, consumer: number | string, datumId: string): string {
  const h = createHash('sha256')
    .update(JSON.stringify([tenant, String(consumer), datumId]))
    .digest('base64url');
  return `fed-${h.slice(0, 32)}`;
}

function record(name: string, datum: Datum): ResolvedRecord {
  const r: ResolvedRecord = { n: name, t: datum.t };
  if (typeof datum.value === 'number') r.v = datum.value;
  else if (typeof datum.value === 'boolean') r.vb = datum.value;
  else r.vs = datum.value;
  if (datum.unit !== undefined) r.u = datum.unit;
  return r;
}

const typeOf = (value: Datum['value']): Sen1Type =>
  typeof value === 'boolean' ? 'dt_boolean' : typeof value === 'number' ? (Number.isInteger(value) ? 'dt_integer' : 'dt_numeric') : 'dt_string';

/**
 * The messages for one datum: one per consumer that wants it, in the consumers' order. A mapped
 * name that SenML cannot carry (a space, a leading dash) throws MappingError: the mapping is
 * wrong, and sending under another name would deliver to the wrong object. A datum whose own
 * object or name is such a name (unmapped) throws DatumError.
 */
export function route(tenant: string, datum: Datum, consumers: readonly RouteConsumer[]): FederationMessage[] {
  const out: FederationMessage[] = [];
  for (const c of consumers) {
    if (!wants(c.source, datum)) continue;
    const name = `${mapObject(c.mapping, datum.object)}/${datum.name}`;
    if (!isValidName(name)) {
      const why = `consumer ${String(c.id)}: the name ${JSON.stringify(name)} is not a valid SenML name`;
      throw mapObject(c.mapping, datum.object) === datum.object ? new DatumError(why) : new MappingError(why);
    }
    const sen1: Sen1Header = { username: c.username, name, type: typeOf(datum.value), applicationSrc: c.applicationSrc, applicationDst: c.applicationDst };
    if (datum.unit !== undefined) sen1.unite = datum.unit;
    out.push({
      payload: [record(name, datum)],
      to: c.jid,
      messageId: messageIdOf(tenant, c.id, datum.id),
      sen1,
      federation: { consumer: c.id, datum: datum.id },
    });
  }
  return out;
}

/** An incoming record's name split into the object and the datum name (the last `/` divides them). */
export function splitName(name: string): { object: string; name: string } {
  const i = name.lastIndexOf('/');
  return i <= 0 || i === name.length - 1 ? { object: name, name: '' } : { object: name.slice(0, i), name: name.slice(i + 1) };
}
