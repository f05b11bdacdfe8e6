/**
 * The Node-RED side of every converter node: input handling, one done() per message, a status
 * that counts without flooding the editor, and a close that frees the status timer.
 */
import type { Node } from 'node-red';
import { convert, type Converter, type ConvertibleMessage, type Mode } from '../core/convert/converter';

/** Status updates are coalesced: a busy node would otherwise send one editor event per message. */
const STATUS_INTERVAL_MS = 500;

/**
 * Wires a converter to a node. The converter is made here so that a configuration error (a bad
 * JSONata expression, a bad attribute map) shows on the node at deploy and fails each message
 * to the Catch node, instead of throwing out of the constructor.
 */
export function bindConverter(node: Node, make: () => Converter, mode: Mode): void {
  let converter: Converter;
  try {
    converter = make();
  } catch (err) {
    const reason = `invalid configuration: ${(err as Error).message}`;
    node.error(reason);
    node.status({ fill: 'red', shape: 'ring', text: reason.slice(0, 120) });
    node.on('input', (_msg, _send, done) => done(new Error(reason)));
    return;
  }
  let decoded = 0;
  let encoded = 0;
  let failed = 0;
  let lastError = '';
  let timer: NodeJS.Timeout | undefined;

  const showStatus = () => {
    timer = undefined;
    const counts = `${decoded} decoded, ${encoded} encoded`;
    if (failed > 0) node.status({ fill: 'red', shape: 'ring', text: `${counts}, ${failed} rejected: ${lastError}`.slice(0, 120) });
    else node.status({ fill: 'green', shape: 'dot', text: counts });
  };
  const scheduleStatus = () => {
    if (!timer) timer = setTimeout(showStatus, STATUS_INTERVAL_MS);
  };

  node.on('input', (msg, send, done) => {
    convert(converter, msg as ConvertibleMessage, mode).then(
      (outcome) => {
        if (outcome.direction === 'decode') decoded++;
        else encoded++;
        scheduleStatus();
        // Several payloads leave as several messages on the one output, in order.
        if (outcome.payloads) send([outcome.payloads.map((payload) => ({ ...msg, payload }))]);
        else send(msg);
        done();
      },
      (err: Error) => {
        failed++;
        lastError = err.message;
        scheduleStatus();
        done(err);
      },
    );
  });

  node.on('close', () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    node.status({});
  });
}
