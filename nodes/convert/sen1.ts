import type { NodeAPI, Node, NodeDef } from 'node-red';
import { parseMode } from '../core/convert/converter';
import { parseSen1Type, sen1Converter } from '../core/convert/sen1';
import { bindConverter } from '../shared/converter-node';
import { translator } from '../shared/i18n';

interface Sen1NodeDef extends NodeDef {
  mode?: string;
  username?: string;
  applicationSrc?: string;
  applicationDst?: string;
  sen1type?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function Sen1Node(this: Node, config: Sen1NodeDef) {
    RED.nodes.createNode(this, config);
    const options = {
      username: config.username ?? '',
      applicationSrc: config.applicationSrc ?? '',
      applicationDst: config.applicationDst ?? '',
      type: parseSen1Type(config.sen1type),
    };
    bindConverter(this, t, () => sen1Converter(options), parseMode(config.mode));
  }
  RED.nodes.registerType('conflux-sen1', Sen1Node);
};
