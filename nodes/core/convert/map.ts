/** conflux-map: any JSON to and from the canonical message through a JSONata expression. */
import { compileMapping, decodeWithMapping, encodeWithMapping } from '../codecs/json-map';
import type { ResolvedRecord } from '../model/senml';
import { isCanonical, type Converter, type ConvertibleMessage } from './converter';

/** Compiles at deploy, so a syntax error shows on the node before any message arrives. */
export function mapConverter(expression: string): Converter {
  const mapping = compileMapping(expression);
  return {
    direction: (msg) => (isCanonical(msg) ? 'encode' : 'decode'),

    async decode(msg: ConvertibleMessage, now: number) {
      // The expression sees the payload as its input and the message's device as $device.
      const records = await decodeWithMapping(mapping, msg.payload, { now, bindings: { device: msg.device } });
      return { records, format: 'json' };
    },

    encode(msg: ConvertibleMessage) {
      return encodeWithMapping(mapping, msg.payload as ResolvedRecord[]);
    },
  };
}
