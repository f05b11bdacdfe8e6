/**
 * The event catalogue: every event type this runtime knows (the platform's own and the custom
 * types of deployed conflux-event nodes), with a description and an example of its data, so an
 * integrator can pick what to subscribe webhooks to.
 *
 *   GET /event-types   ?origin=platform|flow, ?limit
 *
 * v2 adds `subscribable`: whether a webhook pattern can name the type (every listed type can;
 * `webhook.test` is not listed, since only a test sends it).
 */
import { ApiError, type ApiOperation, type ApiVersion, type JsonSchema } from '../operation';
import { bool, extend, invalid, LIMIT_PARAM, obj, ok, pageSize, str } from './common';

const TYPE_V1 = obj(
  {
    type: str('The event type, e.g. device.connected.'),
    description: str('What happened, in English.'),
    origin: { type: 'string', enum: ['platform', 'flow'], description: 'platform: Conflux emits it; flow: a flow of this installation does.' },
    example: { description: "An example of the event's data; null for a flow's type." },
  },
  undefined,
  'An event type.',
);
const TYPE_V2 = extend(TYPE_V1, { subscribable: bool('v2: whether a webhook subscription may name it.') }, ['subscribable']);
const catalogueSchema = (v: ApiVersion): JsonSchema => obj({ items: { type: 'array', items: v === 1 ? TYPE_V1 : TYPE_V2 } });

export const EVENT_OPERATIONS: ApiOperation[] = [
  {
    operationId: 'listEventTypes',
    method: 'get',
    path: '/event-types',
    versions: [1, 2],
    action: 'read',
    summary: 'The event catalogue',
    description: 'Every event type of this installation, in type order.',
    tags: ['events'],
    parameters: [
      {
        name: 'origin',
        in: 'query',
        description: "Only the platform's types or only the flows' (custom) types.",
        schema: { type: 'string', enum: ['platform', 'flow'] },
      },
      LIMIT_PARAM,
    ],
    responses: (v) => ({ 200: ok('The event types.', catalogueSchema(v)) }),
    async handle(ctx) {
      let types;
      try {
        types = ctx.stores.catalogue();
      } catch (err) {
        throw new ApiError('unavailable', `the event catalogue is not available: ${(err as Error).message}`);
      }
      const origin = ctx.query.origin;
      if (origin !== undefined && origin !== 'platform' && origin !== 'flow') throw invalid('origin', 'origin must be platform or flow');
      const items = types
        .filter((t) => origin === undefined || t.origin === origin)
        .sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0))
        .map((t) => ({
          type: t.type,
          description: t.description,
          origin: t.origin,
          example: t.example ?? null,
          ...(ctx.version >= 2 ? { subscribable: true } : {}),
        }))
        .slice(0, pageSize(ctx));
      return { body: { items } };
    },
  },
];
