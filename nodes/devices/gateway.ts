/**
 * conflux-gateway: the device registry (from the business store), the live sessions, the UDP
 * tokens, and the limits (frame size, idle timeout, sessions, per-tenant rate) that every device
 * listener naming it applies. Each device authenticates with its own keys (device_keys). The UDP
 * tokens and the per-tenant rate live in the database, shared by every instance running the same
 * flows on it (docs/operations.md, "Several instances").
 */
import type { NodeAPI, NodeDef } from 'node-red';
import { GatewayCluster } from '../core/devices/cluster';
import { CommandRouter } from '../core/devices/commands';
import { createDeviceDirectory, type DeviceDirectory } from '../core/devices/directory';
import { ownOpenFilesLimit, sessionFilesWarning } from '../core/devices/open-files';
import { provisionDemoDevice } from '../core/devices/provision';
import { RequestForwarder } from '../core/devices/requests';
import { SessionRegistry } from '../core/devices/sessions';
import { TenantRateLimiter } from '../core/devices/tenant-rate';
import { UdpTokens } from '../core/devices/udp-tokens';
import type { PlatformEvent } from '../core/events/event';
import type { GatewayConfigNode, GatewayDeviceMessage, GatewayLimits, PostgresConfigNode } from '../shared/config-nodes';
import { boolField, intField, textField } from '../shared/fields';
import { publishEvent } from '../shared/event-hub';
import { StatusFanout } from '../shared/status-fanout';

interface GatewayDef extends NodeDef {
  database?: string;
  maxFrameBytes?: string;
  idleTimeout?: string;
  maxSessions?: string;
  ratePerTenant?: string;
  udpTokenTtl?: string;
  /** Create demo-0001 with a random key (logged once) when the database holds no device. */
  demoDevice?: boolean | string;
  /** The central system's webhook URL for devices' requests (${VAR} allowed). */
  centralUrl?: string;
  /** Seconds to wait for the central system. */
  centralTimeout?: string;
  /** Allow a loopback or private central system address. */
  allowPrivateCentral?: boolean | string;
  /** Commands waiting per offline device, at most. */
  maxQueuedCommands?: string;
}

interface GatewayCredentials {
  centralApiKey?: string;
}

export = function register(RED: NodeAPI): void {
  function GatewayNode(this: GatewayConfigNode & { credentials?: GatewayCredentials }, def: GatewayDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const limits: GatewayLimits = {
      maxFrameBytes: intField(def.maxFrameBytes, 65_536, 64, 16 * 1024 * 1024),
      idleTimeoutMs: intField(def.idleTimeout, 120, 1, 86_400) * 1000,
      maxSessions: intField(def.maxSessions, 10_000, 1, 1_000_000),
      ratePerTenant: intField(def.ratePerTenant, 0, 0, 1_000_000),
      udpTokenTtlMs: intField(def.udpTokenTtl, 300, 1, 86_400) * 1000,
    };
    // Past the open-files limit, devices would be cut off silently: say so now.
    const tooFewFiles = sessionFilesWarning(limits.maxSessions, ownOpenFilesLimit());
    if (tooFewFiles) node.warn(tooFewFiles);
    const database = def.database ? (RED.nodes.getNode(def.database) as PostgresConfigNode | null) : null;
    const connection = new StatusFanout();
    let directory: Promise<DeviceDirectory> | undefined;
    // The platform's device and command events go to the runtime's event hub (conflux-event nodes).
    const onEvent = (event: PlatformEvent) => publishEvent(RED, event);
    const sessions = new SessionRegistry(limits.maxSessions, { onEvent });
    const central = {
      url: textField(def.centralUrl),
      apiKey: node.credentials?.centralApiKey || undefined,
      timeoutMs: intField(def.centralTimeout, 10, 1, 3_600) * 1000,
      allowPrivate: boolField(def.allowPrivateCentral),
      maxReplyBytes: limits.maxFrameBytes,
    };
    const sql = () => (database ? database.sql() : Promise.reject(new Error('the gateway names no conflux-postgres database')));
    // Other instances on the same database reach this gateway's devices (docs/operations.md, "Several instances").
    const cluster = database ? new GatewayCluster({ sessions, sql, onError: (err) => node.warn(`commands across instances: ${err.message}`) }) : undefined;
    const commands = new CommandRouter({
      peers: cluster,
      sessions,
      sql,
      lookup: (serial) =>
        node
          .directory()
          .then((d) => d.credentials(serial))
          .then((c) => c?.device),
      maxQueuedPerDevice: intField(def.maxQueuedCommands, 100, 1, 100_000),
      onEvent,
    });
    const requests = new RequestForwarder(() => central);
    Object.assign(node, {
      database,
      limits,
      connection,
      sessions,
      // Keyed by this node's id: the same gateway on every instance shares one budget per tenant.
      rate: new TenantRateLimiter({ sql, scope: node.id, ratePerSecond: limits.ratePerTenant }),
      tokens: new UdpTokens(sql, { ttlMs: limits.udpTokenTtlMs }),
      commands,
      requests,
    });
    node.deviceMessage = async (event: GatewayDeviceMessage) => {
      if (event.kind === 'command-result') {
        if (!commands.result(event.device, event.body)) {
          throw new Error(`no command with id "${event.body.id}" waits for an answer from this device (answered too late?)`);
        }
      } else {
        await requests.forward(event.device, event.body, (answer) => event.session.send('response', answer));
      }
      if (node.listenerCount('device-message') > 0) node.emit('device-message', event);
    };
    node.directory = () => {
      if (!database) return Promise.reject(new Error('the gateway names no conflux-postgres database'));
      directory ??= database.sql().then(async (sql) => {
        if (boolField(def.demoDevice)) {
          const demo = await provisionDemoDevice(sql, onEvent);
          if (demo) node.log(`created the demo device ${demo.serial}; its key, shown only this once: ${demo.key}`);
        }
        return createDeviceDirectory(sql);
      });
      directory.catch(() => (directory = undefined)); // try again on the next connection
      return directory;
    };
    // With the demo device on, open at once: its key is logged at start, before any device connects.
    if (database && boolField(def.demoDevice)) node.directory().catch((err: Error) => node.warn(`device registry: ${err.message}`));
    // Each instance prunes; SKIP LOCKED shares the work. Without a database there is nothing to prune.
    const sweep = setInterval(() => {
      if (database) node.tokens.prune().catch((err: Error) => node.warn(`UDP tokens: cannot prune the expired ones: ${err.message}`));
    }, 60_000);
    sweep.unref();
    node.on('close', (_removed: boolean, done: () => void) => {
      clearInterval(sweep);
      commands.close();
      requests.close();
      const leaving = cluster?.close(); // this instance's rows leave the database: nothing is routed here any more
      connection
        .drained()
        .then(() => node.sessions.closeAll('the gateway is stopping'))
        .then(() => leaving)
        .finally(done);
    });
  }
  RED.nodes.registerType('conflux-gateway', GatewayNode, { credentials: { centralApiKey: { type: 'password' } } } as never);
};
