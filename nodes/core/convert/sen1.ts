/** conflux-sen1: the federation's Sen1Message XML to and from the canonical message. */
import { CodecError } from '../errors';
import { decodeSen1, encodeSen1, SEN1_TYPES, type Sen1EncodeMeta, type Sen1Type } from '../codecs/sen1';
import type { ResolvedRecord } from '../model/senml';
import { isWireData, type Converter, type ConvertibleMessage } from './converter';

/** Defaults for encoding; msg.sen1 (left by a decode, or set by the flow) overrides them. */
export interface Sen1Options {
  username: string;
  applicationSrc: string;
  applicationDst: string;
  /** '' lets the record's value choose: dt_numeric, dt_boolean or dt_string */
  type: Sen1Type | '';
}

export function parseSen1Type(value: unknown): Sen1Type | '' {
  return (SEN1_TYPES as readonly unknown[]).includes(value) ? (value as Sen1Type) : '';
}

function nonEmpty(x: unknown): string | undefined {
  return typeof x === 'string' && x !== '' ? x : undefined;
}

export function sen1Converter(options: Sen1Options): Converter {
  return {
    direction: (msg) => (isWireData(msg.payload) ? 'decode' : 'encode'),

    decode(msg: ConvertibleMessage) {
      if (!isWireData(msg.payload)) throw new CodecError('sen1', 'expected Sen1Message XML as a string or a Buffer');
      const { records, meta } = decodeSen1(msg.payload);
      msg.sen1 = meta;
      return { records, format: 'sen1' };
    },

    encodesMany: true,
    encode(msg: ConvertibleMessage) {
      const given = (msg.sen1 ?? {}) as Partial<Sen1EncodeMeta>;
      const username = nonEmpty(given.username) ?? nonEmpty(options.username);
      if (!username) throw new CodecError('sen1', "no username: set msg.sen1.username or the node's Username", undefined, 'username');
      const meta: Sen1EncodeMeta = {
        username,
        applicationSrc: nonEmpty(given.applicationSrc) ?? nonEmpty(options.applicationSrc),
        applicationDst: nonEmpty(given.applicationDst) ?? nonEmpty(options.applicationDst),
        metaname: nonEmpty(given.metaname),
        metavalue: nonEmpty(given.metavalue),
        type: parseSen1Type(given.type) || options.type || undefined,
      };
      return encodeSen1(msg.payload as ResolvedRecord[], meta);
    },
  };
}
