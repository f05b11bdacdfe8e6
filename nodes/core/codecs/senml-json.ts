/**
 * SenML JSON (RFC 8428 section 5, application/senml+json) to and from resolved records.
 * Decoding is JSON.parse plus one resolve pass and nothing else: it is the hot path of every
 * listener, and a benchmark holds it to at least half the speed of bare JSON.parse.
 */
import { CodecError } from '../errors';
import { resolve, validateResolved, type ResolvedRecord, type ResolveOptions } from '../model/senml';
import { utf8Text } from './senml-common';

const FORMAT = 'senml';

/** Decodes SenML JSON text, UTF-8 bytes or an already parsed pack into resolved records. */
export function decodeSenmlJson(input: string | Uint8Array | unknown[], options: ResolveOptions = {}): ResolvedRecord[] {
  let pack: unknown;
  if (Array.isArray(input)) {
    pack = input;
  } else if (typeof input === 'string' || input instanceof Uint8Array) {
    try {
      pack = JSON.parse(typeof input === 'string' ? input : utf8Text(input));
    } catch (err) {
      throw new CodecError(FORMAT, `malformed JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
  } else {
    throw new CodecError(FORMAT, 'expected SenML JSON text, UTF-8 bytes or a parsed array of records');
  }
  return resolve(pack, options);
}

/**
 * Encodes resolved records as SenML JSON. Writes only SenML fields, in one fixed order
 * (n, u, t, value, s, ut, bver), so equal records always give equal text.
 */
export function encodeSenmlJson(records: ResolvedRecord[]): string {
  const list = validateResolved(records, FORMAT);
  let out = '[';
  for (let i = 0; i < list.length; i++) {
    const r = list[i];
    out += (i === 0 ? '{"n":' : ',{"n":') + JSON.stringify(r.n);
    if (r.u !== undefined) out += ',"u":' + JSON.stringify(r.u);
    out += ',"t":' + JSON.stringify(r.t);
    if (r.v !== undefined) out += ',"v":' + JSON.stringify(r.v);
    else if (r.vs !== undefined) out += ',"vs":' + JSON.stringify(r.vs);
    else if (r.vb !== undefined) out += r.vb ? ',"vb":true' : ',"vb":false';
    else if (r.vd !== undefined) out += ',"vd":' + JSON.stringify(r.vd);
    if (r.s !== undefined) out += ',"s":' + JSON.stringify(r.s);
    if (r.ut !== undefined) out += ',"ut":' + JSON.stringify(r.ut);
    if (r.bver !== undefined) out += ',"bver":' + JSON.stringify(r.bver);
    out += '}';
  }
  return out + ']';
}
