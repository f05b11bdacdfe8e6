/**
 * A UserApp's secret_ref resolved as the name of a Node-RED setting or environment variable (as
 * `${VAR}` in conflux-http-pull's fields): the secret stays out of the database and the flow.
 */
import type { Node, NodeAPI } from 'node-red';

export function secretLookup(RED: NodeAPI, node: Node): (ref: string) => string | undefined {
  return (ref) => {
    const name = ref.startsWith('env:') ? ref.slice(4) : ref;
    const v = (RED.util as unknown as { getSetting?(n: Node, name: string): unknown }).getSetting?.(node, name) ?? process.env[name];
    return v === undefined || v === null || v === '' ? undefined : String(v);
  };
}
