/**
 * The one throttled status every counting node uses: a burst of events shows one status with the
 * latest counts, not one editor event per message; nothing is shown after close.
 */
import { strict as assert } from 'node:assert';
import type { Node, NodeStatus } from 'node-red';
import { throttledStatus } from '../../nodes/shared/status-fanout';

/** A node that records its statuses and tells when the next one is shown. */
function recordingNode(): { node: Node; shown: NodeStatus[]; next: () => Promise<NodeStatus> } {
  const shown: NodeStatus[] = [];
  const waiting: ((s: NodeStatus) => void)[] = [];
  const node = {
    status(s: NodeStatus) {
      shown.push(s);
      for (const resolve of waiting.splice(0)) resolve(s);
    },
  } as unknown as Node;
  return { node, shown, next: () => new Promise((resolve) => waiting.push(resolve)) };
}

describe('throttledStatus', () => {
  it('shows one status for a burst of events, with the count at the time it is shown', async () => {
    const { node, shown, next } = recordingNode();
    let count = 0;
    const status = throttledStatus(node, () => ({ fill: 'green', shape: 'dot', text: `${count} stored` }), 20);
    const first = next();
    for (let i = 0; i < 1000; i++) {
      count++;
      status.soon();
    }
    assert.deepEqual(await first, { fill: 'green', shape: 'dot', text: '1000 stored' });
    assert.equal(shown.length, 1);
    count++;
    status.soon();
    assert.equal((await next()).text, '1001 stored');
    status.close();
  });

  it('shows at once with now(), and leaves the status alone when compute gives nothing', async () => {
    const { node, shown } = recordingNode();
    let text: string | undefined = 'listening on 127.0.0.1:7100';
    const status = throttledStatus(node, () => (text ? { fill: 'green', shape: 'ring', text } : undefined));
    status.now();
    text = undefined;
    status.now();
    assert.deepEqual(
      shown.map((s) => s.text),
      ['listening on 127.0.0.1:7100'],
    );
    status.close();
  });

  it('shows nothing after close, even when an update was due', async () => {
    const { node, shown } = recordingNode();
    const closing = throttledStatus(node, () => ({ text: 'late' }), 20);
    closing.soon();
    closing.close();
    // A second throttle with the same interval, scheduled later: once it has shown, the first would have.
    const other = recordingNode();
    const after = other.next();
    throttledStatus(other.node, () => ({ text: 'later' }), 20).soon();
    await after;
    assert.deepEqual(shown, []);
    closing.soon();
    closing.now();
    assert.deepEqual(shown, []);
  });
});
