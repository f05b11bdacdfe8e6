/** conflux-eapi: the cloud data logger's AMQP messages (seed 004) to and from the canonical message. */
import { decodeEapi, encodeEapi } from '../codecs/eapi';
import type { ResolvedRecord } from '../model/senml';
import type { Converter, ConvertibleMessage } from './converter';

export function eapiConverter(): Converter {
  return {
    // An AMQP body arrives as text, bytes or (after a json node) one {type, data} object; arrays are canonical.
    direction: (msg) => (Array.isArray(msg.payload) ? 'encode' : 'decode'),

    decode(msg: ConvertibleMessage) {
      return { records: decodeEapi(msg.payload), format: 'eapi' };
    },

    encodesMany: true,
    encode(msg: ConvertibleMessage) {
      return encodeEapi(msg.payload as ResolvedRecord[]);
    },
  };
}
