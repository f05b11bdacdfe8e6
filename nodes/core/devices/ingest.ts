/**
 * What a device sends, decoded into the canonical message, the same for every transport.
 *
 *   senml       SenML JSON, CBOR or XML (detected)
 *   ultralight  UltraLight 2.0 measures, FIWARE's `t|21.5|h|40`
 *   attributes  a JSON object of attribute → value, as FIWARE's JSON agent takes it
 *               ({"t": 21.5, "on": true, "mode": "eco"}; a value may be {"value": …})
 *
 * Records are scoped to the device that sent them: a name that does not start with
 * "<serial>/" gets that prefix, so a device can write only under its own names and never as
 * another device of its tenant. Framework-free.
 */
import { decodeSenmlCbor } from '../codecs/senml-cbor';
import { detectSenmlFormat, utf8Text } from '../codecs/senml-common';
import { decodeSenmlJson } from '../codecs/senml-json';
import { decodeSenmlXml } from '../codecs/senml-xml';
import { ulToRecords } from '../codecs/ultralight';
import { CodecError } from '../errors';
import type { CanonicalMessage } from '../model/message';
import { isValidName, validateResolved, type ResolvedRecord } from '../model/senml';
import type { DeviceIdentity } from './directory';

export type DeviceFormat = 'senml' | 'ultralight' | 'attributes';

export interface Decoded {
  records: ResolvedRecord[];
  /** The wire format read, for msg.source.format. */
  format: string;
}

function attributes(body: unknown, serial: string, now: number): ResolvedRecord[] {
  let value = body;
  if (typeof body === 'string' || body instanceof Uint8Array) {
    try {
      value = JSON.parse(typeof body === 'string' ? body : utf8Text(body));
    } catch (err) {
      throw new CodecError('attributes', `not JSON: ${(err as Error).message}`);
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CodecError('attributes', 'expected a JSON object of attribute values');
  const out: ResolvedRecord[] = [];
  for (const [name, raw] of Object.entries(value as Record<string, unknown>)) {
    const v = raw !== null && typeof raw === 'object' && !Array.isArray(raw) && 'value' in raw ? (raw as { value: unknown }).value : raw;
    const n = `${serial}/${name}`;
    if (!isValidName(n)) throw new CodecError('attributes', `"${name}" is not a valid name part`, undefined, name);
    if (typeof v === 'number' && Number.isFinite(v)) out.push({ n, t: now, v });
    else if (typeof v === 'boolean') out.push({ n, t: now, vb: v });
    else if (typeof v === 'string') out.push({ n, t: now, vs: v });
    else throw new CodecError('attributes', 'a value must be a finite number, a boolean or a string', undefined, name);
  }
  if (out.length === 0) throw new CodecError('attributes', 'no attribute values');
  return out;
}

/**
 * Decodes a device's payload; throws CodecError with the reason. `now` in seconds. What a tier
 * would refuse (a time out of range, a name too long…) is refused here, before the listener
 * acknowledges anything.
 */
export function decodeDevicePayload(format: DeviceFormat, body: unknown, serial: string, now = Date.now() / 1000): Decoded {
  const decoded = decodeAs(format, body, serial, now);
  validateResolved(decoded.records, decoded.format);
  return decoded;
}

function decodeAs(format: DeviceFormat, body: unknown, serial: string, now: number): Decoded {
  switch (format) {
    case 'ultralight':
      if (!(typeof body === 'string' || body instanceof Uint8Array)) throw new CodecError('ultralight', 'expected text');
      // A command-result group names its own device (`other@cmd|ok`): scoped like every record.
      return { records: scopeToDevice(ulToRecords(body, { deviceId: serial, now }), serial), format: 'ultralight' };
    case 'attributes':
      return { records: attributes(body, serial, now), format: 'attributes+json' };
    case 'senml': {
      const wire = detectSenmlFormat(body);
      const records =
        wire === 'cbor'
          ? decodeSenmlCbor(body as Uint8Array, { now })
          : wire === 'xml'
            ? decodeSenmlXml(body as string | Uint8Array, { now })
            : decodeSenmlJson(body as string | Uint8Array | unknown[], { now });
      return { records: scopeToDevice(records, serial), format: `senml+${wire}` };
    }
  }
}

/** Prefixes every name not already under "<serial>/" with it. */
export function scopeToDevice(records: ResolvedRecord[], serial: string): ResolvedRecord[] {
  const prefix = `${serial}/`;
  for (const r of records) if (!r.n.startsWith(prefix)) r.n = prefix + r.n;
  return records;
}

/** The canonical message a listener sends for an authenticated device. */
export function deviceMessage(device: DeviceIdentity, decoded: Decoded, transport: string, receivedAt: number): CanonicalMessage {
  return {
    payload: decoded.records,
    device: { tenant: device.tenant, id: device.serial },
    source: { transport, format: decoded.format, receivedAt },
  };
}
