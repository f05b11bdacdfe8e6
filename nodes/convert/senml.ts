import type { NodeAPI, Node, NodeDef } from 'node-red';
import { parseMode } from '../core/convert/converter';
import { parseSenmlFormat, senmlConverter } from '../core/convert/senml';
import { bindConverter } from '../shared/converter-node';

interface SenmlNodeDef extends NodeDef {
  mode?: string;
  format?: string;
}

export = function register(RED: NodeAPI): void {
  function SenmlNode(this: Node, config: SenmlNodeDef) {
    RED.nodes.createNode(this, config);
    bindConverter(this, () => senmlConverter({ format: parseSenmlFormat(config.format) }), parseMode(config.mode));
  }
  RED.nodes.registerType('conflux-senml', SenmlNode);
};
