import type { NodeAPI, Node, NodeDef } from 'node-red';
import { parseMode } from '../core/convert/converter';
import { parseUlMap, ultralightConverter } from '../core/convert/ultralight';
import { bindConverter } from '../shared/converter-node';
import { translator } from '../shared/i18n';

interface UltralightNodeDef extends NodeDef {
  mode?: string;
  deviceId?: string;
  map?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function UltralightNode(this: Node, config: UltralightNodeDef) {
    RED.nodes.createNode(this, config);
    bindConverter(this, t, () => ultralightConverter({ deviceId: config.deviceId ?? '', map: parseUlMap(config.map) }), parseMode(config.mode));
  }
  RED.nodes.registerType('conflux-ultralight', UltralightNode);
};
