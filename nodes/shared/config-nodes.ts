/** What the storage config nodes offer the nodes that use them. */
import type { Client } from '@elastic/elasticsearch';
import type { Node } from 'node-red';
import type { AmqpConnection } from '../core/amqp/connection';
import type { XmppConnection } from '../core/xmpp/connection';
import type { Copier } from '../core/db/copy';
import type { SqlClient } from '../core/db/sql';
import type { CommandRouter } from '../core/devices/commands';
import type { DeviceDirectory, DeviceIdentity } from '../core/devices/directory';
import type { RequestForwarder } from '../core/devices/requests';
import type { Session, SessionRegistry } from '../core/devices/sessions';
import type { TenantRateLimiter } from '../core/devices/tenant-rate';
import type { UdpTokens } from '../core/devices/udp-tokens';
import type { FtpTarget } from '../core/ftp/targets';
import type { RetryPolicy } from '../core/mailbox/backoff';
import type { ShortTermStore } from '../core/stores/types';
import type { NotConfigured } from './not-configured';
import type { StatusFanout } from './status-fanout';

export interface PostgresCredentials {
  user?: string;
  password?: string;
}

export interface PostgresConfigNode extends Node<PostgresCredentials> {
  /** The migrated database; rejects with the reason when it cannot be opened (tried again on the next call). */
  sql(): Promise<SqlClient>;
  /** COPY into the same database, for bulk writes; undefined on PGlite. */
  copier(): Promise<Copier | undefined>;
  readonly embedded: boolean;
  /**
   * Names the database itself: equal for two config nodes only when they open the same one (the
   * embedded PGlite under one directory); else the config node's id. msg.rolledUp carries it.
   */
  readonly identity: string;
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
  /** The per-tenant rate and the UDP tokens, kept in `database` and so shared by every instance on it. */
  readonly rate: TenantRateLimiter;
  readonly tokens: UdpTokens;
  readonly connection: StatusFanout;
  /** Commands to devices (central → device): live, or queued for offline devices. */
  readonly commands: CommandRouter;
  /** Devices' requests forwarded to the central system (device → central). */
  readonly requests: RequestForwarder;
  /**
   * A command result or a request from a device's session, from any listener: resolves once
   * handled; rejects with the reason the device should get (no command waits for that id, no
   * central system configured…).
   */
  deviceMessage(event: GatewayDeviceMessage): Promise<void>;
}

/** A COMMAND_RESULT or REQUEST (TCP) as the gateway routes it. */
export interface GatewayDeviceMessage {
  kind: 'command-result' | 'request';
  device: DeviceIdentity;
  body: Record<string, unknown> & { id: string };
  session: Session;
  transport: string;
}

export interface WebhooksSettings {
  allowPrivate: boolean;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  concurrency: number;
  failureThreshold: number;
  openMs: number;
  retry: RetryPolicy;
  capacity: number;
}

export interface WebhooksConfigNode extends Node {
  /** The conflux-postgres node's id. */
  readonly database: string;
  readonly settings: WebhooksSettings;
  /** Set when the configuration is unusable (a bad schedule). */
  readonly problem?: string;
}

export interface AmqpCredentials {
  user?: string;
  password?: string;
}

/** conflux-amqp: one self-healing connection (nodes/core/amqp/connection.ts) shared by its users. */
export interface AmqpConfigNode extends Node<AmqpCredentials> {
  /** Absent when the configuration is invalid: `problem` says why. */
  readonly amqp?: AmqpConnection;
  readonly problem?: string;
  /** Set when a server field is empty (an unset CONFLUX_* variable): what to set. */
  readonly notConfigured?: NotConfigured;
  readonly connection: StatusFanout;
}

export interface FtpCredentials {
  user?: string;
  password?: string;
}

/** conflux-ftp: one FTP/FTPS target (nodes/core/ftp/targets.ts) for the conflux-ftp-out nodes that name it. */
export interface FtpConfigNode extends Node<FtpCredentials> {
  /** Absent when the configuration is invalid: `problem` says why. */
  readonly target?: FtpTarget;
  readonly problem?: string;
  /** Set when a server field is empty (an unset CONFLUX_* variable): what to set. */
  readonly notConfigured?: NotConfigured;
}

export interface XmppCredentials {
  password?: string;
}

/** conflux-xmpp: one self-healing XMPP client connection (nodes/core/xmpp/connection.ts) shared by its users. */
export interface XmppConfigNode extends Node<XmppCredentials> {
  /** Absent when the configuration is invalid: `problem` says why. */
  readonly xmpp?: XmppConnection;
  readonly problem?: string;
  /** Set when a server field is empty (an unset CONFLUX_* variable): what to set. */
  readonly notConfigured?: NotConfigured;
  readonly connection: StatusFanout;
}
