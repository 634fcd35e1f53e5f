/**
 * fetch with a timeout that keeps the process alive while the request is in flight.
 * `AbortSignal.timeout` uses an unref'd timer: on Node 20 a fetch whose connection is accepted and
 * closed at once can stay pending with nothing else holding the event loop, and the process would
 * then end silently in the middle of a command. A plain (ref'd) timer, cleared afterwards, avoids that.
 */

/**
 * `fetch(url, init)` and read the whole body as text, aborted after `timeoutMs` milliseconds (for
 * the request and the body together) or when `signal` aborts.
 * @returns HTTP status and body text
 * @throws what fetch throws (a TimeoutError-named DOMException on timeout)
 */
export async function fetchText(url: string, init: RequestInit, timeoutMs: number, signal?: AbortSignal): Promise<{ status: number; text: string }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new DOMException(`request timed out after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
  const onAbort = () => ac.abort(signal!.reason);
  if (signal?.aborted) ac.abort(signal.reason);
  else signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const res = await fetch(url, { ...init, signal: ac.signal });
    return { status: res.status, text: await res.text() };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
