import type { NodeAPI, Node, NodeDef } from 'node-red';
import { parseMode } from '../core/convert/converter';
import { mapConverter } from '../core/convert/map';
import { bindConverter } from '../shared/converter-node';
import { translator } from '../shared/i18n';

interface MapNodeDef extends NodeDef {
  mode?: string;
  expression?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function MapNode(this: Node, config: MapNodeDef) {
    RED.nodes.createNode(this, config);
    bindConverter(this, t, () => mapConverter(config.expression ?? ''), parseMode(config.mode));
  }
  RED.nodes.registerType('conflux-map', MapNode);
};
