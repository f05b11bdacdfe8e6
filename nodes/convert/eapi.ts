import type { NodeAPI, Node, NodeDef } from 'node-red';
import { parseMode } from '../core/convert/converter';
import { eapiConverter } from '../core/convert/eapi';
import { bindConverter } from '../shared/converter-node';
import { translator } from '../shared/i18n';

interface EapiNodeDef extends NodeDef {
  mode?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function EapiNode(this: Node, config: EapiNodeDef) {
    RED.nodes.createNode(this, config);
    bindConverter(this, t, eapiConverter, parseMode(config.mode));
  }
  RED.nodes.registerType('conflux-eapi', EapiNode);
};
