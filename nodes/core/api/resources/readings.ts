/**
 * Seed 004's data sets from the time-series tier (readings-model.ts builds the items):
 *
 *   GET /devices/{serial}/{kind}     every sensor of the device
 *   GET /sensors/{sensorId}/{kind}   one sensor sink
 *
 * for kind = measurements, geodata, occurrences, deviations; `from` (inclusive), `to`
 * (exclusive), `limit` and `cursor`. Items carry seed 004's field names; v2 adds the SenML
 * record `name` and, for measurements, the SenML unit `senmlUnit` (`Cel` where v1 says `°C`).
 */
import type { ApiContext, ApiOperation, ApiVersion, JsonSchema } from '../operation';
import { ApiError } from '../operation';
import {
  cursorParam,
  deviceBySerial,
  extend,
  FROM_PARAM,
  idParam,
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
  serialParam,
  str,
  time,
  timeRange,
  TO_PARAM,
} from './common';
import { measurementsPage } from './measurements-sql';
import { readPage, READING_KINDS, type ReadingKind } from './readings-model';

const COMMON = {
  sensorId: { type: ['integer', 'string'], description: 'The sensor sink id (an Int64; text when it is not a number).' },
  deviceId: str("The device's serial number."),
  timeStamp: time('When, in UTC (`2022-10-11T16:21:27+00:00`).'),
};

const V1: Record<ReadingKind, JsonSchema> = {
  measurements: obj(
    {
      ...COMMON,
      value: num('The measured value.'),
      unit: str('The unit token: K, °C, °F or %; other SenML units as they are; empty when none.'),
      unitType: str('What was measured, e.g. temperature, relative_humidity.'),
    },
    undefined,
    'A measurement.',
  ),
  geodata: obj(
    {
      ...COMMON,
      latitude: num('Latitude in degrees.'),
      longitude: num('Longitude in degrees.'),
      accuracy: num('Accuracy in metres, when known.'),
    },
    ['sensorId', 'deviceId', 'timeStamp', 'latitude', 'longitude'],
    'A position.',
  ),
  occurrences: obj(
    {
      ...COMMON,
      typeName: str('e.g. LoggerStatusChange.'),
      previousState: str('The state before, when known.'),
      newState: str('The state after.'),
    },
    ['sensorId', 'deviceId', 'timeStamp', 'typeName', 'newState'],
    'An occurrence (a state change).',
  ),
  deviations: obj(
    {
      ...COMMON,
      historyType: { type: 'string', enum: ['enter', 'leave'], description: 'Whether the deviation began or ended.' },
      deviationType: { type: 'string', enum: ['battery', 'failure', 'missing', 'radio', 'limit'], description: 'The kind of deviation.' },
      reason: str('The explanation code, e.g. upper_limit_alarm.'),
      limitzone: str('The limit zone of a limit deviation: L1, L2, H1...'),
    },
    ['sensorId', 'deviceId', 'timeStamp', 'historyType', 'deviationType', 'reason'],
    'A deviation entered or left.',
  ),
};

const NAME = { name: str('v2: the SenML record name (for geodata the common prefix `<deviceId>/<sensorId>`).') };

function itemSchema(kind: ReadingKind, v: ApiVersion): JsonSchema {
  if (v === 1) return V1[kind];
  if (kind === 'measurements') return extend(V1[kind], { ...NAME, senmlUnit: str('v2: the SenML unit, e.g. Cel, %RH; absent when none.') }, ['name']);
  return extend(V1[kind], NAME, ['name']);
}

const TITLES: Record<ReadingKind, string> = { measurements: 'Measurements', geodata: 'Geodata', occurrences: 'Occurrences', deviations: 'Deviations' };

/** A page of kind for a device (by serial) or a sensor sink (by id); 404 for neither of the tenant. */
async function answer(ctx: ApiContext, kind: ReadingKind, of: 'device' | 'sensor') {
  const store = ctx.stores.timeSeries;
  if (!store) throw new ApiError('unavailable', 'this API has no time-series store');
  const limit = pageSize(ctx);
  const { from, to } = timeRange(ctx);
  const v2 = ctx.version >= 2;
  const cursor = cursorParam(ctx);
  // On the SQL tier one statement finds the device or sink and reads the page (measurements-sql.ts).
  if (kind === 'measurements' && store.kind !== 'elasticsearch') {
    const which = of === 'device' ? { serial: serialParam(ctx) } : { sensorId: BigInt(idParam(ctx, 'sensorId')).toString() };
    const json = await measurementsPage(ctx.stores.db, { tenant: ctx.identity.tenant, of: which, from, to, limit, cursor, v2 });
    if (json === undefined)
      throw new ApiError(
        'not-found',
        'serial' in which ? `no device with serial number ${JSON.stringify(which.serial)}` : `no sensor with id ${which.sensorId}`,
      );
    return { json };
  }
  const prefix = of === 'device' ? `${(await deviceBySerial(ctx)).serial as string}/` : await sensorPrefix(ctx);
  const result = await readPage(store, { tenant: ctx.identity.tenant, kind, prefix, from, to, limit, cursor, v2 });
  return pageBody(result.items, result.cursor);
}

function operations(kind: ReadingKind): ApiOperation[] {
  const cap = kind[0].toUpperCase() + kind.slice(1);
  const params = [FROM_PARAM, TO_PARAM, ...PAGE_PARAMS];
  const description =
    'Oldest first. A page holds at most `limit` items; follow `cursor` for the rest. ' +
    'Times are UTC; `from` is inclusive and `to` exclusive. Needs the time-series tier (503 without it).';
  return [
    {
      operationId: `listDevice${cap}`,
      method: 'get',
      path: `/devices/{serial}/${kind}`,
      versions: [1, 2],
      action: 'read',
      summary: `${TITLES[kind]} of a device (every sensor)`,
      description,
      tags: ['data'],
      parameters: [SERIAL_PARAM, ...params],
      responses: (v) => ({
        200: ok(`A page of ${kind}.`, page(itemSchema(kind, v))),
        404: { description: 'No device with this serial number in your organisation.' },
      }),
      handle: (ctx) => answer(ctx, kind, 'device'),
    },
    {
      operationId: `listSensor${cap}`,
      method: 'get',
      path: `/sensors/{sensorId}/${kind}`,
      versions: [1, 2],
      action: 'read',
      summary: `${TITLES[kind]} of one sensor sink`,
      description,
      tags: ['data'],
      parameters: [SENSOR_PARAM, ...params],
      responses: (v) => ({ 200: ok(`A page of ${kind}.`, page(itemSchema(kind, v))), 404: { description: 'No sensor with this id in your organisation.' } }),
      handle: (ctx) => answer(ctx, kind, 'sensor'),
    },
  ];
}

export const READING_OPERATIONS: ApiOperation[] = READING_KINDS.flatMap(operations);

/** The fields every reading item has (the tiers' items share them). */
export const READING_COMMON = COMMON;
