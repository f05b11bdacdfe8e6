/**
 * Any other JSON, through a JSONata expression the integrator writes (jsonata 2.x).
 *
 * Decoding: the expression, applied to the input document, must yield a SenML pack (one record
 * object or an array of them, base fields allowed); the pack then goes through `resolve`, so
 * relative times, base names and the name rule apply exactly as for SenML itself.
 * Encoding: the expression is applied to the canonical records (an array of resolved records)
 * and whatever it yields is the output.
 *
 * Names: no escaping here: the expression builds the names, and resolve refuses one outside
 * SenML's rule (A-Z a-z 0-9 first, then - : . / _) with a CodecError naming the record; an
 * expression can clean names itself, e.g. `$replace(id, /[^A-Za-z0-9_.:-]/, "_")`.
 *
 * Runaway expressions: jsonata's own guardrails bound each evaluation's time (checked at every
 * step of evaluation), its nesting depth (deep or endless recursion) and the length of any
 * sequence it builds; the output is then copied into plain JSON with a bound on its size.
 * One regular expression call cannot be interrupted; keep user regexes simple.
 */
import jsonata from 'jsonata';
import { CodecError } from '../errors';
import { resolve, validateResolved, type ResolvedRecord } from '../model/senml';

const FORMAT = 'map';

export interface MappingLimits {
  /** wall time per evaluation, ms */
  timeoutMs?: number;
  /** nesting depth of evaluation (recursion) */
  maxDepth?: number;
  /** items in any one sequence the expression builds */
  maxSequence?: number;
  /** values (objects, arrays, scalars) in the output */
  maxOutputValues?: number;
}

export const DEFAULT_LIMITS: Required<MappingLimits> = {
  timeoutMs: 1000,
  maxDepth: 500,
  maxSequence: 100_000,
  maxOutputValues: 1_000_000,
};

/** Expressions longer than this are refused before compiling. */
export const MAX_EXPRESSION_LENGTH = 64 * 1024;

export interface Mapping {
  readonly expression: string;
  readonly limits: Required<MappingLimits>;
  readonly compiled: jsonata.Expression;
}

export interface DecodeMappingOptions {
  /** "now" in seconds since the epoch for relative SenML times; defaults to the clock */
  now?: number;
  /** variables the expression can read as $name */
  bindings?: Record<string, unknown>;
}

interface JsonataError {
  code?: string;
  position?: number;
  token?: string;
  message?: string;
}

function describe(err: unknown): string {
  const e = err as JsonataError;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? ` [${e.code}]` : '';
  const position = typeof e?.position === 'number' ? ` at position ${e.position}` : '';
  return `${message}${code}${position}`;
}

/** Compiles an expression once; a syntax error becomes a CodecError naming its position. */
export function compileMapping(expression: string, limits: MappingLimits = {}): Mapping {
  if (typeof expression !== 'string' || expression.trim() === '') throw new CodecError(FORMAT, 'the mapping expression is empty', undefined, 'expression');
  if (expression.length > MAX_EXPRESSION_LENGTH)
    throw new CodecError(FORMAT, `the mapping expression is longer than ${MAX_EXPRESSION_LENGTH} characters`, undefined, 'expression');
  const l = { ...DEFAULT_LIMITS, ...limits };
  let compiled: jsonata.Expression;
  try {
    compiled = jsonata(expression, { timeout: l.timeoutMs, stack: l.maxDepth, sequence: l.maxSequence });
  } catch (err) {
    throw new CodecError(FORMAT, `the mapping expression does not compile: ${describe(err)}`, undefined, 'expression');
  }
  return { expression, limits: l, compiled };
}

async function run(mapping: Mapping, input: unknown, bindings?: Record<string, unknown>): Promise<unknown> {
  if (mapping === null || typeof mapping !== 'object' || typeof mapping.compiled?.evaluate !== 'function') {
    throw new CodecError(FORMAT, 'expected a mapping made by compileMapping');
  }
  try {
    return await mapping.compiled.evaluate(input, bindings);
  } catch (err) {
    throw new CodecError(FORMAT, `the mapping expression failed: ${describe(err)}`);
  }
}

/**
 * Copies jsonata's output into plain JSON values (its sequences are arrays with extra flags),
 * counting values so a runaway output is refused; functions cannot leave an expression.
 */
function toPlain(value: unknown, limit: number): unknown {
  let count = 0;
  const copy = (x: unknown, depth: number): unknown => {
    if (++count > limit) throw new CodecError(FORMAT, `the expression yielded more than ${limit} values`);
    if (depth > 200) throw new CodecError(FORMAT, 'the expression yielded values nested deeper than 200');
    if (x === null || typeof x !== 'object') {
      if (typeof x === 'function') throw new CodecError(FORMAT, 'the expression yielded a function, not data');
      if (typeof x === 'number' && !Number.isFinite(x)) throw new CodecError(FORMAT, 'the expression yielded a number that is not finite');
      return x;
    }
    if (Array.isArray(x)) {
      const out: unknown[] = [];
      for (const item of x) if (item !== undefined) out.push(copy(item, depth + 1));
      return out;
    }
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(x)) {
      const v = (x as Record<string, unknown>)[key];
      if (v === undefined) continue;
      if (key === '__proto__') throw new CodecError(FORMAT, 'the expression yielded a __proto__ property');
      out[key] = copy(v, depth + 1);
    }
    return out;
  };
  return copy(value, 0);
}

function parseInput(input: unknown): unknown {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) return input;
  const text = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CodecError(FORMAT, `malformed JSON input: ${(err as Error).message}`);
  }
}

/** Applies the mapping to a JSON document (text, bytes or a value) and resolves the SenML pack it yields. */
export async function decodeWithMapping(mapping: Mapping, input: unknown, options: DecodeMappingOptions = {}): Promise<ResolvedRecord[]> {
  const result = await run(mapping, parseInput(input), options.bindings);
  if (result === undefined) throw new CodecError(FORMAT, 'the expression yielded nothing (expected a SenML record or an array of records)');
  const plain = toPlain(result, mapping.limits.maxOutputValues);
  let pack: unknown[];
  if (Array.isArray(plain)) pack = plain;
  else if (plain !== null && typeof plain === 'object') pack = [plain];
  else throw new CodecError(FORMAT, `the expression yielded ${plain === null ? 'null' : typeof plain}, not a SenML record or an array of records`);
  try {
    return resolve(pack, { now: options.now });
  } catch (err) {
    if (err instanceof CodecError) throw new CodecError(FORMAT, `the expression yielded invalid SenML: ${err.reason}`, err.index, err.field);
    throw err;
  }
}

/** Applies the mapping to canonical records; the result is plain JSON. */
export async function encodeWithMapping(mapping: Mapping, records: ResolvedRecord[]): Promise<unknown> {
  validateResolved(records, FORMAT);
  const result = await run(mapping, records);
  if (result === undefined) throw new CodecError(FORMAT, 'the expression yielded nothing for these records');
  return toPlain(result, mapping.limits.maxOutputValues);
}
