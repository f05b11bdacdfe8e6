/**
 * One instance of `npm run bench -- scale`: a Node-RED runtime of its own (bench/runtime.ts) in
 * this child process, running the flow its parent sends. The core flow's function finds a
 * pg.Pool and node:crypto in global context, as an integrator would put them there in settings.js.
 *
 *   parent → child  { flow, poolUrl?, poolSize, globals }   then 'stop'
 *   child → parent  { ready: true } | { stopped: true } | { error }
 */
import * as crypto from 'node:crypto';

interface Start {
  flow: Array<Record<string, unknown>>;
  /** the core flow's pg.Pool; none for the Conflux flow */
  poolUrl?: string;
  poolSize: number;
  /** more for global context, e.g. the core flow's webhook secret */
  globals: Record<string, unknown>;
}

async function main(): Promise<void> {
  const start = await new Promise<Start>((resolve) => process.once('message', (m: Start) => resolve(m)));
  const pg = await import('pg');
  const { startRuntime } = await import('./runtime');
  const pool = start.poolUrl ? new pg.Pool({ connectionString: start.poolUrl, max: start.poolSize }) : undefined;
  pool?.on('error', () => undefined);
  const rt = await startRuntime(start.flow, { functionGlobalContext: { ...start.globals, pgPool: pool, crypto } });
  process.on('message', (m) => {
    if (m !== 'stop') return;
    void (async () => {
      await rt.stop();
      await pool?.end();
      process.send!({ stopped: true }, () => process.exit(0));
    })();
  });
  process.send!({ ready: true });
}

process.on('disconnect', () => process.exit(0)); // the bench went: go with it
main().catch((err: Error) => {
  process.send?.({ error: err.stack ?? String(err) });
  process.exitCode = 1;
});
