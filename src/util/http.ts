/**
 * HTTP reads with a bound on time and size (issue 8.2: every read has a bound).
 *
 * fetch with a timeout that keeps the process alive while the request is in flight.
 * `AbortSignal.timeout` uses an unref'd timer: on Node 20 a fetch whose connection is accepted and
 * closed at once can stay pending with nothing else holding the event loop, and the process would
 * then end silently in the middle of a command. A plain (ref'd) timer, cleared afterwards, avoids that.
 *
 * Bodies are read chunk by chunk and the read stops (the connection is cancelled) as soon as the cap is
 * passed, so an endless or huge body costs at most the cap in memory.
 */

/** Caps used across the project, in bytes. */
export const BODY_CAPS = {
  /** Readiness answers are a small JSON document. */
  readiness: 64 * 1024,
  /** Error bodies (4xx/5xx) shown to people: the start is enough. */
  errorBody: 64 * 1024,
  /** JSON answers of platform REST APIs (Lepton): lists of jobs, deployments, replicas. */
  platformJson: 16 * 1024 * 1024,
} as const;

/** A body passed its cap. `limit` in bytes. The caller turns it into the error family of its context. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`the response body exceeded ${formatBytes(limit)}`);
    this.name = 'BodyTooLargeError';
  }
}

/** `1536` → `1.5 KiB`. */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

/**
 * Read a fetch Response body up to `maxBytes`.
 * `onExcess: 'throw'` → BodyTooLargeError once more than maxBytes arrived (the rest is not read);
 * `'truncate'` → the first maxBytes and `truncated: true` (for error bodies and diagnostics).
 */
export async function readBodyCapped(res: Response, maxBytes: number, onExcess: 'throw' | 'truncate' = 'throw'): Promise<{ body: Buffer; truncated: boolean }> {
  if (!res.body) return { body: Buffer.alloc(0), truncated: false };
  const reader = res.body.getReader();
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size + value.byteLength > maxBytes) {
        if (onExcess === 'throw') throw new BodyTooLargeError(maxBytes);
        chunks.push(Buffer.from(value.buffer, value.byteOffset, maxBytes - size));
        size = maxBytes;
        return { body: Buffer.concat(chunks, size), truncated: true };
      }
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      size += value.byteLength;
    }
  } finally {
    // Stop the transfer when we leave early (cap, error); a no-op after the end.
    await reader.cancel().catch(() => undefined);
  }
  return { body: Buffer.concat(chunks, size), truncated: false };
}

/** The body as text, at most `maxBytes` (more is cut and marked), for error messages. */
export async function textCapped(res: Response, maxBytes: number = BODY_CAPS.errorBody): Promise<string> {
  const { body, truncated } = await readBodyCapped(res, maxBytes, 'truncate');
  return body.toString('utf8') + (truncated ? ` […cut at ${formatBytes(maxBytes)}]` : '');
}

/**
 * Run `use(res)` on `fetch(url, init)`, aborted after `timeoutMs` milliseconds (for the request and whatever
 * `use` reads) or when `signal` aborts.
 * @throws what fetch throws (a TimeoutError-named DOMException on timeout), what `use` throws
 */
async function withFetch<T>(url: string, init: RequestInit, timeoutMs: number, signal: AbortSignal | undefined, use: (res: Response) => Promise<T>): Promise<T> {
  const ac = deadlineSignal(timeoutMs, signal);
  try {
    const res = await fetch(url, { ...init, signal: ac.signal });
    return await use(res);
  } finally {
    ac.dispose();
  }
}

/**
 * An AbortSignal that aborts after `timeoutMs` (reason: a TimeoutError-named DOMException, with a ref'd timer, see
 * the module comment) or when `signal` aborts (its reason). `dispose()` clears the timer and the listener.
 */
function deadlineSignal(timeoutMs: number, signal: AbortSignal | undefined): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new DOMException(`request timed out after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
  const onAbort = () => ac.abort(signal!.reason);
  if (signal?.aborted) ac.abort(signal.reason);
  else signal?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: ac.signal,
    dispose: () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    },
  };
}

/**
 * `fetch(url, init)` and read the body as text, at most `maxBytes` (default 64 KiB), aborted after
 * `timeoutMs` milliseconds (request and body together) or when `signal` aborts.
 * @param onExcess 'throw' (default): BodyTooLargeError past the cap; 'truncate': keep the first maxBytes
 * @returns HTTP status and body text
 * @throws what fetch throws (a TimeoutError-named DOMException on timeout), BodyTooLargeError
 */
export async function fetchText(
  url: string,
  init: RequestInit,
  timeoutMs: number,
  signal?: AbortSignal,
  maxBytes: number = BODY_CAPS.errorBody,
  onExcess: 'throw' | 'truncate' = 'throw',
): Promise<{ status: number; text: string; truncated: boolean }> {
  return withFetch(url, init, timeoutMs, signal, async (res) => {
    const { body, truncated } = await readBodyCapped(res, maxBytes, onExcess);
    return { status: res.status, text: body.toString('utf8'), truncated };
  });
}

/**
 * POST/PUT a body that may be a stream, with backpressure, and hand the answer to `use` as a web Response.
 * Node 20's fetch reads an async-iterable body as fast as it can produce it (no backpressure: a 600 MB body
 * costs ~600 MB of memory), so streamed bodies go through node:http / node:https, whose `pipe` waits for the
 * socket. Aborted after `timeoutMs` (request, body and whatever `use` reads) or when `signal` aborts.
 * @throws an Error with `code` (ECONNREFUSED, ...) when the connection fails, a TimeoutError-named DOMException
 *         on timeout, the signal's reason when aborted, or what `use` throws
 */
export async function sendStreaming<T>(
  url: string,
  init: { method: string; headers: Record<string, string>; body: string | AsyncIterable<Uint8Array> },
  timeoutMs: number,
  signal: AbortSignal | undefined,
  use: (res: Response) => Promise<T>,
): Promise<T> {
  const [{ request: httpRequest }, { request: httpsRequest }, { Readable }] = await Promise.all([import('node:http'), import('node:https'), import('node:stream')]);
  const ac = deadlineSignal(timeoutMs, signal);
  try {
    const u = new URL(url);
    const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const src = typeof init.body === 'string' ? Readable.from([Buffer.from(init.body)]) : Readable.from(init.body);
    const req = request(u, { method: init.method, headers: init.headers, signal: ac.signal });
    const incoming = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', (e) => reject(ac.signal.aborted ? ac.signal.reason : e));
      src.once('error', (e) => req.destroy(e));
      src.pipe(req);
    }).catch((e) => {
      src.destroy();
      throw e;
    });
    incoming.once('error', () => undefined);
    ac.signal.addEventListener('abort', () => incoming.destroy(ac.signal.reason), { once: true });
    const headers = new Headers();
    for (const [k, v] of Object.entries(incoming.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
    const status = incoming.statusCode ?? 500;
    const res = new Response(status === 204 || status === 304 ? null : (Readable.toWeb(incoming) as ReadableStream<Uint8Array>), { status: status < 200 ? 500 : status, headers });
    try {
      return await use(res);
    } catch (e) {
      if (ac.signal.aborted) throw ac.signal.reason;
      throw e;
    } finally {
      // An answer that came before the whole body was sent (an early 4xx) ends the upload too.
      incoming.destroy();
      src.destroy();
      req.destroy();
    }
  } finally {
    ac.dispose();
  }
}
