/**
 * Bounded concurrency and per-call time limits for fan-out calls (e.g. one status call per registry entry).
 */

/**
 * Map `items` through `fn` with at most `limit` calls in flight; results keep the input order.
 * A rejection of `fn` rejects the whole map (callers that must not fail catch inside `fn`).
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/**
 * Resolve what `p` resolves, or `onTimeout()` after `ms` milliseconds (rejects when it throws), whichever comes first. The timer
 * does not keep the process alive; `p` keeps running in the background when it loses (its result is dropped).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (e) {
        reject(e);
      }
    }, ms);
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
