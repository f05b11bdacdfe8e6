/** The canonical message that travels between Conflux nodes (DESIGN.md, "The canonical message"). */
import type { ResolvedRecord } from './senml';

export type Transport = 'mqtt' | 'tcp' | 'udp' | 'http' | 'amqp' | 'xmpp' | 'ftp' | 'pull' | 'inject';

export interface DeviceRef {
  tenant: string;
  id: string;
}

export interface SourceInfo {
  transport: Transport | string;
  format: string;
  /** milliseconds since the epoch */
  receivedAt: number;
}

export interface CanonicalMessage {
  payload: ResolvedRecord[];
  device?: DeviceRef;
  source?: SourceInfo;
}

/** Record names follow `<deviceId>/<sensor>/<quantity>`; parts are joined, dropping empty ones. */
export function recordName(...parts: Array<string | number | undefined>): string {
  let name = '';
  for (const p of parts) {
    if (p === undefined || p === '') continue;
    name = name === '' ? String(p) : `${name}/${p}`;
  }
  return name;
}
