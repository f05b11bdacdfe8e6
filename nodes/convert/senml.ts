import type { NodeAPI, Node, NodeDef } from 'node-red';
import { parseMode } from '../core/convert/converter';
import { parseSenmlFormat, senmlConverter } from '../core/convert/senml';
import { bindConverter } from '../shared/converter-node';
import { translator } from '../shared/i18n';

interface SenmlNodeDef extends NodeDef {
  mode?: string;
  format?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function SenmlNode(this: Node, config: SenmlNodeDef) {
    RED.nodes.createNode(this, config);
    bindConverter(this, t, () => senmlConverter({ format: parseSenmlFormat(config.format) }), parseMode(config.mode));
  }
  RED.nodes.registerType('conflux-senml', SenmlNode);
};
