/** `npm run bench -- <suite> ...`: runs the named benchmark suites (all when none is named). */
const suites: Record<string, () => Promise<boolean>> = {
  codecs: async () => (await import('./codecs')).run(),
  storage: async () => (await import('./storage')).run(),
  devices: async () => (await import('./devices')).run(),
  ack: async () => (await import('./ack')).run(),
  pipeline: async () => (await import('./pipeline')).run(),
  memory: async () => (await import('./memory')).run(),
  webhooks: async () => (await import('./webhooks')).run(),
  amqp: async () => (await import('./amqp')).run(),
  api: async () => (await import('./api')).run(),
  ftp: async () => (await import('./ftp')).run(),
  xmpp: async () => (await import('./xmpp')).run(),
  scale: async () => (await import('./scale')).run(),
};

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  const chosen = names.length ? names : Object.keys(suites);
  let ok = true;
  for (const name of chosen) {
    const suite = suites[name];
    if (!suite) throw new Error(`unknown benchmark suite "${name}"; known: ${Object.keys(suites).join(', ')}`);
    ok = (await suite()) && ok;
  }
  if (!ok) {
    console.error('\nA ratio fell below its floor.');
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
