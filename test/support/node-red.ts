/** node-red-node-test-helper set up once for every node test file. */
import helper = require('node-red-node-test-helper');

helper.init(require.resolve('node-red'));

export { helper };

/** The core catch node, so tests can see what an integrator's Catch node would. */
export const catchNode = require('@node-red/nodes/core/common/25-catch.js');

/** Resolves with the next message that reaches the helper node with this id. */
export function nextMessage(id: string): Promise<Record<string, any>> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}
