/** The bounded batching writer every tier node puts in front of its store. */
import * as assert from 'node:assert/strict';
import { Batcher, QueueFullError } from '../../nodes/core/stores/batcher';
import { elapse } from '../support/wait';

function recorder(delayMs = 0) {
  const batches: number[][] = [];
  let release: (() => void) | undefined;
  return {
    batches,
    hold() {
      return new Promise<void>((resolve) => (release = resolve));
    },
    release: () => release?.(),
    write: async (items: number[]) => {
      batches.push(items);
      if (delayMs) await elapse(delayMs);
    },
  };
}

describe('Batcher', () => {
  it('writes what arrives in one tick as one batch when the delay is 0', async () => {
    const r = recorder();
    const b = new Batcher<number>({ maxBatch: 100, maxDelayMs: 0, maxPending: 1000, write: r.write });
    await Promise.all([b.add([1, 2]), b.add([3]), b.add([4, 5, 6])]);
    assert.deepEqual(r.batches, [[1, 2, 3, 4, 5, 6]]);
  });

  it('group commit: what arrives during a write goes in the next one, started as soon as the write ends, whatever the delay', async () => {
    const batches: number[][] = [];
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const b = new Batcher<number>({
      maxBatch: 100,
      maxDelayMs: 60_000,
      maxPending: 1000,
      write: async (items) => {
        batches.push(items);
        if (batches.length === 1) await gate;
      },
    });
    const first = b.add([1]);
    // An idle writer waits for company up to maxDelayMs: flush starts this first write now.
    void b.flush();
    const later = [b.add([2]), b.add([3, 4])];
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(batches, [[1]], 'one write at a time');
    open();
    await Promise.all([first, ...later]);
    assert.deepEqual(batches, [[1], [2, 3, 4]], 'the second write held everything that arrived meanwhile, without waiting 60 s');
  });

  it('cuts batches at maxBatch, in arrival order, one write at a time', async () => {
    let concurrent = 0;
    let most = 0;
    const batches: number[][] = [];
    const b = new Batcher<number>({
      maxBatch: 3,
      maxDelayMs: 50,
      maxPending: 1000,
      write: async (items) => {
        most = Math.max(most, ++concurrent);
        batches.push(items);
        await elapse(5);
        concurrent--;
      },
    });
    await b.add([1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(batches, [[1, 2, 3], [4, 5, 6], [7]]);
    assert.equal(most, 1);
  });

  it('waits up to maxDelayMs for a batch to fill', async () => {
    const r = recorder();
    const b = new Batcher<number>({ maxBatch: 10, maxDelayMs: 40, maxPending: 100, write: r.write });
    const done = b.add([1]);
    await elapse(15);
    assert.equal(r.batches.length, 0, 'written before the delay');
    await done;
    assert.deepEqual(r.batches, [[1]]);
  });

  it('refuses items beyond maxPending with QueueFullError, and takes them again once written', async () => {
    const r = recorder();
    const gate = r.hold();
    const b = new Batcher<number>({
      maxBatch: 2,
      maxDelayMs: 0,
      maxPending: 4,
      write: async (items) => {
        await r.write(items);
        await gate;
      },
    });
    const first = b.add([1, 2, 3, 4]);
    assert.equal(b.pending, 4);
    await assert.rejects(b.add([5]), QueueFullError);
    assert.equal(b.pending, 4, 'a refused add leaves nothing behind');
    r.release();
    await first;
    await b.add([5]);
    assert.deepEqual(r.batches, [[1, 2], [3, 4], [5]]);
  });

  it('fails only the callers whose items the store refused, with its reason', async () => {
    const b = new Batcher<string>({
      maxBatch: 10,
      maxDelayMs: 0,
      maxPending: 100,
      write: async (items) => items.flatMap((item, index) => (item === 'bad' ? [{ index, reason: 'mapping conflict' }] : [])),
    });
    const results = await Promise.allSettled([b.add(['a']), b.add(['b', 'bad']), b.add(['c'])]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.match(String((results[1] as PromiseRejectedResult).reason), /mapping conflict/);
  });

  it('fails every caller of a batch whose write throws, and goes on with the next batch', async () => {
    let calls = 0;
    const b = new Batcher<number>({
      maxBatch: 2,
      maxDelayMs: 0,
      maxPending: 100,
      write: async () => {
        if (++calls === 1) throw new Error('connection refused');
      },
    });
    const results = await Promise.allSettled([b.add([1]), b.add([2]), b.add([3])]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected', 'fulfilled'],
    );
  });

  it('close writes what is queued and refuses more', async () => {
    const r = recorder();
    const b = new Batcher<number>({ maxBatch: 100, maxDelayMs: 10_000, maxPending: 100, write: r.write });
    const pending = b.add([1, 2]);
    await b.close();
    await pending;
    assert.deepEqual(r.batches, [[1, 2]]);
    await assert.rejects(b.add([3]), /closed/);
  });
});
