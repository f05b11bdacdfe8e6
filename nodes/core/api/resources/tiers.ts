/**
 * The latest values (short-term tier) and the hourly and daily rollups (long-term tier) of a
 * device or one sensor sink:
 *
 *   GET /devices/{serial}/latest        GET /sensors/{sensorId}/latest
 *   GET /devices/{serial}/rollups       GET /sensors/{sensorId}/rollups    ?interval=hour|day
 *
 * A record's name `<deviceId>/<sensorId>/<quantity>` gives deviceId, sensorId and quantity (the
 * rest of the name, e.g. `temperature` or `deviation/limit`). Latest values come in name order,
 * at most `limit` of them (the tier keeps one per name, so there is no cursor; `complete` says
 * whether that was all). Rollups come in (bucket, name) order with a cursor. A tier this API was
 * not given answers 503. v2 adds the SenML `name` and `senmlUnit` to latest values, and `name`
 * and `lastTimeStamp` to rollups.
 */
import { formatEapiTime } from '../../codecs/eapi';
import type { ResolvedRecord } from '../../model/senml';
import type { Rollup, RollupSize } from '../../stores/types';
import { ApiError, type ApiContext, type ApiOperation, type ApiParameter, type ApiVersion, type JsonSchema } from '../operation';
import {
  bool,
  cursorParam,
  deviceBySerial,
  extend,
  FROM_PARAM,
  int,
  invalid,
  LIMIT_PARAM,
  nullable,
  num,
  obj,
  ok,
  page,
  PAGE_PARAMS,
  pageBody,
  pageSize,
  SENSOR_PARAM,
  sensorPrefix,
  SERIAL_PARAM,
  str,
  time,
  timeRange,
  TO_PARAM,
} from './common';
import { READING_COMMON } from './readings';
import { sensorIdOf } from './readings-model';

const UNITS: Record<string, string> = { Cel: '°C', K: 'K', degF: '°F', '%RH': '%', '%': '%' };

/** deviceId, sensorId and quantity of a record name. */
function parts(n: string): { deviceId: string; sensorId: number | string; quantity: string } {
  const [deviceId, sensor = '', ...rest] = n.split('/');
  return { deviceId, sensorId: sensorIdOf(sensor), quantity: rest.join('/') };
}

const QUANTITY = str('The rest of the record name after `<deviceId>/<sensorId>/`, e.g. temperature or deviation/limit.');

const LATEST_V1 = obj(
  {
    ...READING_COMMON,
    quantity: QUANTITY,
    value: { type: ['number', 'string', 'boolean'], description: 'The value: a number, a state text, a deviation flag, or binary data as base64url.' },
    unit: str('The unit token (K, °C, °F, %; other SenML units as they are; empty when none).'),
  },
  undefined,
  'The latest value of one record name.',
);
const LATEST_V2 = extend(LATEST_V1, { name: str('v2: the SenML record name.'), senmlUnit: str('v2: the SenML unit; absent when none.') }, ['name']);
const latestPage = (v: ApiVersion): JsonSchema =>
  obj({ items: { type: 'array', items: v === 1 ? LATEST_V1 : LATEST_V2 }, complete: bool('false when there were more names than `limit`.') });

function latestItem(v: ApiVersion, r: ResolvedRecord): Record<string, unknown> {
  const { deviceId, sensorId, quantity } = parts(r.n);
  const value = r.v ?? r.vs ?? r.vb ?? r.vd ?? r.s ?? null;
  const item: Record<string, unknown> = {
    sensorId,
    deviceId,
    timeStamp: formatEapiTime(r.t),
    quantity,
    value,
    unit: r.u === undefined ? '' : (UNITS[r.u] ?? r.u),
  };
  if (v >= 2) Object.assign(item, { name: r.n, ...(r.u !== undefined ? { senmlUnit: r.u } : {}) });
  return item;
}

async function latest(ctx: ApiContext, prefix: string) {
  const tier = ctx.stores.shortTerm;
  if (!tier) throw new ApiError('unavailable', 'this API has no short-term store');
  const limit = pageSize(ctx);
  const records = await tier.latestByPrefix(ctx.identity.tenant, prefix, limit + 1);
  const complete = records.length <= limit;
  return { body: { items: records.slice(0, limit).map((r) => latestItem(ctx.version, r)), complete } };
}

const INTERVAL_PARAM: ApiParameter = {
  name: 'interval',
  in: 'query',
  description: 'hour (default) or day: the size of the buckets (UTC hours or days).',
  schema: { type: 'string', enum: ['hour', 'day'] },
};

const ROLLUP_V1 = obj(
  {
    sensorId: READING_COMMON.sensorId,
    deviceId: READING_COMMON.deviceId,
    quantity: QUANTITY,
    interval: { type: 'string', enum: ['hour', 'day'], description: 'The bucket size.' },
    bucket: time('Start of the bucket (UTC).'),
    count: int('How many values fell into the bucket.'),
    min: nullable(num('The smallest value.')),
    max: nullable(num('The largest value.')),
    avg: nullable(num('The mean value.')),
    sum: num('The sum of the values.'),
    last: nullable(num('The latest value in the bucket.')),
  },
  undefined,
  'The rollup of one record name over one bucket.',
);
const ROLLUP_V2 = extend(ROLLUP_V1, { name: str('v2: the SenML record name.'), lastTimeStamp: nullable(time('v2: when `last` was measured.')) }, [
  'name',
  'lastTimeStamp',
]);

