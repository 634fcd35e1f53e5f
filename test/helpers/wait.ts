/** One polling helper for every test: wait until a condition holds, with a deadline. */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Poll `fn` every `everyMs` until it returns something other than `undefined` or `false`, and resolve that value.
 * Throws `timed out waiting for <what>` after `ms` milliseconds (the last poll's error, if it threw, is not retried:
 * it propagates at once).
 */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, ms = 60_000, everyMs = 100): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (${ms} ms)`);
    await sleep(everyMs);
  }
}
