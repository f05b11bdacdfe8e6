/**
 * Acknowledge after keeping, in a real Node-RED runtime: a listener's message is finished only
 * when every node it reached — through several hops, a legacy node without done(), link nodes —
 * has completed it, and failed when one calls done(err).
 */
import { strict as assert } from 'node:assert';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { helper } from '../support/node-red';
import { trackCompletion } from '../../nodes/shared/completion';
import { elapse, until } from '../support/wait';

const linkNodes = require('@node-red/nodes/core/common/60-link.js');

const outcomes: Array<Promise<void>> = [];
const held: Array<(err?: Error) => void> = [];

function testNodes(RED: NodeAPI): void {
  // The listener's side: each input is sent on through trackCompletion.
  RED.nodes.registerType('test-source', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const completion = trackCompletion(RED, this, 2_000);
    this.on('input', (msg) => void outcomes.push(completion.send({ payload: msg.payload })));
    this.on('close', () => completion.close());
  });
  // A tier node's shape: sends on once "stored", then completes.
  RED.nodes.registerType('test-store', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (msg, send, done) => setTimeout(() => (send(msg), done()), 5));
  });
  // A node written before done() existed: its handler takes only msg.
  RED.nodes.registerType('test-legacy', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (msg: NodeMessage) => this.send(msg));
  });
  RED.nodes.registerType('test-hold', function (this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    this.on('input', (_msg, _send, done) => void held.push(done));
  });
}

const flow = [
  { id: 'tab', type: 'tab' },
  { id: 'src', type: 'test-source', z: 'tab', wires: [['store', 'legacy']] },
  { id: 'store', type: 'test-store', z: 'tab', wires: [['link-out']] },
  { id: 'link-out', type: 'link out', z: 'tab', mode: 'link', links: ['link-in'], wires: [] },
  { id: 'link-in', type: 'link in', z: 'tab', links: [], wires: [['last']] },
  { id: 'last', type: 'test-hold', z: 'tab' },
  { id: 'legacy', type: 'test-legacy', z: 'tab', wires: [[]] },
];

async function state(p: Promise<void>): Promise<string> {
  let s = 'pending';
  p.then(
    () => (s = 'resolved'),
    (e: Error) => (s = `rejected: ${e.message}`),
  );
  await elapse(30); // a negative check: longer than test-store's own delay, so a pending promise stays pending
  return s;
}

async function heldCount(n: number): Promise<void> {
  await until(
    () => `${n} messages held (${held.length})`,
    () => held.length >= n,
  );
}

describe('acknowledge after keeping (trackCompletion in a runtime)', () => {
  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(async () => {
    for (const done of held.splice(0)) done();
    outcomes.length = 0;
    await helper.unload();
  });

  it('finishes when the last node, behind a store and a pair of link nodes, completes; not before', async () => {
    await helper.load([testNodes, linkNodes], flow as never);
    helper.getNode('src').receive({ payload: 1 });
    await heldCount(1);
    assert.equal(await state(outcomes[0]), 'pending', 'the last node still holds it');
    held.shift()!();
    assert.equal(await state(outcomes[0]), 'resolved');
  });

  it('fails with the reason when a node calls done(err); other messages are not affected', async () => {
    await helper.load([testNodes, linkNodes], flow as never);
    helper.getNode('src').receive({ payload: 1 });
    helper.getNode('src').receive({ payload: 2 });
    await heldCount(2);
    held.shift()!(new Error('the database is down'));
    held.shift()!();
    assert.equal(await state(outcomes[0]), 'rejected: the database is down');
    assert.equal(await state(outcomes[1]), 'resolved');
  });

  it('fails when the flow does not finish within the timeout', async () => {
    await helper.load([testNodes, linkNodes], flow as never);
    helper.getNode('src').receive({ payload: 1 });
    await assert.rejects(outcomes[0], /did not finish with the message within 2 s/);
  });
});
