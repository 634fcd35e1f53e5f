/**
 * Sending a chat completion and handling the response per the contract (§7, spec §6.3):
 * 200 → `choices[0].message.content`; 202 and 503 `model_not_ready` → retried with back-off within a
 * bounded wait; 503 `initialization_error`/`model_load_error` → ServiceFailedError; 400 → rejected
 * (fix the request); 500 → rejected (check the container logs). Client timeout ≥ 300 s.
 */
import { RequestRejectedError, ServiceFailedError, ServiceNotReadyError } from '../errors.js';
import type { RequestYaml } from '../references.js';
import type { ChatBody } from './request-body.js';
import { errorOf } from './readiness.js';
import { fetchText } from '../util/http.js';

export interface ChatCompletion {
  id?: string;
  object?: string;
  model?: string;
  choices: Array<{ index?: number; message: { role: string; content: string }; finish_reason?: string }>;
  [k: string]: unknown;
}

export interface SendOptions {
  job_id: string;
  host_url: string;
  request: RequestYaml;
  headers?: Record<string, string>;
  /** Total seconds to keep retrying 202 / model_not_ready (default 120). */
  retryWindowS?: number;
  /** Per-attempt client timeout, seconds (≥ 300 per contract). */
  timeoutS?: number;
  onRetry?: (status: number, errorType: string, elapsedS: number) => void;
  signal?: AbortSignal;
}

/**
 * POST the body and return the parsed chat.completion.
 * @throws RequestRejectedError (400/500/other), ServiceFailedError (503 fatal), ServiceNotReadyError (still loading after the retry window, or unreachable)
 */
export async function sendChatCompletion(body: ChatBody, o: SendOptions): Promise<ChatCompletion> {
  const url = `${o.host_url}${o.request.endpoint.path}`;
  const t0 = Date.now();
  const windowMs = (o.retryWindowS ?? 120) * 1000;
  const timeoutMs = Math.max(o.request.endpoint.client_timeout_seconds, o.timeoutS ?? 0) * 1000;
  let delay = 1000;
  for (;;) {
    let res: { status: number; text: string };
    try {
      res = await fetchText(
        url,
        { method: 'POST', headers: { 'content-type': o.request.endpoint.content_type, ...o.headers }, body: JSON.stringify(body) },
        timeoutMs,
        o.signal,
      );
    } catch (e) {
      const code = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
      throw new ServiceNotReadyError('service_unreachable', `cannot reach ${url} (${code})`, {
        hint: `Check the service with 'tao-infer ls' and 'tao-infer logs ${o.job_id}'.`,
      });
    }
    const text = res.text;
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* keep text */
    }
    if (res.status === 200) {
      const c = parsed as ChatCompletion;
      if (!c || !Array.isArray(c.choices) || !c.choices[0]?.message)
        throw new RequestRejectedError(200, 'bad_response', 'the service answered 200 without choices[0].message');
      return c;
    }
    const err = errorOf(parsed);
    const retryable = res.status === 202 || (res.status === 503 && o.request.readiness.retry_types.includes(err.type));
    if (retryable) {
      const elapsed = Date.now() - t0;
      if (elapsed + delay > windowMs)
        throw new ServiceNotReadyError('still_loading', `service ${o.job_id} is still loading (${err.type}) after ${Math.round(elapsed / 1000)}s`, {
          hint: 'Wait for readiness (tao-infer ls shows it) and send again.',
        });
      o.onRetry?.(res.status, err.type, elapsed / 1000);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(10_000, delay * 2);
      continue;
    }
    if (res.status === 503) throw new ServiceFailedError(o.job_id, `${err.type}: ${err.message}`, err.type);
    const hint =
      res.status === 400 ? 'Fix the request (body, media, sampling parameters) and send again.' : res.status >= 500 ? `The service failed on this request: see 'tao-infer logs ${o.job_id}'.` : undefined;
    throw new RequestRejectedError(res.status, err.type, err.message || String(text).slice(0, 300), { hint });
  }
}
