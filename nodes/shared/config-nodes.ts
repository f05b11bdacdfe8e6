/** What the storage config nodes offer the nodes that use them. */
import type { Client } from '@elastic/elasticsearch';
import type { Node } from 'node-red';
import type { CopyFrom } from '../core/db/copy';
import type { SqlClient } from '../core/db/sql';
import type { DeviceDirectory } from '../core/devices/directory';
import type { RateLimiter } from '../core/devices/rate-limit';
import type { SessionRegistry } from '../core/devices/sessions';
import type { UdpTokens } from '../core/devices/udp-tokens';
import type { ShortTermStore } from '../core/stores/types';
import type { StatusFanout } from './status-fanout';

export interface PostgresCredentials {
  user?: string;
  password?: string;
}

export interface PostgresConfigNode extends Node<PostgresCredentials> {
  /** The migrated database; rejects with the reason when it cannot be opened (tried again on the next call). */
  sql(): Promise<SqlClient>;
  /** COPY into the same database, for bulk writes; undefined on PGlite. */
  copyFrom(): Promise<CopyFrom | undefined>;
  readonly embedded: boolean;
  readonly connection: StatusFanout;
}

export interface RedisCredentials {
  username?: string;
  password?: string;
}

export interface RedisConfigNode extends Node<RedisCredentials> {
  /** Absent when the configuration is invalid: `problem` says why. */
  readonly store?: ShortTermStore;
  readonly problem?: string;
  readonly connection: StatusFanout;
}

export interface ElasticCredentials {
  apiKey?: string;
  username?: string;
  password?: string;
}

export interface ElasticConfigNode extends Node<ElasticCredentials> {
  /** The client; throws with the reason when the configuration names no node. */
  client(): Client;
  /** Whether any node URL is configured. */
  readonly configured: boolean;
  readonly indexPrefix: string;
  readonly connection: StatusFanout;
}

/** The device gateway: who the devices are, who is online, and the limits every listener applies. */
export interface GatewayLimits {
  /** Largest frame, datagram or body accepted, in bytes. */
  maxFrameBytes: number;
  /** A session silent this long is closed. */
  idleTimeoutMs: number;
  maxSessions: number;
  /** Readings-carrying messages per second per tenant; 0: unlimited. */
  ratePerTenant: number;
  /** Lifetime of a UDP token. */
  udpTokenTtlMs: number;
}

export interface GatewayConfigNode extends Node {
  readonly database: PostgresConfigNode;
  directory(): Promise<DeviceDirectory>;
  readonly limits: GatewayLimits;
  readonly sessions: SessionRegistry;
  readonly rate: RateLimiter;
  readonly tokens: UdpTokens;
  readonly connection: StatusFanout;
}
