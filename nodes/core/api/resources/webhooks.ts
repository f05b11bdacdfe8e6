/**
 * The caller's webhook subscriptions (seed 002: users manage their own), the entity
 * webhook_subscriptions of the business store, and their delivery log (webhook_deliveries):
 *
 *   GET    /webhooks                       list (paged)
 *   POST   /webhooks                       create
 *   GET    /webhooks/{id}                  one
 *   PATCH  /webhooks/{id}                  change some fields (null clears username, password, secret)
 *   DELETE /webhooks/{id}                  delete (its log goes with it)
 *   POST   /webhooks/{id}/test             send a test event to this subscription only
 *   GET    /webhooks/{id}/deliveries       the delivery attempts, oldest first (paged)
 *   POST   /webhooks/{id}/deliveries/{deliveryId}/resend   send that attempt's event again
 *
 * "The caller's": a key bound to a user manages that user's subscriptions; a key without a user
 * manages the tenant-wide ones (user_id null). Any other subscription is a 404. password, secret
 * and the header values (which often carry credentials) are write-only: answers say hasPassword,
 * hasSecret and headerNames.
 *
 * The test event: conflux-webhook-out hands an event to every enabled subscription whose patterns
 * take its type, so an event published on the hub cannot be addressed to one subscription. The
 * test event is therefore written straight to the outbox queue the sender drains, as the one
 * message for this subscription (id `<subscriptionId>:<eventId>`, the sender's own layout), and
 * a running conflux-webhook-out delivers it, signed, retried and logged like any other. Its type
 * is `webhook.test`. A disabled subscription cannot be tested (409).
 *
 * Pause and resume are PATCH {enabled}: a paused subscription gets nothing (events that arrive
 * meanwhile are not kept for it) and keeps its log. A resend queues the logged event again, with
 * the body the sender kept when it logged the attempt (webhook_events, migration 012), for this
 * subscription only, under a new outbox message id (the first may still be in the box or in dead
 * letters): retried and logged like any delivery, with the same webhook-id and bytes, so the
 * receiver can de-duplicate. Every change reaches this process's senders at once
 * (subscriptionsChanged).
 */
import { randomUUID } from 'node:crypto';
import { createEvent, isEventPattern } from '../../events/event';
import { Mailbox } from '../../mailbox/mailbox';
import type { BusinessRow } from '../../stores/business';
import { deliveryMessage, resendMessage, WEBHOOK_QUEUE } from '../../webhooks/out-sender';
import { subscriptionsChanged } from '../../webhooks/out-store';
import { ApiError, type ApiContext, type ApiOperation, type ApiVersion, type JsonSchema } from '../operation';
import {
  bodyObject,
  bool,
  business,
  extend,
  ID_PARAM,
  idOf,
  idParam,
  int,
  invalid,
  iso,
  listRows,
  nullable,
  obj,
  ok,
  onlyKnown,
  page,
  PAGE_PARAMS,
  pageBody,
  str,
  strings,
  time,
  viaStore,
} from './common';

export const TEST_EVENT_TYPE = 'webhook.test';

const SUBSCRIPTION_V1 = obj(
  {
    id: int('The subscription id.'),
    url: str('Where events are POSTed.', { format: 'uri' }),
    events: strings('Event type patterns: `*`, a type, or `prefix.*`.'),
    username: nullable(str('Sent with the password as HTTP basic auth.')),
    hasPassword: bool('Whether a password is set (it is never returned).'),
    hasSecret: bool('Whether a signing secret is set (it is never returned).'),
    headerNames: strings('The names of the extra headers sent (their values are never returned).'),
    enabled: bool('false: nothing is sent.'),
    createdAt: time('When it was created.'),
    updatedAt: time('When it was last changed.'),
  },
  undefined,
  'A webhook subscription.',
);
const SUBSCRIPTION_V2 = extend(
  SUBSCRIPTION_V1,
  {
    disabledAt: nullable(time('v2: when Conflux switched it off (the receiver answered 410 Gone).')),
    disabledReason: nullable(str('v2: why it was switched off.')),
  },
  ['disabledAt', 'disabledReason'],
);
const subscriptionSchema = (v: ApiVersion) => (v === 1 ? SUBSCRIPTION_V1 : SUBSCRIPTION_V2);

