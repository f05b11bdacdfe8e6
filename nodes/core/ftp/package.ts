/**
 * What one delivery puts on a target: the message's files named by the target's rules, either one
 * by one (plus the metadata JSON beside them) or zipped together with the metadata JSON.
 *
 * Names and bytes are fixed here, once, when the delivery is stored in the outbox: a retry sends
 * the same bytes under the same names. The zip is deterministic anyway (fflate, every entry with
 * the delivery's date as its time, entries in the message's order), so the same message zipped
 * twice gives the same bytes. Framework-free.
 */
import { createHash } from 'node:crypto';
import { zipSync, type Zippable } from 'fflate';
import { NamingError, renderName, safeRelative } from './naming';

export interface InputFile {
  /** The file's own name (its extension gives {ext}); optional. */
  name?: string;
  data: Buffer | Uint8Array | string;
}

export interface NamingRules {
  /** Each file's name, e.g. {vin}_{nn:02}.{ext}. */
  naming: string;
  /** The zip's name, e.g. {vin}.zip; empty: no zip. */
  archive?: string | null;
  /** The metadata JSON's name, e.g. {vin}.json; empty: no metadata file. */
  metadata?: string | null;
}

export interface DeliveryInput {
  files: readonly InputFile[];
  /** Written as the metadata JSON (when the rules name one). */
  metadata?: Record<string, unknown>;
  /** A message field by name (dots for nested ones). */
  field(name: string): unknown;
  /** The delivery's date: {date}, {time} and the zip entries' time. */
  date: Date;
}

export interface RemoteFile {
  /** Relative to the target's folder, checked (nodes/core/ftp/naming.ts). */
  name: string;
  data: Buffer;
}

/** Most files in one delivery, and most bytes in all. */
export const MAX_FILES = 1_000;

const bytes = (data: InputFile['data']): Buffer => (typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.isBuffer(data) ? data : Buffer.from(data));

function extOf(name: string | undefined): string {
  const m = name ? /\.([A-Za-z0-9]{1,10})$/.exec(name) : null;
  return m ? m[1].toLowerCase() : 'bin';
}

function context(input: DeliveryInput, file?: { index: number; name?: string }) {
  return (field: string): unknown => {
    if (field === 'date') return input.date;
    if (field === 'time') return input.date;
    if (file) {
      if (field === 'n' || field === 'nn') return file.index + 1;
      if (field === 'ext') return extOf(file.name);
      if (field === 'name') return file.name;
      if (field === 'base') return file.name?.replace(/\.[^.]*$/, '');
    }
    return input.field(field);
  };
}

/** renderName, with {date} and {time} defaulting to YYYY-MM-DD and HHmmss. */
function render(rule: string, ctx: (f: string) => unknown): string {
  const withDefaults = rule.replace(/\{date\}/g, '{date:YYYY-MM-DD}').replace(/\{time\}/g, '{time:HHmmss}');
  return safeRelative(renderName(withDefaults, ctx));
}

/** The files to upload for one delivery, named by the rules; throws NamingError with the reason. */
export function buildDelivery(input: DeliveryInput, rules: NamingRules, maxBytes: number): RemoteFile[] {
  if (input.files.length === 0 && !rules.metadata) throw new NamingError('nothing to deliver: no files (msg.files or msg.payload)');
  if (input.files.length > MAX_FILES) throw new NamingError(`too many files in one delivery (${input.files.length} > ${MAX_FILES})`);
  const named: RemoteFile[] = input.files.map((f, index) => ({ name: render(rules.naming, context(input, { index, name: f.name })), data: bytes(f.data) }));
  if (rules.metadata) {
    const json = JSON.stringify(input.metadata ?? {}, null, 2);
    named.push({ name: render(rules.metadata, context(input)), data: Buffer.from(json, 'utf8') });
  }
  const seen = new Set<string>();
  for (const f of named) {
    if (seen.has(f.name)) throw new NamingError(`two files of the delivery get the name ${JSON.stringify(f.name)}: add {nn} to the naming rule`);
    seen.add(f.name);
  }
  const total = named.reduce((n, f) => n + f.data.length, 0);
  if (total > maxBytes) throw new NamingError(`the delivery has ${total} bytes, more than the ${maxBytes} allowed`);
  if (!rules.archive) return named;
  const entries: Zippable = {};
  for (const f of named) entries[f.name] = [f.data, { mtime: input.date }];
  const zip = zipSync(entries, { level: 6, mtime: input.date });
  return [{ name: render(rules.archive, context(input)), data: Buffer.from(zip.buffer, zip.byteOffset, zip.byteLength) }];
}

