/**
 * Readiness polling (contract §6): `GET {host_url}/api/v1/health/readiness`.
 * 200 → ready; 202 with server_initializing|model_loading → keep polling; 503 model_not_ready → keep
 * polling; 503 initialization_error|model_load_error → hard failure; connection refused → not up yet;
 * 401/403 while a bearer token is sent → the token was refused (a gateway such as Lepton's checks it), a hard failure.
 * Polls with a short interval that backs off (200 ms → 2 s) so a ready service is noticed within about a second.
 */
import { PlatformError, ReadinessTimeoutError, ServiceFailedError } from '../errors.js';
import type { RequestYaml } from '../references.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { BODY_CAPS, fetchText } from '../util/http.js';

export type ReadinessResult =
  | { kind: 'ready' }
  | { kind: 'waiting'; state: string }
  | { kind: 'refused'; status: number }
  | { kind: 'fatal'; errorType: string; message: string };

/** Error body `{"error": {"type", "message"}}` → its fields (tolerant of other shapes). */
export function errorOf(body: unknown): { type: string; message: string } {
  const e = (body as { error?: unknown } | null)?.error;
  if (e && typeof e === 'object') {
    const o = e as Record<string, unknown>;
    return { type: String(o.type ?? 'unknown'), message: String(o.message ?? '') };
  }
  if (typeof e === 'string') return { type: e, message: '' };
  return { type: 'unknown', message: typeof body === 'string' ? body.slice(0, 200) : '' };
}

/**
 * One readiness probe. Never throws: network errors are `waiting` with the error code as state.
 * @param headers extra headers (e.g. Authorization for lepton)
 */
export async function probeReadiness(
  host_url: string,
  readiness: RequestYaml['readiness'],
  headers: Record<string, string> = {},
  timeoutMs = 5000,
  signal?: AbortSignal,
): Promise<ReadinessResult> {
  let res: { status: number; text: string };
  try {
    // A readiness answer is a small JSON document: read at most 64 KiB of it (status decides; an endless body is cut).
    res = await fetchText(`${host_url}${readiness.path}`, { headers }, timeoutMs, signal, BODY_CAPS.readiness, 'truncate');
  } catch (e) {
    const code = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
    return { kind: 'waiting', state: ['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(code) ? 'not listening yet' : `unreachable (${code})` };
  }
  const text = res.text;
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (res.status === 200) return { kind: 'ready' };
  if ((res.status === 401 || res.status === 403) && Object.keys(headers).some((h) => h.toLowerCase() === 'authorization')) return { kind: 'refused', status: res.status };
  const err = errorOf(body);
  if (res.status === 503 && readiness.fatal_types.includes(err.type)) return { kind: 'fatal', errorType: err.type, message: err.message };
  if (res.status === 202 || res.status === 503) return { kind: 'waiting', state: err.type !== 'unknown' ? err.type : `HTTP ${res.status}` };
  return { kind: 'waiting', state: `HTTP ${res.status}` };
}

export interface WaitOptions {
  job_id: string;
  host_url: string;
  readiness: RequestYaml['readiness'];
  /** Seconds before ReadinessTimeoutError. */
  timeoutS: number;
  headers?: Record<string, string>;
  /** Env var the bearer token came from, named when the token is refused. */
  authEnv?: string;
  /** Called between polls (at most about once a second); throws (e.g. ServiceFailedError) when the job died. */
  checkAlive?: () => Promise<void>;
  /** Progress for people: elapsed seconds and the last state. */
  onProgress?: (elapsedS: number, state: string) => void;
  /** Fetch the log tail for a hard readiness failure. */
  logTail?: () => Promise<string[]>;
  signal?: AbortSignal;
}

/**
 * Poll until ready.
 * @throws ReadinessTimeoutError after timeoutS; ServiceFailedError on a hard failure (503 initialization_error /
 *         model_load_error) or whatever checkAlive throws; PlatformError `endpoint_token_refused` on 401/403 to a
 *         request that carried a bearer token.
 */
export async function waitForReadiness(o: WaitOptions): Promise<void> {
  const t0 = Date.now();
  const deadline = t0 + o.timeoutS * 1000;
  let interval = 200;
  let lastAliveCheck = 0;
  let state = 'starting';
  for (;;) {
    if (o.signal?.aborted) throw o.signal.reason ?? new Error('aborted');
    const r = await probeReadiness(o.host_url, o.readiness, o.headers, Math.min(5000, Math.max(500, deadline - Date.now())), o.signal);
    if (o.signal?.aborted) throw o.signal.reason ?? new Error('aborted');
    if (r.kind === 'ready') {
      o.onProgress?.((Date.now() - t0) / 1000, 'ready');
      return;
    }
    if (r.kind === 'refused')
      throw new PlatformError('endpoint_token_refused', `the endpoint token was refused (HTTP ${r.status} from ${o.host_url})`, {
        hint: `${o.authEnv ? `$${o.authEnv}` : 'The token'} is not a token this endpoint accepts (expired, or another one): export a valid token and run 'tao-infer start' again, or stop the service.`,
      });
    if (r.kind === 'fatal') {
      const tail = (await o.logTail?.().catch(() => [])) ?? [];
      throw new ServiceFailedError(o.job_id, `readiness reported ${r.errorType}: ${r.message}`, r.errorType, tail);
    }
    state = r.state;
    o.onProgress?.((Date.now() - t0) / 1000, state);
    if (o.checkAlive && Date.now() - lastAliveCheck >= 900) {
      lastAliveCheck = Date.now();
      await o.checkAlive();
    }
    if (Date.now() >= deadline) throw new ReadinessTimeoutError(o.job_id, o.timeoutS, state);
    await sleep(Math.min(interval, Math.max(0, deadline - Date.now())), undefined, { signal: o.signal }).catch(() => {
      throw o.signal?.reason ?? new Error('aborted');
    });
    interval = Math.min(2000, Math.round(interval * 1.5));
  }
}