const FIELDS = ['url', 'events', 'username', 'password', 'secret', 'headers', 'enabled'];
const requestSchema = (create: boolean): JsonSchema => ({
  type: 'object',
  properties: {
    url: { type: 'string', description: 'An http:// or https:// URL without credentials.' },
    events: { type: 'array', items: { type: 'string' }, minItems: 1, description: 'Event type patterns, e.g. ["device.*"].' },
    username: { type: ['string', 'null'], description: 'HTTP basic auth user.' },
    password: { type: ['string', 'null'], description: 'HTTP basic auth password (write-only).' },
    secret: { type: ['string', 'null'], pattern: '^whsec_[A-Za-z0-9+/=]+$', description: 'Standard Webhooks signing secret (write-only).' },
    headers: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra headers sent with every request (write-only values).' },
    enabled: { type: 'boolean' },
  },
  ...(create ? { required: ['url', 'events'] } : { minProperties: 1 }),
  additionalProperties: false,
});

function subscriptionBody(v: ApiVersion, s: BusinessRow): Record<string, unknown> {
  const body: Record<string, unknown> = {
    id: idOf(s.id),
    url: s.url,
    events: s.events ?? [],
    username: s.username ?? null,
    hasPassword: s.has_password === true,
    hasSecret: s.has_secret === true,
    headerNames: Object.keys((s.headers as Record<string, unknown> | null) ?? {}),
    enabled: s.enabled,
    createdAt: iso(s.created_at),
    updatedAt: iso(s.updated_at),
  };
  if (v >= 2) Object.assign(body, { disabledAt: iso(s.disabled_at), disabledReason: s.disabled_reason ?? null });
  return body;
}

/** Checks the body's fields and returns the business store's patch. */
function writable(ctx: ApiContext, create: boolean): Record<string, unknown> {
  const body = bodyObject(ctx);
  onlyKnown(body, FIELDS);
  if (create) for (const f of ['url', 'events']) if (body[f] === undefined) throw invalid(f, `${f} is required`);
  if (!create && Object.keys(body).length === 0) throw invalid('body', `give at least one of ${FIELDS.join(', ')}`);
  if (body.url !== undefined) {
    const url = typeof body.url === 'string' && URL.canParse(body.url) ? new URL(body.url) : undefined;
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw invalid('url', 'url must be an http:// or https:// URL');
    if (url.username || url.password) throw invalid('url', 'url must not carry credentials: use username and password');
  }
  if (body.events !== undefined) {
    if (!Array.isArray(body.events) || body.events.length === 0) throw invalid('events', 'events must be a non-empty array of event type patterns');
    const bad = body.events.find((p) => !isEventPattern(p));
    if (bad !== undefined) throw invalid('events', `${JSON.stringify(bad)} is not an event type pattern (*, a type, or prefix.*)`);
  }
  for (const f of ['username', 'password', 'secret']) {
    if (body[f] !== undefined && body[f] !== null && (typeof body[f] !== 'string' || body[f] === ''))
      throw invalid(f, `${f} must be a non-empty string or null`);
  }
  if (typeof body.secret === 'string' && !/^whsec_[A-Za-z0-9+/=]+$/.test(body.secret)) throw invalid('secret', 'secret must be whsec_ followed by base64');
  if (body.headers !== undefined) {
    const h = body.headers;
    if (h === null || typeof h !== 'object' || Array.isArray(h) || Object.values(h).some((x) => typeof x !== 'string'))
      throw invalid('headers', 'headers must be an object of header names to text values');
  }
  if (body.enabled !== undefined && typeof body.enabled !== 'boolean') throw invalid('enabled', 'enabled must be true or false');
  return body;
}

/** The caller's subscription with this id; 404 for anyone else's. */
async function own(ctx: ApiContext): Promise<BusinessRow> {
  const id = idParam(ctx, 'id');
  const row = await viaStore(() => business(ctx).read(ctx.identity.tenant, 'webhook_subscriptions', id)).catch((err: unknown) => {
    throw err instanceof ApiError && err.kind === 'not-found' ? notFound(id) : err;
  });
  if (String(row.user_id ?? '') !== String(ctx.identity.user_id ?? '')) throw notFound(id);
  return row;
}

const notFound = (id: string) => new ApiError('not-found', `no webhook subscription ${id} of yours`);
const NOT_FOUND = { description: 'No such subscription of yours.' };
const DELIVERY_PARAM = { ...ID_PARAM, name: 'deliveryId', description: 'The attempt id (from the deliveries).' };
const base = { versions: [1, 2] as const, action: 'manage' as const, tags: ['webhooks'] };

