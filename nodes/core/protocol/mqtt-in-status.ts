/**
 * What conflux-mqtt-in's status shows: in broker mode where it listens, its devices and counts; in
 * client mode the connection's state and counts. Framework-free: `t` is the node's catalog.
 */
import type { ClientState } from './mqtt-client';

export type Translate = (key: string, subs?: Record<string, string | number>) => string;

export interface DotStatus {
  fill: 'red' | 'green' | 'yellow';
  shape: 'ring' | 'dot';
  text: string;
}

/** Readings handed on, refused, and waiting for room in the flow. */
export interface Counts {
  accepted: number;
  refused: number;
  waiting: number;
}

/** The status catalog key of each client state. */
const STATE: Record<ClientState, string> = {
  connecting: 'mqtt-in.status.connecting',
  connected: 'mqtt-in.status.connected',
  reconnecting: 'mqtt-in.status.reconnecting',
  disconnected: 'mqtt-in.status.disconnected',
  closed: 'mqtt-in.status.closed',
};

function counts(t: Translate, c: Counts): string {
  const parts = [t('mqtt-in.status.readings', { n: c.accepted })];
  if (c.refused > 0) parts.push(t('conflux.status.refused', { n: c.refused }));
  if (c.waiting > 0) parts.push(t('conflux.status.waiting', { n: c.waiting }));
  return parts.join(', ');
}

/** The embedded broker: `listening` is host:port once it listens, '' before. */
export function brokerStatus(t: Translate, listening: string, tls: boolean, sessions: number, c: Counts): DotStatus {
  return {
    fill: c.waiting > 0 ? 'yellow' : 'green',
    shape: sessions > 0 ? 'dot' : 'ring',
    text: `${listening}${tls ? ' (TLS)' : ''}: ${t(sessions === 1 ? 'mqtt-in.status.device' : 'mqtt-in.status.devices', { n: sessions })}, ${counts(t, c)}`,
  };
}

/** A client of an external broker; `detail` says why it is not connected, if known. */
export function clientStatus(t: Translate, state: ClientState, detail: string, c: Counts): DotStatus {
  const fill = state === 'connected' ? (c.waiting > 0 ? 'yellow' : 'green') : state === 'connecting' || state === 'reconnecting' ? 'yellow' : 'red';
  return {
    fill,
    shape: state === 'connected' ? 'dot' : 'ring',
    text: `${t(STATE[state])}${detail ? ` (${detail})` : ''}, ${counts(t, c)}`.slice(0, 120),
  };
}
