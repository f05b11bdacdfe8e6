/**
 * TLS options from Node-RED's core `tls-config` node: for a client as it gives them, or for a
 * server (no servername; client certificates required only when asked).
 */
import type * as tls from 'node:tls';
import type { Node, NodeAPI } from 'node-red';

export type TlsOptions = tls.TlsOptions & Record<string, unknown>;

interface TlsConfigNode extends Node {
  valid?: boolean;
  addTLSOptions(opts: TlsOptions): TlsOptions;
}

export interface TlsConfig {
  /** Whether a tls-config node is chosen. */
  readonly chosen: boolean;
  /** Options for a client; undefined when none is chosen; throws when the chosen one is invalid. */
  client(): TlsOptions | undefined;
  /** Options for a server, asking for (and requiring) a client certificate when requireClientCert. */
  server(requireClientCert: boolean): TlsOptions | undefined;
}

export function tlsConfigOf(RED: NodeAPI, id: string | undefined): TlsConfig {
  const node = id ? (RED.nodes.getNode(id) as TlsConfigNode | null) : null;
  const client = (): TlsOptions | undefined => {
    if (!node) return undefined;
    if (node.valid === false) throw new Error('the TLS configuration is not valid (certificate or key missing)');
    return node.addTLSOptions({});
  };
  return {
    chosen: node !== null,
    client,
    server(requireClientCert) {
      const opts = client();
      if (!opts) return undefined;
      delete opts.servername;
      opts.requestCert = requireClientCert;
      opts.rejectUnauthorized = requireClientCert;
      return opts;
    },
  };
}
