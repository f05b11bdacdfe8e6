/**
 * Every migration, in order. Migrations are TypeScript modules exporting their SQL, so tsc
 * carries them into dist/ with no build step. Never edit one that has shipped: add the next.
 */
import type { Migration } from '../migrate';
import * as m001 from './001_initial';
import * as m002 from './002_readings_keys';
import * as m003 from './003_device_commands';
import * as m004 from './004_readings_natural_key';
import * as m005 from './005_webhooks';
import * as m006 from './006_webhook_receipts';
import * as m007 from './007_api_usage';
import * as m008 from './008_schedules';
import * as m009 from './009_pull_sources';
import * as m010 from './010_federation';
import * as m011 from './011_ftp';
import * as m012 from './012_webhook_events';
import * as m013 from './013_shared_limits';
import * as m014 from './014_device_sessions';

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial', sql: m001.sql },
  { version: 2, name: 'readings_keys', sql: m002.sql },
  { version: 3, name: 'device_commands', sql: m003.sql },
  { version: 4, name: 'readings_natural_key', sql: m004.sql },
  { version: 5, name: 'webhooks', sql: m005.sql },
  { version: 6, name: 'webhook_receipts', sql: m006.sql },
  { version: 7, name: 'api_usage', sql: m007.sql },
  { version: 8, name: 'schedules', sql: m008.sql },
  { version: 9, name: 'pull_sources', sql: m009.sql },
  { version: 10, name: 'federation', sql: m010.sql },
  { version: 11, name: 'ftp', sql: m011.sql },
  { version: 12, name: 'webhook_events', sql: m012.sql },
  { version: 13, name: 'shared_limits', sql: m013.sql },
  { version: 14, name: 'device_sessions', sql: m014.sql },
];
