/**
 * conflux-gateway: the device registry (from the business store), the live sessions, the UDP
 * tokens, and the limits (frame size, idle timeout, sessions, per-tenant rate) that every device
 * listener naming it applies. Each device authenticates with its own keys (device_keys).
 */
import type { NodeAPI, NodeDef } from 'node-red';
import { createDeviceDirectory, type DeviceDirectory } from '../core/devices/directory';
import { provisionDemoDevice } from '../core/devices/provision';
import { RateLimiter } from '../core/devices/rate-limit';
import { SessionRegistry } from '../core/devices/sessions';
import { UdpTokens } from '../core/devices/udp-tokens';
import type { GatewayConfigNode, GatewayLimits, PostgresConfigNode } from '../shared/config-nodes';
import { boolField, intField } from '../shared/fields';
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
}

export = function register(RED: NodeAPI): void {
  function GatewayNode(this: GatewayConfigNode, def: GatewayDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const limits: GatewayLimits = {
      maxFrameBytes: intField(def.maxFrameBytes, 65_536, 64, 16 * 1024 * 1024),
      idleTimeoutMs: intField(def.idleTimeout, 120, 1, 86_400) * 1000,
      maxSessions: intField(def.maxSessions, 10_000, 1, 1_000_000),
      ratePerTenant: intField(def.ratePerTenant, 0, 0, 1_000_000),
      udpTokenTtlMs: intField(def.udpTokenTtl, 300, 1, 86_400) * 1000,
    };
    const database = def.database ? (RED.nodes.getNode(def.database) as PostgresConfigNode | null) : null;
    const connection = new StatusFanout();
    let directory: Promise<DeviceDirectory> | undefined;
    Object.assign(node, {
      database,
      limits,
      connection,
      sessions: new SessionRegistry(limits.maxSessions),
      rate: new RateLimiter(limits.ratePerTenant),
      tokens: new UdpTokens(limits.udpTokenTtlMs),
    });
    node.directory = () => {
      if (!database) return Promise.reject(new Error('the gateway names no conflux-postgres database'));
      directory ??= database.sql().then(async (sql) => {
        if (boolField(def.demoDevice)) {
          const demo = await provisionDemoDevice(sql);
          if (demo) node.log(`created the demo device ${demo.serial}; its key, shown only this once: ${demo.key}`);
        }
        return createDeviceDirectory(sql);
      });
      directory.catch(() => (directory = undefined)); // try again on the next connection
      return directory;
    };
    // With the demo device on, open at once: its key is logged at start, before any device connects.
    if (database && boolField(def.demoDevice)) node.directory().catch((err: Error) => node.warn(`device registry: ${err.message}`));
    const sweep = setInterval(() => node.tokens.sweep(), 60_000);
    sweep.unref();
    node.on('close', (_removed: boolean, done: () => void) => {
      clearInterval(sweep);
      connection
        .drained()
        .then(() => node.sessions.closeAll('the gateway is stopping'))
        .finally(done);
    });
  }
  RED.nodes.registerType('conflux-gateway', GatewayNode);
};
