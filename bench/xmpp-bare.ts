/**
 * The baseline side of `npm run bench -- xmpp`, in a child process: started with
 * NODE_EXTRA_CA_CERTS (the test CA), since the bare @xmpp/client takes no CA and upgrades to
 * STARTTLS whenever the server offers it. Two bare clients: carol sends one Sen1 stanza with a
 * receipt request and waits for the receipt before the next; bob (resource bench-bare, addressed by
 * its full JID) answers each at once. Reads `<round> <n>` lines on stdin, answers `<messages/s>`.
 */
import * as readline from 'node:readline';
import { encodeSen1 } from '../nodes/core/codecs/sen1';

const [host, port, domain, password] = process.argv.slice(2);
const importEsm = new Function('s', 'return import(s)') as (s: string) => Promise<any>;
const T0 = 1_790_000_000;

async function main(): Promise<void> {
  const { client, xml } = await importEsm('@xmpp/client');
  const bare = (user: string) => {
    const c = client({ service: `xmpp://${host}:${port}`, domain, username: user, password, resource: 'bench-bare' });
    c.on('error', () => undefined);
    return c;
  };
  const sender = bare('carol');
  const receiver = bare('bob');
  receiver.on('stanza', (s: any) => {
    if (s.is('message') && s.getChild('request', 'urn:xmpp:receipts'))
      void receiver.send(xml('message', { to: s.attrs.from, id: `r-${s.attrs.id}` }, xml('received', { xmlns: 'urn:xmpp:receipts', id: s.attrs.id })));
  });
  const waiting = new Map<string, () => void>();
  sender.on('stanza', (s: any) => {
    const id = s.getChild('received', 'urn:xmpp:receipts')?.attrs.id;
    if (id) waiting.get(id)?.();
  });
  await Promise.all([sender.start(), receiver.start()]);
  // BENCH_XMPP_NODELAY=1: Nagle off on both sockets, which @xmpp/client leaves on (a measurement aid).
  if (process.env.BENCH_XMPP_NODELAY === '1') for (const c of [sender, receiver]) c.socket?.socket?.setNoDelay?.(true);
  console.log('ready');
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const [round, n] = line.split(' ').map(Number);
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const id = `s${round}-${i}`;
      const [body] = encodeSen1([{ n: 'bench/temperature', t: T0 + round * 1_000_000 + i, u: 'Cel', v: 20 + (i % 100) / 10 }], { username: 'bench' });
      const acked = new Promise<void>((resolve) => waiting.set(id, resolve));
      await sender.send(
        xml('message', { to: `bob@${domain}/bench-bare`, id, type: 'normal' }, xml('body', {}, body), xml('request', { xmlns: 'urn:xmpp:receipts' })),
      );
      await acked;
      waiting.delete(id);
    }
    console.log(String(n / ((performance.now() - start) / 1000)));
  }
  await Promise.all([sender.stop().catch(() => undefined), receiver.stop().catch(() => undefined)]);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
