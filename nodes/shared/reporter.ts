/**
 * Refused input reported to the Catch node, bounded: a flood of bad frames or forged datagrams
 * must not flood the flow. Beyond the rate, reports are counted in the status only.
 */
import { randomBytes } from 'node:crypto';
import type { Node, NodeMessage } from 'node-red';
import { RateLimiter } from '../core/devices/rate-limit';

export function boundedReporter(node: Node, perSecond = 5, burst = 20): (text: string, msg: Record<string, unknown>) => void {
  const bucket = new RateLimiter(perSecond, burst);
  return (text, msg) => {
    if (bucket.take('reports')) node.error(text, { _msgid: randomBytes(8).toString('hex'), ...msg } as NodeMessage);
  };
}