const finite = (x: number) => (Number.isFinite(x) ? x : null);

function rollupItem(v: ApiVersion, r: Rollup): Record<string, unknown> {
  const { deviceId, sensorId, quantity } = parts(r.n);
  const item: Record<string, unknown> = {
    sensorId,
    deviceId,
    quantity,
    interval: r.size,
    bucket: formatEapiTime(r.bucket),
    count: r.count,
    min: finite(r.min),
    max: finite(r.max),
    avg: finite(r.avg),
    sum: r.sum,
    last: finite(r.last),
  };
  if (v >= 2) Object.assign(item, { name: r.n, lastTimeStamp: Number.isFinite(r.lastT) ? formatEapiTime(r.lastT) : null });
  return item;
}

async function rollups(ctx: ApiContext, prefix: string) {
  const tier = ctx.stores.longTerm;
  if (!tier) throw new ApiError('unavailable', 'this API has no long-term store');
  const interval = ctx.query.interval ?? 'hour';
  if (interval !== 'hour' && interval !== 'day') throw invalid('interval', `interval must be "hour" or "day", got ${JSON.stringify(interval)}`);
  const limit = pageSize(ctx);
  const { from, to } = timeRange(ctx);
  const result = await tier
    .query({ tenant: ctx.identity.tenant, prefix, size: interval as RollupSize, from, to, limit, cursor: cursorParam(ctx) })
    .catch((err: unknown) => {
      throw err instanceof RangeError ? new ApiError('invalid-request', err.message, 'cursor') : err;
    });
  return pageBody(
    result.items.map((r) => rollupItem(ctx.version, r)),
    result.cursor,
  );
}

const DEVICE_404 = { description: 'No device with this serial number in your organisation.' };
const SENSOR_404 = { description: 'No sensor with this id in your organisation.' };
const NO_TIER = { description: 'The tier is not configured for this API.' };

export const TIER_OPERATIONS: ApiOperation[] = [
  {
    operationId: 'getDeviceLatest',
    method: 'get',
    path: '/devices/{serial}/latest',
    versions: [1, 2],
    action: 'read',
    summary: 'Latest values of a device',
    description: 'The latest value of every record name of the device that the short-term tier still holds, in name order.',
    tags: ['data'],
    parameters: [SERIAL_PARAM, LIMIT_PARAM],
    responses: (v) => ({ 200: ok('The latest values.', latestPage(v)), 404: DEVICE_404, 503: NO_TIER }),
    async handle(ctx) {
      const device = await deviceBySerial(ctx);
      return latest(ctx, `${device.serial as string}/`);
    },
  },
  {
    operationId: 'getSensorLatest',
    method: 'get',
    path: '/sensors/{sensorId}/latest',
    versions: [1, 2],
    action: 'read',
    summary: 'Latest values of one sensor sink',
    tags: ['data'],
    parameters: [SENSOR_PARAM, LIMIT_PARAM],
    responses: (v) => ({ 200: ok('The latest values.', latestPage(v)), 404: SENSOR_404, 503: NO_TIER }),
    async handle(ctx) {
      return latest(ctx, await sensorPrefix(ctx));
    },
  },
  {
    operationId: 'listDeviceRollups',
    method: 'get',
    path: '/devices/{serial}/rollups',
    versions: [1, 2],
    action: 'read',
    summary: 'Hourly or daily rollups of a device',
    description: 'Count, min, max, mean, sum and last of the numeric values, per UTC hour or day, oldest bucket first.',
    tags: ['data'],
    parameters: [SERIAL_PARAM, INTERVAL_PARAM, FROM_PARAM, TO_PARAM, ...PAGE_PARAMS],
    responses: (v) => ({ 200: ok('A page of rollups.', page(v === 1 ? ROLLUP_V1 : ROLLUP_V2)), 404: DEVICE_404, 503: NO_TIER }),
    async handle(ctx) {
      const device = await deviceBySerial(ctx);
      return rollups(ctx, `${device.serial as string}/`);
    },
  },
  {
    operationId: 'listSensorRollups',
    method: 'get',
    path: '/sensors/{sensorId}/rollups',
    versions: [1, 2],
    action: 'read',
    summary: 'Hourly or daily rollups of one sensor sink',
    tags: ['data'],
    parameters: [SENSOR_PARAM, INTERVAL_PARAM, FROM_PARAM, TO_PARAM, ...PAGE_PARAMS],
    responses: (v) => ({ 200: ok('A page of rollups.', page(v === 1 ? ROLLUP_V1 : ROLLUP_V2)), 404: SENSOR_404, 503: NO_TIER }),
    async handle(ctx) {
      return rollups(ctx, await sensorPrefix(ctx));
    },
  },
];
