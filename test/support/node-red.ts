/** node-red-node-test-helper set up once for every node test file. */
import * as path from 'node:path';
import helper = require('node-red-node-test-helper');

helper.init(require.resolve('node-red'));

/*
 * The helper builds its RED without `hooks`, which a running Node-RED gives every node (and
 * which conflux's listeners need to know when the flow has finished with a message). Supply the
 * runtime's own hooks object, the one its flows call, as Node-RED does: production code never
 * loads @node-red/util itself.
 */
const runtimeUtil = require(require.resolve('@node-red/util', { paths: [path.dirname(require.resolve('@node-red/runtime'))] })) as { hooks: unknown };
const registryUtil = (helper as unknown as { _registryUtil?: { init(runtime: Record<string, unknown>): unknown } })._registryUtil;
if (!registryUtil) throw new Error('node-red-node-test-helper no longer builds RED through @node-red/registry: give its RED hooks another way');
const initRegistry = registryUtil.init.bind(registryUtil);
registryUtil.init = (runtime) => {
  runtime.hooks = runtimeUtil.hooks;
  return initRegistry(runtime);
};

export { helper };

/** The core catch node, so tests can see what an integrator's Catch node would. */
export const catchNode = require('@node-red/nodes/core/common/25-catch.js');

/** Resolves with the next message that reaches the helper node with this id. */
export function nextMessage(id: string): Promise<Record<string, any>> {
  return new Promise((resolve) => helper.getNode(id).once('input', resolve));
}
