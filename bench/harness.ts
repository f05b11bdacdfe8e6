/**
 * A small benchmark harness: each case runs beside its baseline in the same process, alternating
 * rounds so both see the same machine state, and reports the median items per second of at least
 * 5 rounds, the ratio of the medians, and every run.
 */
import * as net from 'node:net';
import * as os from 'node:os';

export interface Pair {
  name: string;
  /** what one call handles, e.g. records in the pack */
  itemsPerCall: number;
  subject: () => unknown;
  baselineName: string;
  baseline: () => unknown;
  /** the lowest acceptable subject/baseline ratio, if the project promises one */
  floor?: number;
}

export interface PairResult {
  name: string;
  baselineName: string;
  subjectPerSec: number;
  baselinePerSec: number;
  ratio: number;
  floor?: number;
  /** every timed run, in order (the rates the medians were taken of) */
  subjectRuns?: number[];
  baselineRuns?: number[];
}

let sink: unknown;

/** Items per second of fn over about `ms` milliseconds. */
function rate(fn: () => unknown, itemsPerCall: number, ms: number): number {
  let calls = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ms * 1e6);
  let now = start;
  while (now < end) {
    for (let i = 0; i < 64; i++) sink = fn();
    calls += 64;
    now = process.hrtime.bigint();
  }
  return (calls * itemsPerCall) / (Number(now - start) / 1e9);
}

/** The median; for an even count, the mean of the middle two. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The value at percentile p of an already sorted list. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A loopback TCP port the kernel just handed out and released. */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export interface DeviceLoad {
  devices: number;
  /** Sends per device when not paced. */
  perDevice: number;
  /** At most this many sends per device at once (not paced). */
  window: number;
  /** 0: as fast as the window allows; else sends per second per device, each on time without waiting for the previous one. */
  pacing: number;
  /** Sends per device when paced. */
  pacedPerDevice: number;
}

/** Runs send(i, seq) for every device i as the load says; resolves when every send has. */
export async function driveDevices(load: DeviceLoad, send: (i: number, seq: number) => Promise<unknown>): Promise<void> {
  await Promise.all(
    Array.from({ length: load.devices }, async (_, i) => {
      if (load.pacing > 0) {
        const start = nowMs() + (i * 1000) / load.pacing / load.devices; // devices spread over the interval
        const sent: Promise<unknown>[] = [];
        for (let seq = 0; seq < load.pacedPerDevice; seq++) {
          const wait = start + (seq * 1000) / load.pacing - nowMs();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait)); // the pace, not a synchronisation
          const p = send(i, seq);
          p.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
          sent.push(p);
        }
        await Promise.all(sent);
        return;
      }
      let seq = 0;
      await Promise.all(
        Array.from({ length: load.window }, async () => {
          while (seq < load.perDevice) await send(i, seq++);
        }),
      );
    }),
  );
}

export async function freeTcpPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export function runPair(pair: Pair, rounds = 7, ms = 300): PairResult {
  if (rounds < 5) throw new RangeError('at least 5 rounds: a median of fewer says little');
  rate(pair.subject, 1, 200); // warm up both before measuring either
  rate(pair.baseline, 1, 200);
  const subject: number[] = [];
  const baseline: number[] = [];
  for (let r = 0; r < rounds; r++) {
    subject.push(rate(pair.subject, pair.itemsPerCall, ms));
    baseline.push(rate(pair.baseline, pair.itemsPerCall, ms));
  }
  void sink;
  const subjectPerSec = median(subject);
  const baselinePerSec = median(baseline);
  return {
    name: pair.name,
    baselineName: pair.baselineName,
    subjectPerSec,
    baselinePerSec,
    ratio: subjectPerSec / baselinePerSec,
    floor: pair.floor,
    subjectRuns: subject,
    baselineRuns: baseline,
  };
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

export const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

/** Every run of a case, in the order they ran: "a, b, c". */
export const runs = (xs: readonly number[] | undefined) => (xs && xs.length ? xs.map(fmt).join(', ') : '');

/** Prints a Markdown table (ready for bench/RESULTS.md); returns false if a floor was missed. */
export function report(title: string, unit: string, results: PairResult[]): boolean {
  console.log(`\n### ${title} — ${new Date().toISOString().slice(0, 10)}\n\n${machine()}\n`);
  console.log(`| case | ${unit}/s (median) | baseline | baseline ${unit}/s (median) | ratio | floor |`);
  console.log('|---|---:|---|---:|---:|---:|');
  let ok = true;
  for (const r of results) {
    const miss = r.floor !== undefined && r.ratio < r.floor;
    if (miss) ok = false;
    console.log(
      `| ${r.name} | ${fmt(r.subjectPerSec)} | ${r.baselineName} | ${fmt(r.baselinePerSec)} | ${r.ratio.toFixed(2)}x | ${r.floor === undefined ? '' : `${r.floor}x${miss ? ' MISSED' : ''}`} |`,
    );
  }
  // Every run, never only the median: a reader sees the scatter the median hides.
  const listed = results.filter((r) => r.subjectRuns?.length || r.baselineRuns?.length);
  if (listed.length) {
    console.log(`\nEvery timed run, in order (${unit}/s):\n\n| case | runs | baseline | baseline runs |\n|---|---|---|---|`);
    for (const r of listed) console.log(`| ${r.name} | ${runs(r.subjectRuns)} | ${r.baselineName} | ${runs(r.baselineRuns)} |`);
  }
  return ok;
}