const DELIVERY_V1 = obj(
  {
    id: int('The attempt id.'),
    eventId: str('The event id (the webhook-id header).'),
    eventType: str('The event type.'),
    attempt: int('Which try this was, from 1.'),
    status: nullable(int('The HTTP status the receiver answered; null when none came.')),
    outcome: { type: 'string', enum: ['delivered', 'retry', 'dead', 'disabled'], description: 'What came of it.' },
    durationMs: int('How long the attempt took.'),
    response: nullable(str('The first KiB of the answer.')),
    error: nullable(str('Why it failed.')),
    attemptedAt: time('When.'),
  },
  undefined,
  'One delivery attempt.',
);

export const WEBHOOK_OPERATIONS: ApiOperation[] = [
  {
    ...base,
    operationId: 'listWebhooks',
    method: 'get',
    path: '/webhooks',
    summary: 'Your webhook subscriptions',
    parameters: [...PAGE_PARAMS],
    responses: (v) => ({ 200: ok('A page of subscriptions.', page(subscriptionSchema(v))) }),
    async handle(ctx) {
      const r = await listRows(ctx, 'webhook_subscriptions', { user_id: ctx.identity.user_id === null ? null : String(ctx.identity.user_id) });
      return pageBody(
        r.items.map((s) => subscriptionBody(ctx.version, s)),
        r.cursor,
      );
    },
  },
  {
    ...base,
    operationId: 'createWebhook',
    method: 'post',
    path: '/webhooks',
    summary: 'Subscribe a URL to events',
    description: 'password, secret and header values are write-only.',
    requestBody: () => requestSchema(true),
    responses: (v) => ({ 201: ok('The new subscription.', subscriptionSchema(v)) }),
    async handle(ctx) {
      const data = { ...writable(ctx, true), user_id: ctx.identity.user_id === null ? null : String(ctx.identity.user_id) };
      const row = await viaStore(() => business(ctx).create(ctx.identity.tenant, 'webhook_subscriptions', data));
      subscriptionsChanged(ctx.identity.tenant);
      return { status: 201, body: subscriptionBody(ctx.version, row) };
    },
  },
  {
    ...base,
    operationId: 'getWebhook',
    method: 'get',
    path: '/webhooks/{id}',
    summary: 'One of your webhook subscriptions',
    parameters: [ID_PARAM],
    responses: (v) => ({ 200: ok('The subscription.', subscriptionSchema(v)), 404: NOT_FOUND }),
    async handle(ctx) {
      return { body: subscriptionBody(ctx.version, await own(ctx)) };
    },
  },
  {
    ...base,
    operationId: 'updateWebhook',
    method: 'patch',
    path: '/webhooks/{id}',
    summary: 'Change a webhook subscription',
    description:
      'Only the given fields change; null clears username, password or secret. `{"enabled": false}` pauses it: nothing is sent (events meanwhile are not kept for it), the log stays; `{"enabled": true}` resumes it, and also clears disabledAt of a subscription Conflux switched off.',
    parameters: [ID_PARAM],
    requestBody: () => requestSchema(false),
    responses: (v) => ({ 200: ok('The subscription as changed.', subscriptionSchema(v)), 404: NOT_FOUND }),
    async handle(ctx) {
      const patch = writable(ctx, false);
      const row = await own(ctx);
      if (patch.enabled === true) Object.assign(patch, { disabled_at: null, disabled_reason: null });
      const updated = await viaStore(() => business(ctx).update(ctx.identity.tenant, 'webhook_subscriptions', row.id as number, patch));
      subscriptionsChanged(ctx.identity.tenant);
      return { body: subscriptionBody(ctx.version, updated) };
    },
  },
  {
    ...base,
    operationId: 'deleteWebhook',
    method: 'delete',
    path: '/webhooks/{id}',
    summary: 'Delete a webhook subscription and its delivery log',
    parameters: [ID_PARAM],
    responses: () => ({ 204: { description: 'Deleted.' }, 404: NOT_FOUND }),
    async handle(ctx) {
      const row = await own(ctx);
      await viaStore(() => business(ctx).delete(ctx.identity.tenant, 'webhook_subscriptions', row.id as number));
      subscriptionsChanged(ctx.identity.tenant);
      return { status: 204 };
    },
  },
  {
    ...base,
    operationId: 'testWebhook',
    method: 'post',
    path: '/webhooks/{id}/test',
    summary: 'Send a test event to this subscription only',
    description: `Queues one event of type ${TEST_EVENT_TYPE} for this subscription; a running conflux-webhook-out delivers it and logs the attempt in deliveries.`,
    parameters: [ID_PARAM],
    responses: () => ({
      202: ok('Queued.', obj({ eventId: str('The event id (the webhook-id header).'), eventType: str('Always webhook.test.') })),
      404: NOT_FOUND,
      409: { description: 'The subscription is disabled.' },
    }),
    async handle(ctx) {
      const row = await own(ctx);
      if (!row.enabled) throw new ApiError('conflict', 'the subscription is disabled: enable it first');
      const id = idOf(row.id);
      const event = createEvent({
        type: TEST_EVENT_TYPE,
        tenant: ctx.identity.tenant,
        subject: `webhook/${id}`,
        data: { subscription: id, message: 'A test event, sent through the REST API.' },
        identity: [id, randomUUID()],
      });
      await new Mailbox(ctx.stores.db, 'outbox').enqueue(ctx.identity.tenant, WEBHOOK_QUEUE, [deliveryMessage(Number(id), event)]);
      return { status: 202, body: { eventId: event.id, eventType: event.type } };
    },
  },
  {
    ...base,
    operationId: 'listWebhookDeliveries',
    method: 'get',
    path: '/webhooks/{id}/deliveries',
    summary: 'The delivery attempts of a subscription',
    description: 'Oldest first.',
    parameters: [ID_PARAM, ...PAGE_PARAMS],
    responses: () => ({ 200: ok('A page of attempts.', page(DELIVERY_V1)), 404: NOT_FOUND }),
    async handle(ctx) {
      const row = await own(ctx);
      const r = await listRows(ctx, 'webhook_deliveries', { subscription_id: String(row.id) });
      const items = r.items.map((d) => ({
        id: idOf(d.id),
        eventId: d.event_id,
        eventType: d.event_type,
        attempt: d.attempt,
        status: d.status ?? null,
        outcome: d.outcome,
        durationMs: d.duration_ms,
        response: d.response ?? null,
        error: d.error ?? null,
        attemptedAt: iso(d.attempted_at),
      }));
      return pageBody(items, r.cursor);
    },
  },
  {
    ...base,
    operationId: 'resendWebhookDelivery',
    method: 'post',
    path: '/webhooks/{id}/deliveries/{deliveryId}/resend',
    summary: "Send a logged delivery's event again",
    description:
      'Queues the event of that attempt once more for this subscription, with the same webhook-id and body; a running conflux-webhook-out delivers, retries and logs it like any delivery.',
    parameters: [ID_PARAM, DELIVERY_PARAM],
    responses: () => ({
      202: ok('Queued.', obj({ eventId: str('The event id (the webhook-id header, as first sent).'), eventType: str('The event type.') })),
      404: { description: 'No such subscription of yours, or no such delivery of it.' },
      409: { description: "The subscription is paused, or the event's body is no longer kept (logged before Conflux kept bodies, or pruned)." },
    }),
    async handle(ctx) {
      const row = await own(ctx);
      const deliveryId = idParam(ctx, 'deliveryId');
      const { rows } = await ctx.stores.db.query<{ event_id: string; event_type: string; body: string | null }>(
        `SELECT d.event_id, d.event_type, e.body FROM webhook_deliveries d
         LEFT JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.event_id = d.event_id
         WHERE d.tenant_id = $1 AND d.subscription_id = $2 AND d.id = $3`,
        [ctx.identity.tenant, String(row.id), deliveryId],
      );
      const d = rows[0];
      if (!d) throw new ApiError('not-found', `no delivery ${deliveryId} of webhook subscription ${idOf(row.id)}`);
      if (!row.enabled) throw new ApiError('conflict', 'the subscription is paused: resume it first');
      if (d.body === null) throw new ApiError('conflict', `the body of event ${d.event_id} is no longer kept`);
      const message = resendMessage(Number(row.id), d.event_id, d.event_type, d.body, randomUUID());
      await new Mailbox(ctx.stores.db, 'outbox').enqueue(ctx.identity.tenant, WEBHOOK_QUEUE, [message]);
      return { status: 202, body: { eventId: d.event_id, eventType: d.event_type } };
    },
  },
];
