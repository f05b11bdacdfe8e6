/** conflux-senml: SenML JSON, XML and CBOR to and from the canonical message. */
import { CodecError } from '../errors';
import { decodeSenmlJson, encodeSenmlJson } from '../codecs/senml-json';
import { decodeSenmlXml, encodeSenmlXml } from '../codecs/senml-xml';
import { decodeSenmlCbor, encodeSenmlCbor } from '../codecs/senml-cbor';
import { detectSenmlFormat } from '../codecs/senml-common';
import { isCanonical, type Converter, type ConvertibleMessage } from './converter';

export type SenmlFormat = 'auto' | 'json' | 'xml' | 'cbor';

export interface SenmlOptions {
  /** the wire format: read from the input when decoding in 'auto'; JSON when encoding in 'auto' */
  format: SenmlFormat;
}

export function parseSenmlFormat(value: unknown): SenmlFormat {
  return value === 'json' || value === 'xml' || value === 'cbor' ? value : 'auto';
}

export function senmlConverter(options: SenmlOptions): Converter {
  return {
    // Text, bytes and SenML packs decode; a message a Conflux decoder already made canonical encodes.
    direction: (msg) => (isCanonical(msg) ? 'encode' : 'decode'),

    decode(msg: ConvertibleMessage, now: number) {
      const input = msg.payload;
      if (input === undefined || input === null) throw new CodecError('senml', 'msg.payload is empty');
      const format = options.format === 'auto' ? detectSenmlFormat(input) : options.format;
      switch (format) {
        case 'xml':
          return { records: decodeSenmlXml(input as string | Uint8Array, { now }), format: 'senml+xml' };
        case 'cbor':
          if (!(input instanceof Uint8Array)) throw new CodecError('senml', 'SenML CBOR needs a Buffer payload');
          return { records: decodeSenmlCbor(input, { now }), format: 'senml+cbor' };
        default:
          return { records: decodeSenmlJson(input as string | Uint8Array | unknown[], { now }), format: 'senml+json' };
      }
    },

    encode(msg: ConvertibleMessage) {
      const records = msg.payload as Parameters<typeof encodeSenmlJson>[0];
      switch (options.format) {
        case 'xml':
          return encodeSenmlXml(records);
        case 'cbor':
          return Buffer.from(encodeSenmlCbor(records));
        default:
          return encodeSenmlJson(records);
      }
    },
  };
}
