/** When a flow has finished with a message: the ledger fed by Node-RED's hooks. */
import { strict as assert } from 'node:assert';
import { CompletionLedger, FlowFailure } from '../../nodes/core/flow/completion-ledger';

/** Whether the promise has settled, looked at after pending callbacks ran. */
async function settled(p: Promise<void>): Promise<'resolved' | 'rejected' | 'pending'> {
  let state: 'resolved' | 'rejected' | 'pending' = 'pending';
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  await new Promise((r) => setImmediate(r));
  return state;
}

describe('CompletionLedger', () => {
  it('finishes only when every node the message reached has completed it, however far down the wires', async () => {
    const l = new CompletionLedger();
    const p = l.track('m', 60_000);
    l.delivered('m', 'a'); // the listener sends to a and b
    l.delivered('m', 'b');
    l.sent('m');
    l.received('m', 'a');
    l.received('m', 'b');
    l.delivered('m', 'c'); // a sends on before it completes
    l.completed('m', 'a');
    l.completed('m', 'b');
    assert.equal(await settled(p), 'pending', 'c still holds it');
    l.received('m', 'c');
    l.completed('m', 'c');
    assert.equal(await settled(p), 'resolved');
    assert.equal(l.size, 0);
  });

  it('counts a node reached twice twice, and a node reached without a routed delivery (a link in) when it receives', async () => {
    const l = new CompletionLedger();
    const p = l.track('m', 60_000);
    l.delivered('m', 'x');
    l.delivered('m', 'x');
    l.sent('m');
    l.received('m', 'x');
    l.received('m', 'link-in'); // fired by a link out inside x's handler
    l.completed('m', 'x');
    l.received('m', 'x');
    l.completed('m', 'link-in');
    assert.equal(await settled(p), 'pending', 'x has one copy left');
    l.completed('m', 'x');
    assert.equal(await settled(p), 'resolved');
  });

  it('fails at the first node that completes it with an error, naming the reason and the node', async () => {
    const l = new CompletionLedger();
    const p = l.track('m', 60_000);
    l.delivered('m', 'store');
    l.sent('m');
    l.completed('m', 'store', new Error('connection refused\n    at Socket…'));
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof FlowFailure);
    assert.equal(err.message, 'connection refused', 'one line, no stack');
    assert.equal(err.nodeId, 'store');
    assert.equal(l.size, 0);
  });

  it('a message that reached no node is finished once sent; one the flow keeps too long fails with timedOut', async () => {
    const l = new CompletionLedger();
    const nothing = l.track('a', 60_000);
    l.sent('a');
    assert.equal(await settled(nothing), 'resolved');
    const slow = l.track('b', 20);
    l.delivered('b', 'never');
    l.sent('b');
    const err = await slow.then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof FlowFailure && err.timedOut, String(err));
    assert.match(err.message, /did not finish/);
  });

  it('ignores completions of messages and nodes it does not track; cancel and clear reject what is pending', async () => {
    const l = new CompletionLedger();
    l.completed('unknown', 'a');
    const p = l.track('m', 60_000);
    l.delivered('m', 'a');
    l.sent('m');
    l.completed('m', 'elsewhere');
    assert.equal(await settled(p), 'pending');
    const q = l.track('n', 60_000);
    await assert.rejects(l.track('n', 60_000), /already tracked/);
    l.cancel('m', 'the listener is stopping');
    await assert.rejects(p, /the listener is stopping/);
    l.clear('closing');
    await assert.rejects(q, /closing/);
    assert.equal(l.size, 0);
  });
});
