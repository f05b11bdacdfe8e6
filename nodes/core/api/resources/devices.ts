/**
 * Devices (seed 004 §2.1–2.3): a device is its serial number, with channels (1..n) and sensors,
 * each sensor a data sink for one run with a start and an end; a restart ends the open sinks and
 * opens new ones (BusinessStore.restartDevice), so a device lists old and new sink ids.
 *
 *   GET /devices                  the tenant's devices, paged, each with its sensor ids
 *   GET /devices/{serial}         one device with its channels and their sensor sinks
 *   GET /sensors/{sensorId}       one sensor sink
 *
 * v2 adds a device's attributes, lastSeenAt and disabledAt, and a sink's `active`. lastSeenAt is
 * the later of devices.last_seen_at (written by flows through the business store) and the time of
 * the device's newest reading in the long-term tier's daily rollups (names `<serial>/…`), as the
 * operator dashboard shows it.
 */
import type { SqlClient } from '../../db/sql';
import { LAST_SEEN_SQL } from '../../ops/devices';
import type { BusinessRow } from '../../stores/business';
import type { ApiContext, ApiOperation, ApiVersion, JsonSchema } from '../operation';
import {
  arr,
  bool,
  business,
  BUSINESS_MAX,
  deviceBySerial,
  extend,
  idOf,
  int,
  iso,
  listRows,
  nullable,
  obj,
  ok,
  page,
  PAGE_PARAMS,
  pageBody,
  SENSOR_PARAM,
  sensorById,
  SERIAL_PARAM,
  str,
  strings,
  time,
  viaStore,
} from './common';

const SENSOR_V1 = obj(
  {
    sensorId: int('The sink id: readings of this run are named <serial>/<sensorId>/<quantity>.'),
    deviceId: str("The device's serial number."),
    channel: int('The channel number.'),
    position: int('The position of the sensor on its channel.'),
    kind: nullable(str('What kind of sensor, e.g. temperature or rH.')),
    quantities: strings('The quantities the sensor delivers.'),
    start: time('When the sink was opened.'),
    end: nullable(time('When the sink was closed (a restart opened a new one); null while it is open.')),
  },
  undefined,
  'A sensor: the data sink of one run.',
);
const SENSOR_V2 = extend(SENSOR_V1, { active: bool('Whether the sink is still open (end is null).') }, ['active']);
const sensorSchema = (v: ApiVersion) => (v === 1 ? SENSOR_V1 : SENSOR_V2);

const DEVICE_BASE = {
  serialNumber: str('The serial number (unique).'),
  name: nullable(str('A display name.')),
  model: nullable(str('The model.')),
  createdAt: time('When the device was registered.'),
  sensorIds: arr(int('A sensor id.'), 'Every sensor sink of the device, past and open, ascending.'),
};
const DEVICE_V2_ADDS = {
  attributes: { type: 'object', description: 'Free-form attributes.' },
  lastSeenAt: nullable(
    time('When the device was last heard from: its newest reading in the long-term history, or a later time a flow recorded; null if never.'),
  ),
  disabledAt: nullable(time('When the device was disabled; null while enabled.')),
};
const DEVICE_V1 = obj(DEVICE_BASE, undefined, 'A device.');
const DEVICE_V2 = extend(DEVICE_V1, DEVICE_V2_ADDS, Object.keys(DEVICE_V2_ADDS));

function channelSchema(v: ApiVersion): JsonSchema {
  return obj({
    number: int('The channel number.'),
    name: nullable(str('A display name.')),
    intervalSeconds: nullable(int('The measuring interval.')),
    sensors: arr(sensorSchema(v)),
  });
}
const detailSchema = (v: ApiVersion): JsonSchema => extend(v === 1 ? DEVICE_V1 : DEVICE_V2, { channels: arr(channelSchema(v)) }, ['channels']);

const notFound = { description: 'No device with this serial number in your organisation.' };

function deviceBody(v: ApiVersion, d: BusinessRow, sensorIds: Array<number | string>, lastSeen: Map<string, Date>): Record<string, unknown> {
  const body: Record<string, unknown> = {
    serialNumber: d.serial,
    name: d.name ?? null,
    model: d.model ?? null,
    createdAt: iso(d.created_at),
    sensorIds,
  };
  if (v >= 2) Object.assign(body, { attributes: d.attributes ?? {}, lastSeenAt: iso(lastSeen.get(String(d.serial)) ?? null), disabledAt: iso(d.disabled_at) });
  return body;
}

/** Per serial, when the device was last seen (v2; the dashboard's LAST_SEEN_SQL); absent if never. */
async function lastSeenOf(ctx: ApiContext, devices: BusinessRow[]): Promise<Map<string, Date>> {
  if (ctx.version < 2 || devices.length === 0) return new Map();
  const { rows } = await ctx.stores.db.query<{ serial: string; last_seen: Date | string | null }>(
    `SELECT d.serial, ${LAST_SEEN_SQL} AS last_seen FROM devices d WHERE d.tenant_id = $1 AND d.id = ANY($2::bigint[])`,
    [ctx.identity.tenant, devices.map((d) => String(d.id))],
  );
  return new Map(rows.filter((r) => r.last_seen !== null).map((r) => [r.serial, new Date(r.last_seen!)]));
}

