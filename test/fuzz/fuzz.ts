/**
 * What every fuzz target shares (docs/fuzz.md): the number of inputs and the seed (fixed in CI,
 * chosen for a longer run), running a fast-check property with them, the memory measured around
 * each run (after a full gc; `npm run fuzz` starts node with --expose-gc), a summary line per
 * target, and the checks an answer must pass (a reason, never a stack trace). Also a mocha
 * root-hook plugin (`--require dist/test/fuzz/fuzz.js`): the summary table after the last target.
 *
 *   CONFLUX_FUZZ_RUNS   inputs per target (default 10,000)
 *   CONFLUX_FUZZ_SEED   fast-check's seed (default 14)
 *   CONFLUX_FUZZ_PATH   with the seed, replays one failure: the `path` fast-check printed
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';

export const DEFAULT_RUNS = 10_000;
export const DEFAULT_SEED = 14;

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** Inputs per target. */
export const RUNS = intEnv('CONFLUX_FUZZ_RUNS', DEFAULT_RUNS);
export const SEED = intEnv('CONFLUX_FUZZ_SEED', DEFAULT_SEED);
const PATH = process.env.CONFLUX_FUZZ_PATH || undefined;

/**
 * Growth allowed between the warmed-up start and the end of a target's run, after a full gc: what
 * stays in bounded caches (credential caches, PGlite's pages) fits far
 * below it, while a leak of even 1 KiB per input over 10,000 inputs does not.
 */
export const HEAP_GROWTH_BOUND = 8 * 1024 * 1024;
/** RSS also counts PGlite's WebAssembly memory and freed pages the allocator keeps: a looser bound. */
export const RSS_GROWTH_BOUND = 96 * 1024 * 1024;

export interface TargetResult {
  target: string;
  inputs: number;
  ms: number;
  heapGrowth: number;
  rssGrowth: number;
  /** How the inputs were answered: outcome → count. */
  outcomes: Map<string, number>;
}

const results: TargetResult[] = [];

/** A mocha timeout for `runs` inputs at about `msPerInput` each, generous for a loaded machine. */
export function budget(msPerInput: number, runs = RUNS): number {
  return 120_000 + runs * msPerInput * 10;
}

async function settled(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, 'the fuzz run measures memory after a full gc: run it with node --expose-gc, as `npm run fuzz` does');
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage();
}

/** Counts outcomes of one target's inputs (what the summary shows). */
export class Outcomes {
  readonly counts = new Map<string, number>();

  add(outcome: string): void {
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
  }

  get total(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }
}

export interface FuzzRun<T> {
  target: string;
  arbitrary: fc.Arbitrary<T>;
  /** Checks one input's answer; throws (an assertion) when it is wrong. Records its outcome. */
  check(input: T, outcomes: Outcomes): void | Promise<void>;
  runs?: number;
  /** Inputs run before the first measurement, so that JIT code and caches are counted in the start. */
  warmup?: number;
}

/**
 * Runs `check` on `runs` generated inputs with the fixed seed, measuring the heap and RSS after a
 * gc once warmed up and again at the end; asserts the growth is within the bounds above. A
 * failure message carries fast-check's seed and path: docs/fuzz.md says how to replay it.
 */
