/**
 * conflux-udp-in: UDP telemetry from devices (docs/protocol-udp.md). Each datagram carries a
 * device's serial, a single-use token the device got over an authenticated session, and a
 * payload; what passes (nodes/core/protocol/udp-server.ts) leaves as the canonical message of
 * the token's device. Dropped datagrams are counted by reason in the status and reported to a
 * Catch node (at most a few per second: a flood of forged datagrams must not flood the flow).
 *
 * Backpressure: a reading counts as in flight from node.send until the flow has finished with it
 * (nodes/shared/completion.ts), or COMPLETE_TIMEOUT_MS; beyond Max in flight datagrams are
 * dropped as 'busy'. UDP acknowledges nothing, so a failure only reaches the Catch node.
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { DROP_REASONS, UdpServer, type UdpDropReason, type UdpRemote } from '../core/protocol/udp-server';
import { gatewayOf } from '../shared/config-user';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';
import { trackCompletion } from '../shared/completion';
import { intField, textField } from '../shared/fields';
import { boundedReporter } from '../shared/reporter';

interface UdpInDef extends NodeDef {
  gateway?: string;
  port?: string;
  host?: string;
  maxInFlight?: string;
}

const DEFAULT_UDP_PORT = 41234;
/** A reading the flow has not finished with by then no longer counts in flight. */
const COMPLETE_TIMEOUT_MS = 30_000;

/** The status catalog key of each drop reason. */
const LABEL: Record<UdpDropReason, string> = {
  oversized: 'udp-in.status.oversized',
  malformed: 'udp-in.status.malformed',
  replayed: 'udp-in.status.replayed',
  unknown: 'udp-in.status.unknownToken',
  foreign: 'udp-in.status.foreign',
  expired: 'udp-in.status.expired',
  'rate-limited': 'udp-in.status.rateLimited',
  busy: 'udp-in.status.busy',
  undecodable: 'udp-in.status.undecodable',
  unavailable: 'udp-in.status.unavailable',
};

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function UdpInNode(this: Node, def: UdpInDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const gateway = gatewayOf(RED, t, node, def.gateway);
    if (!gateway) return;
    const port = intField(def.port, DEFAULT_UDP_PORT, 0, 65_535);
    const host = textField(def.host);

    // In-flight readings, released when the flow has finished with them.
    const completion = trackCompletion(RED, node, COMPLETE_TIMEOUT_MS);

    const reportToCatch = boundedReporter(node);
    function report(reason: UdpDropReason, remote: UdpRemote, detail: string): void {
      reportToCatch(`datagram from ${remote.address}:${remote.port} dropped (${reason}): ${detail}`, { payload: detail, reason, remote });
    }

    let listening = '';
    const status = throttledStatus(node, () => {
      const { accepted, dropped } = server.stats();
      const drops = DROP_REASONS.filter((r) => dropped[r] > 0).map((r) => t(LABEL[r], { n: dropped[r] }));
      if (accepted === 0 && drops.length === 0) return { fill: 'green', shape: 'ring', text: t('conflux.status.listening', { address: listening }) };
      return { fill: 'green', shape: 'dot', text: [t('conflux.status.accepted', { n: accepted }), ...drops].join(', ') };
    });

    const server = new UdpServer({
      port,
      host: host || undefined,
      limits: gateway.limits,
      tokens: gateway.tokens,
      rate: gateway.rate,
      maxInFlight: intField(def.maxInFlight, 10_000, 1, 1_000_000),
      onReadings: (msg) => {
        status.soon();
        return completion.send(msg);
      },
      onRejected: (reason, remote, detail) => {
        status.soon();
        report(reason, remote, detail);
      },
      onError: (err) => node.error(`conflux-udp-in: socket error: ${err.message}`),
    });

    node.status({ fill: 'grey', shape: 'ring', text: 'conflux.status.starting' });
    let closed = false;
    server.listen().then(
      (addr) => {
        listening = `${addr.address}:${addr.port}`;
        if (!closed) status.now();
      },
      (err: Error & { code?: string }) => {
        const where = `${host || '*'}:${port}`;
        node.status({ fill: 'red', shape: 'ring', text: err.code === 'EADDRINUSE' ? t('conflux.status.portInUse', { port }) : err.message.slice(0, 100) });
        node.error(`conflux-udp-in: cannot listen on ${where}: ${err.message}`);
      },
    );

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      status.close();
      completion.close();
      server.close().finally(() => {
        node.status({});
        done();
      });
    });
  }
  RED.nodes.registerType('conflux-udp-in', UdpInNode);
};