export function sensorBody(v: ApiVersion, s: BusinessRow, serial: string, channel: number): Record<string, unknown> {
  const body: Record<string, unknown> = {
    sensorId: idOf(s.id),
    deviceId: serial,
    channel,
    position: s.position,
    kind: s.kind ?? null,
    quantities: s.quantities ?? [],
    start: iso(s.started_at),
    end: iso(s.ended_at),
  };
  if (v >= 2) body.active = s.ended_at === null || s.ended_at === undefined;
  return body;
}

/** Sensor ids per device id, for a page of devices: one statement. */
async function sensorIdsOf(db: SqlClient, tenant: string, deviceIds: readonly unknown[]): Promise<Map<string, Array<number | string>>> {
  const out = new Map<string, Array<number | string>>();
  if (deviceIds.length === 0) return out;
  const { rows } = await db.query<{ device_id: unknown; id: unknown }>(
    'SELECT device_id, id FROM sensors WHERE tenant_id = $1 AND device_id = ANY($2::bigint[]) ORDER BY device_id, id',
    [tenant, deviceIds.map(String)],
  );
  for (const r of rows) {
    const key = String(r.device_id);
    if (!out.has(key)) out.set(key, []);
    out.get(key)!.push(idOf(r.id));
  }
  return out;
}

/** Every row of a business list filtered by device (following the store's cursors). */
async function allOf(ctx: ApiContext, entity: 'channels' | 'sensors', deviceId: unknown): Promise<BusinessRow[]> {
  const rows: BusinessRow[] = [];
  let cursor: string | undefined;
  do {
    const p = await business(ctx).list(ctx.identity.tenant, entity, { filter: { device_id: String(deviceId) }, limit: BUSINESS_MAX, cursor });
    rows.push(...p.items);
    cursor = p.cursor;
  } while (cursor);
  return rows;
}

const listDevices: ApiOperation = {
  operationId: 'listDevices',
  method: 'get',
  path: '/devices',
  versions: [1, 2],
  action: 'read',
  summary: "Your organisation's devices",
  description: 'Paged in registration order; each device lists the ids of its sensor sinks.',
  tags: ['devices'],
  parameters: [...PAGE_PARAMS],
  responses: (v) => ({ 200: ok('A page of devices.', page(v === 1 ? DEVICE_V1 : DEVICE_V2)) }),
  async handle(ctx) {
    const result = await listRows(ctx, 'devices');
    const [ids, lastSeen] = await Promise.all([
      sensorIdsOf(
        ctx.stores.db,
        ctx.identity.tenant,
        result.items.map((d) => d.id),
      ),
      lastSeenOf(ctx, result.items),
    ]);
    const items = result.items.map((d) => deviceBody(ctx.version, d, ids.get(String(d.id)) ?? [], lastSeen));
    return pageBody(items, result.cursor);
  },
};

const getDevice: ApiOperation = {
  operationId: 'getDevice',
  method: 'get',
  path: '/devices/{serial}',
  versions: [1, 2],
  action: 'read',
  summary: 'One device with its channels and sensor sinks',
  description: 'Each channel lists its sensors; a restart of the device ends the open sinks (end set) and opens new ones.',
  tags: ['devices'],
  parameters: [SERIAL_PARAM],
  responses: (v) => ({ 200: ok('The device.', detailSchema(v)), 404: notFound }),
  async handle(ctx) {
    const device = await deviceBySerial(ctx);
    const [channels, sensors, lastSeen] = await Promise.all([allOf(ctx, 'channels', device.id), allOf(ctx, 'sensors', device.id), lastSeenOf(ctx, [device])]);
    const numberOf = new Map(channels.map((c) => [String(c.id), c.number as number]));
    const body = deviceBody(
      ctx.version,
      device,
      sensors.map((s) => idOf(s.id)),
      lastSeen,
    );
    body.channels = channels.map((c) => ({
      number: c.number,
      name: c.name ?? null,
      intervalSeconds: c.interval_s ?? null,
      sensors: sensors
        .filter((s) => String(s.channel_id) === String(c.id))
        .map((s) => sensorBody(ctx.version, s, device.serial as string, numberOf.get(String(s.channel_id))!)),
    }));
    return { body };
  },
};

const getSensor: ApiOperation = {
  operationId: 'getSensor',
  method: 'get',
  path: '/sensors/{sensorId}',
  versions: [1, 2],
  action: 'read',
  summary: 'One sensor sink',
  tags: ['devices'],
  parameters: [SENSOR_PARAM],
  responses: (v) => ({ 200: ok('The sensor sink.', sensorSchema(v)), 404: { description: 'No sensor with this id in your organisation.' } }),
  async handle(ctx) {
    const { sensor, device } = await sensorById(ctx);
    const channel = await viaStore(() => business(ctx).read(ctx.identity.tenant, 'channels', sensor.channel_id as number));
    return { body: sensorBody(ctx.version, sensor, device.serial as string, channel.number as number) };
  },
};

export const DEVICE_OPERATIONS: ApiOperation[] = [listDevices, getDevice, getSensor];
