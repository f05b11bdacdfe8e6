/**
 * Waiting in tests: on the condition the test needs, with one generous overall deadline, never a
 * fixed pause that hopes the thing happened (on a loaded machine it has not).
 */

/** Default overall deadline: generous, since it only matters when the test is failing anyway. */
export const WAIT_TIMEOUT_MS = 30_000;

/**
 * Resolves once check() holds (it may be async: a query, a request), re-checking as soon as the
 * previous check settled plus a few milliseconds; fails naming `what` after timeoutMs. For state
 * that has no event to wait on (a row in a table, a counter in a server).
 */
export async function until(what: string | (() => string), check: () => boolean | Promise<boolean>, timeoutMs = WAIT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${typeof what === 'function' ? what() : what}`);
    await pause(5);
  }
}

/** Resolves with what fn returns once it is not undefined; fails like until(). */
export async function eventually<T>(what: string | (() => string), fn: () => T | undefined | Promise<T | undefined>, timeoutMs = WAIT_TIMEOUT_MS): Promise<T> {
  let value: T | undefined;
  await until(what, async () => (value = await fn()) !== undefined, timeoutMs);
  return value as T;
}

/** Tries attempt() until it resolves (a connection before the listener is up); fails with its last error. */
export async function retry<T>(what: string, attempt: () => Promise<T>, timeoutMs = WAIT_TIMEOUT_MS): Promise<T> {
  let last: unknown;
  const wrapped = await eventually(
    () => `${what} (last: ${last instanceof Error ? last.message : String(last)})`,
    () =>
      attempt().then(
        (value) => ({ value }),
        (err: unknown) => ((last = err), undefined),
      ),
    timeoutMs,
  );
  return wrapped.value;
}

/**
 * Lets time pass, for tests whose subject is time itself (a rate window that must refill, an
 * idle timeout that must expire, a timestamp that must move) or that check nothing happens in a
 * window (a negative check cannot wait for an event). Never to wait for something to happen.
 */
export function elapse(ms: number): Promise<void> {
  return pause(ms);
}

function pause(ms: number): Promise<void> {
  return new Promise<void>((resolve) => setTimeout(resolve, ms));
}
