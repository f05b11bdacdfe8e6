/**
 * The REST API's standard resources (docs/api-resources.md), as ApiOperations for the framework
 * in ../ to serve: devices and sensor sinks, seed 004's data sets, latest values and rollups,
 * the event catalogue, the caller's webhook subscriptions, FTP targets, the federation's
 * configuration and API keys.
 */
import type { ApiOperation } from '../operation';
import { API_KEY_OPERATIONS } from './api-keys';
import { DEVICE_OPERATIONS } from './devices';
import { EVENT_OPERATIONS } from './events';
import { FEDERATION_OPERATIONS } from './federation';
import { FTP_OPERATIONS } from './ftp-targets';
import { READING_OPERATIONS } from './readings';
import { TIER_OPERATIONS } from './tiers';
import { WEBHOOK_OPERATIONS } from './webhooks';

export const STANDARD_OPERATIONS: ApiOperation[] = [
  ...DEVICE_OPERATIONS,
  ...READING_OPERATIONS,
  ...TIER_OPERATIONS,
  ...EVENT_OPERATIONS,
  ...WEBHOOK_OPERATIONS,
  ...FTP_OPERATIONS,
  ...FEDERATION_OPERATIONS,
  ...API_KEY_OPERATIONS,
];

export { TEST_EVENT_TYPE } from './webhooks';
