/** conflux-ultralight: UltraLight 2.0 measures and command results to and from the canonical message. */
import { CodecError } from '../errors';
import { recordsToUl, ulToRecords, type UlMap } from '../codecs/ultralight';
import type { ResolvedRecord } from '../model/senml';
import { isWireData, type Converter, type ConvertibleMessage } from './converter';

export interface UltralightOptions {
  /** used when the message carries no msg.device.id (a listener sets that after authentication) */
  deviceId: string;
  /** short attribute names to full names (and optional types), as FIWARE's IoT Agent maps them */
  map: UlMap;
}

/** Reads the editor's JSON text for the attribute map; a bad map is the integrator's error to see at deploy. */
export function parseUlMap(text: unknown): UlMap {
  if (text === undefined || text === null || text === '') return {};
  const map: unknown = typeof text === 'string' ? JSON.parse(text) : text;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new Error('the attribute map must be a JSON object');
  return map as UlMap;
}

function deviceOf(msg: ConvertibleMessage, options: UltralightOptions): string {
  const id = msg.device?.id || options.deviceId;
  if (!id) throw new CodecError('ultralight', "no device id: the message has no msg.device.id and the node's Device ID is empty", undefined, 'deviceId');
  return id;
}

export function ultralightConverter(options: UltralightOptions): Converter {
  return {
    direction: (msg) => (isWireData(msg.payload) ? 'decode' : 'encode'),

    decode(msg: ConvertibleMessage, now: number) {
      if (!isWireData(msg.payload)) throw new CodecError('ultralight', 'expected UltraLight 2.0 text as a string or a Buffer');
      // No device id is fine for command results (they name their device); ulToRecords refuses measures without one.
      return { records: ulToRecords(msg.payload, { deviceId: msg.device?.id || options.deviceId, map: options.map, now }), format: 'ultralight' };
    },

    encode(msg: ConvertibleMessage) {
      return recordsToUl(msg.payload as ResolvedRecord[], { deviceId: deviceOf(msg, options), map: options.map });
    },
  };
}
