/**
 * The Node-RED side of every converter node: input handling, one done() per message, a status
 * that counts without flooding the editor, and a close that frees the status timer.
 */
import type { Node } from 'node-red';
import { convert, type Converter, type ConvertibleMessage, type Mode } from '../core/convert/converter';

/** Status updates are coalesced: a busy node would otherwise send one editor event per message. */
const STATUS_INTERVAL_MS = 500;

export function bindConverter(node: Node, converter: Converter, mode: Mode): void {
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
        send(msg);
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
