/**
 * A small benchmark harness: each case runs beside its baseline in the same process, alternating
 * rounds so both see the same machine state, and reports items per second and the ratio.
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

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The value at percentile p of an already sorted list. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A loopback TCP port the kernel just handed out and released. */
export async function freeTcpPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export function runPair(pair: Pair, rounds = 7, ms = 300): PairResult {
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
  return { name: pair.name, baselineName: pair.baselineName, subjectPerSec, baselinePerSec, ratio: subjectPerSec / baselinePerSec, floor: pair.floor };
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

/** Prints a Markdown table (ready for bench/RESULTS.md); returns false if a floor was missed. */
export function report(title: string, unit: string, results: PairResult[]): boolean {
  console.log(`\n### ${title} — ${new Date().toISOString().slice(0, 10)}\n\n${machine()}\n`);
  console.log(`| case | ${unit}/s | baseline | baseline ${unit}/s | ratio | floor |`);
  console.log('|---|---:|---|---:|---:|---:|');
  let ok = true;
  for (const r of results) {
    const miss = r.floor !== undefined && r.ratio < r.floor;
    if (miss) ok = false;
    console.log(`| ${r.name} | ${fmt(r.subjectPerSec)} | ${r.baselineName} | ${fmt(r.baselinePerSec)} | ${r.ratio.toFixed(2)}x | ${r.floor === undefined ? '' : `${r.floor}x${miss ? ' MISSED' : ''}`} |`);
  }
  return ok;
}
