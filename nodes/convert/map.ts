import type { NodeAPI, Node, NodeDef } from 'node-red';
import { parseMode } from '../core/convert/converter';
import { mapConverter } from '../core/convert/map';
import { bindConverter } from '../shared/converter-node';

interface MapNodeDef extends NodeDef {
  mode?: string;
  expression?: string;
}

export = function register(RED: NodeAPI): void {
  function MapNode(this: Node, config: MapNodeDef) {
    RED.nodes.createNode(this, config);
    bindConverter(this, () => mapConverter(config.expression ?? ''), parseMode(config.mode));
  }
  RED.nodes.registerType('conflux-map', MapNode);
};
