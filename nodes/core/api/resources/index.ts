/**
 * The standard resources conflux-rest-api serves.
 *
 * PLACEHOLDER of the "api" branch: one small operation (the event catalogue) so the framework
 * can be tested end to end. The "resources" branch replaces this file with the full lists.
 */
import type { ApiOperation } from '../operation';

const EVENT_TYPE = {
  type: 'object',
  required: ['type', 'description', 'origin'],
  properties: {
    type: { type: 'string' },
    description: { type: 'string' },
    origin: { type: 'string', enum: ['platform', 'flow'] },
  },
};

const listEventTypes: ApiOperation = {
  operationId: 'listEventTypes',
  method: 'get',
  path: '/events/types',
  versions: [1, 2],
  action: 'read',
  summary: 'The event catalogue',
  tags: ['events'],
  parameters: [
    { name: 'origin', in: 'query', description: 'Only platform or flow (custom) types.', schema: { type: 'string', enum: ['platform', 'flow'] } },
    { name: 'limit', in: 'query', description: 'At most this many types.', schema: { type: 'integer' } },
  ],
  responses: () => ({
    200: { description: 'The event types', schema: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: EVENT_TYPE } } } },
  }),
  handle: async (ctx) => {
    const origin = ctx.query.origin;
    const items = ctx.stores
      .catalogue()
      .filter((t) => origin === undefined || t.origin === origin)
      .slice(0, Number(ctx.query.limit))
      .map((t) => ({ type: t.type, description: t.description, origin: t.origin }));
    return { body: { items } };
  },
};

export const STANDARD_OPERATIONS: ApiOperation[] = [listEventTypes];
