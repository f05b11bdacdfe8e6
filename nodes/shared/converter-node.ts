/**
 * The Node-RED side of every converter node: input handling, one done() per message, a status
 * that counts without flooding the editor, and a close that frees the status timer.
 */
import type { Node } from 'node-red';
import { convert, type Converter, type ConvertibleMessage, type Mode } from '../core/convert/converter';
import type { Translate } from './i18n';
import { throttledStatus } from './status-fanout';

/**
 * Wires a converter to a node. The converter is made here so that a configuration error (a bad
 * JSONata expression, a bad attribute map) shows on the node at deploy and fails each message
 * to the Catch node, instead of throwing out of the constructor.
 */
export function bindConverter(node: Node, t: Translate, make: () => Converter, mode: Mode): void {
  let converter: Converter;
  try {
    converter = make();
  } catch (err) {
    const reason = `invalid configuration: ${(err as Error).message}`;
    node.error(reason);
    node.status({ fill: 'red', shape: 'ring', text: t('conflux.status.invalidConfig', { reason: (err as Error).message }).slice(0, 120) });
    node.on('input', (_msg, _send, done) => done(new Error(reason)));
    return;
  }
  let decoded = 0;
  let encoded = 0;
  let failed = 0;
  let lastError = '';
  const status = throttledStatus(node, () => {
    const counts = t('conflux.status.converted', { decoded, encoded });
    if (failed > 0) return { fill: 'red', shape: 'ring', text: `${counts}, ${t('conflux.status.rejected', { n: failed, reason: lastError })}`.slice(0, 120) };
    return { fill: 'green', shape: 'dot', text: counts };
  });

  node.on('input', (msg, send, done) => {
    convert(converter, msg as ConvertibleMessage, mode).then(
      (outcome) => {
        if (outcome.direction === 'decode') decoded++;
        else encoded++;
        status.soon();
        // Several payloads leave as several messages on the one output, in order.
        if (outcome.payloads) send([outcome.payloads.map((payload) => ({ ...msg, payload }))]);
        else send(msg);
        done();
      },
      (err: Error) => {
        failed++;
        lastError = err.message;
        status.soon();
        done(err);
      },
    );
  });

  node.on('close', () => {
    status.close();
    node.status({});
  });
}