/** A stable id for a delivery to a target that has no message id of its own: target, names and bytes. */
export function deliveryId(target: string, files: readonly RemoteFile[]): string {
  const h = createHash('sha256').update(target).update('\0');
  for (const f of files) h.update(f.name).update('\0').update(f.data).update('\0');
  return h.digest('base64url').slice(0, 32);
}

/** Looks a field up in msg.metadata, then msg.payload (when an object), then msg itself. */
export function messageFields(msg: Record<string, unknown>): (name: string) => unknown {
  const get = (from: unknown, path: string[]): unknown => {
    let at = from;
    for (const p of path) {
      if (at === null || typeof at !== 'object' || Buffer.isBuffer(at) || !Object.prototype.hasOwnProperty.call(at, p)) return undefined;
      at = (at as Record<string, unknown>)[p];
    }
    return at;
  };
  const payload =
    msg.payload !== null && typeof msg.payload === 'object' && !Buffer.isBuffer(msg.payload) && !Array.isArray(msg.payload) ? msg.payload : undefined;
  return (name) => {
    const path = name.split('.');
    for (const from of [msg.metadata, payload, msg]) {
      const v = get(from, path);
      if (v !== undefined) return v;
    }
    return undefined;
  };
}

/** The delivery's date: msg.time (ISO text or epoch ms) when given, else now. */
export function deliveryDate(time: unknown, now = Date.now()): Date {
  if (typeof time === 'number' && Number.isFinite(time)) return new Date(time);
  if (typeof time === 'string' && time !== '') {
    const d = new Date(time);
    if (!Number.isNaN(d.getTime())) return d;
    throw new NamingError(`msg.time ${JSON.stringify(time)} is not a date`);
  }
  if (time instanceof Date && !Number.isNaN(time.getTime())) return time;
  return new Date(now);
}

/**
 * The files a message carries: msg.files, a list of { name, data } (data a Buffer or text, or
 * base64 text as { name, base64 }), else msg.payload (a Buffer or text) named msg.filename.
 */
export function filesOf(msg: Record<string, unknown>): InputFile[] {
  const list = msg.files;
  if (Array.isArray(list)) {
    return list.map((f: unknown, i) => {
      if (f === null || typeof f !== 'object') throw new NamingError(`msg.files[${i}] is not an object with name and data`);
      const { name, data, base64 } = f as { name?: unknown; data?: unknown; base64?: unknown };
      if (name !== undefined && typeof name !== 'string') throw new NamingError(`msg.files[${i}].name is not a text`);
      if (typeof base64 === 'string') return { name, data: Buffer.from(base64, 'base64') };
      if (typeof data === 'string' || Buffer.isBuffer(data) || data instanceof Uint8Array) return { name, data };
      throw new NamingError(`msg.files[${i}] has no data (a Buffer or text) or base64`);
    });
  }
  if (list !== undefined) throw new NamingError('msg.files must be a list of { name, data }');
  const p = msg.payload;
  if (Buffer.isBuffer(p) || typeof p === 'string' || p instanceof Uint8Array)
    return [{ name: typeof msg.filename === 'string' ? msg.filename : undefined, data: p }];
  return [];
}
