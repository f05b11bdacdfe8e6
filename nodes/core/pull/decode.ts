/**
 * What a pull makes of a batch of items, with the codecs conflux-webhook-in offers
 * (../webhooks/in-decode.ts):
 *
 *   json        the items as they are, msg.payload an array
 *   senml, map  the items as one JSON array: SenML records, or the JSONata expression's input
 *   eapi, sen1, ultralight   each item on its own (a string is the body's text, else its JSON)
 *
 * A batch that does not decode throws CodecError: the run fails and the watermark stays.
 */
import { CodecError } from '../errors';
import type { DeviceRef } from '../model/message';
import { createBodyDecoder, type DecodeConfig, type WebhookCodec } from '../webhooks/in-decode';

export type PullCodec = WebhookCodec;
export { CODECS as PULL_CODECS } from '../webhooks/in-decode';

export interface DecodedBatch {
  payload: unknown[];
  format: string;
  device?: DeviceRef;
}

export interface BatchDecoder {
  decode(items: readonly unknown[], tenant: string, nowMs: number): Promise<DecodedBatch>;
}

const bodyOf = (item: unknown): Buffer => Buffer.from(typeof item === 'string' ? item : JSON.stringify(item), 'utf8');

export function createBatchDecoder(config: DecodeConfig): BatchDecoder {
  const body = createBodyDecoder(config); // compiles a mapping now: a syntax error shows at deploy
  return {
    async decode(items, tenant, nowMs) {
      const device = config.deviceId ? { tenant, id: config.deviceId } : undefined;
      if (config.codec === 'json') return { payload: [...items], format: 'json', device };
      if (config.codec === 'senml' || config.codec === 'map') {
        const d = await body.decode(bodyOf(items), 'application/json', tenant, nowMs);
        return { payload: d.payload as unknown[], format: d.format, device };
      }
      const payload: unknown[] = [];
      let format: string = config.codec;
      for (const [i, item] of items.entries()) {
        try {
          const d = await body.decode(bodyOf(item), undefined, tenant, nowMs);
          payload.push(...(d.payload as unknown[]));
          format = d.format;
        } catch (err) {
          if (err instanceof CodecError) throw new CodecError(err.format, `item ${i}: ${err.reason}`);
          throw err;
        }
      }
      return { payload, format, device };
    },
  };
}