export async function fuzz<T>(run: FuzzRun<T>): Promise<TargetResult> {
  const runs = run.runs ?? RUNS;
  const outcomes = new Outcomes();
  const warmup = Math.min(run.warmup ?? 500, runs);
  const params = (numRuns: number, seed: number): fc.Parameters<[T]> => ({
    numRuns,
    seed,
    ...(PATH ? { path: PATH, endOnFailure: true } : {}),
  });
  const property = fc.asyncProperty(run.arbitrary, async (input) => {
    await run.check(input, outcomes);
  });
  // The warm-up has its own seed, so that a replayed path (CONFLUX_FUZZ_PATH) names the main run's input.
  if (!PATH) await fc.assert(property, params(warmup, SEED + 1));
  const warmCounts = new Map(outcomes.counts);
  const before = await settled();
  const t0 = performance.now();
  await fc.assert(property, params(runs, SEED));
  const ms = performance.now() - t0;
  const after = await settled();
  for (const [k, v] of warmCounts) outcomes.counts.set(k, (outcomes.counts.get(k) ?? 0) - v);
  const result: TargetResult = {
    target: run.target,
    inputs: runs,
    ms,
    heapGrowth: after.heapUsed - before.heapUsed,
    rssGrowth: after.rss - before.rss,
    outcomes: outcomes.counts,
  };
  results.push(result);
  assert.ok(
    result.heapGrowth < HEAP_GROWTH_BOUND,
    `${run.target}: the heap grew by ${mib(result.heapGrowth)} over ${runs} inputs (bound ${mib(HEAP_GROWTH_BOUND)})`,
  );
  assert.ok(result.rssGrowth < RSS_GROWTH_BOUND, `${run.target}: RSS grew by ${mib(result.rssGrowth)} over ${runs} inputs (bound ${mib(RSS_GROWTH_BOUND)})`);
  return result;
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

// ─── Answers ───────────────────────────────────────────────────────────────────────────────

/** A stack frame ("    at fn (file.js:1:2)") or an internal error's name in text sent to a client. */
const LEAK = /\n\s+at\s|\bat\s+\S+\s+\(.*:\d+:\d+\)|\b(TypeError|RangeError|ReferenceError|SyntaxError: Unexpected token.*at position \d+\n)/;

/** Asserts a reason text is a reason: not empty, no stack trace, no internal error name. */
export function assertReason(text: string, what: string): void {
  assert.ok(text.trim().length > 0, `${what}: an empty reason`);
  assert.ok(!LEAK.test(text), `${what}: the reason leaks an internal error or stack: ${text.slice(0, 500)}`);
  assert.ok(!/internal error/i.test(text) || /operator/.test(text), `${what}: an internal error as the reason: ${text.slice(0, 500)}`);
}

export interface HttpLike {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}

/**
 * An HTTP answer a client can act on: 2xx, or 4xx (and the 503s of `allowed`) as
 * application/problem+json with a type, a title, the status and a detail; never a 500, never a
 * stack. Returns the outcome ("202", "400 invalid-body").
 */
export function assertHttpAnswer(r: HttpLike, what: string, allowed: readonly number[] = []): string {
  const text = Buffer.isBuffer(r.body) ? r.body.toString('utf8') : r.body;
  assert.ok(!LEAK.test(text), `${what}: the answer leaks a stack or internal error: ${text.slice(0, 500)}`);
  if (r.status >= 200 && r.status < 300) return String(r.status);
  assert.ok((r.status >= 400 && r.status < 500) || allowed.includes(r.status), `${what}: answered ${r.status}: ${text.slice(0, 500)}`);
  assert.equal((r.headers['content-type'] ?? '').split(';')[0], 'application/problem+json', `${what}: a ${r.status} that is no problem document`);
  const doc = JSON.parse(text) as { type?: unknown; title?: unknown; status?: unknown; detail?: unknown };
  assert.equal(doc.status, r.status, `${what}: the problem's status`);
  assert.equal(typeof doc.type, 'string', `${what}: the problem's type`);
  assert.equal(typeof doc.title, 'string', `${what}: the problem's title`);
  assert.equal(typeof doc.detail, 'string', `${what}: a ${r.status} without a detail: ${text.slice(0, 300)}`);
  assertReason(doc.detail as string, what);
  return `${r.status} ${String(doc.type).split('/').pop()}`;
}

// ─── Summary ───────────────────────────────────────────────────────────────────────────────

function table(): string {
  const lines = [`fuzz: seed ${SEED}, ${RUNS} inputs per target${PATH ? `, replaying path ${PATH}` : ''}`];
  lines.push('target                                   inputs    time   heap Δ    RSS Δ   outcomes');
  for (const r of results) {
    const top = [...r.outcomes]
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1])
      // The most frequent, and every acceptance however rare (2xx, records).
      .filter(([k], i) => i < 6 || /^2\d\d|records|decoded|accepted|ACK/.test(k))
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    lines.push(
      `${r.target.padEnd(40)} ${String(r.inputs).padStart(7)} ${`${(r.ms / 1000).toFixed(1)} s`.padStart(7)} ${mib(r.heapGrowth).padStart(9)} ${mib(r.rssGrowth).padStart(9)}   ${top}`,
    );
  }
  return lines.join('\n');
}

const finishers: Array<() => unknown> = [];

/** Runs fn after the last target (closing what several targets share). */
export function onFinish(fn: () => unknown): void {
  finishers.push(fn);
}

/** Mocha root hooks: the summary after the last target, then what the targets shared is closed. */
export const mochaHooks = {
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(60_000);
    if (results.length > 0) console.log(`\n${table()}\n`);
    for (const fn of finishers.splice(0)) await fn();
  },
};
