/**
 * Forwarding one chat-completions request to a member (issue 12, points 3, 4 and 8), over undici.
 *
 * - TAO warm-up (contract §6–§7): 202 (server_initializing / model_loading) and 503 model_not_ready → try
 *   another member of the pool, or wait with back-off (250 ms → 5 s) within the retry window;
 *   503 initialization_error / model_load_error → eject the member (failed) and fail over; a connection
 *   error → eject it (down) and fail over. Retries happen only before the first response byte reaches
 *   the client and never onto the member that just failed; in-flight counts are released on every path.
 * - The response is passed through as it arrives (no buffering, no parsing of chunks); the client going
 *   away aborts the upstream request.
 * - Timeouts (set on the undici Agent): connect, first byte (headersTimeout), idle between body chunks (bodyTimeout);
 *   none on the total length of a stream.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { errors, type Agent, type Dispatcher } from 'undici';
import type { RequestYaml } from '../references.js';
import { errorOf } from '../service/readiness.js';
import type { ReadBody } from './body.js';
import { GatewayHttpError, sendError } from './http-error.js';
import type { GatewayMetrics } from './metrics.js';
import type { Member, Pool, Target } from './pool.js';

export interface ProxyDeps {
  pool: Pool;
  agent: Agent;
  metrics: GatewayMetrics;
  request: RequestYaml;
  retryWindowMs: number;
  firstByteMs: number;
  idleMs: number;
  /** Upstream headers of a member (bearer token). @throws when its token env var is unset */
  headersFor: (m: Member) => Record<string, string>;
  /** Take a member out of rotation (passive ejection). */
  eject: (m: Member, health: 'down' | 'failed', reason: string) => void;
}

export interface ProxyOutcome {
  status: number;
  bytesOut: number;
  retries: number;
  routedTo?: Member;
  /** The gateway's own error code when it answered itself. */
  error?: string;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);
const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED',
]);
const SMALL_BODY = 64 * 1024;
const NONE: ReadonlySet<string> = new Set();

/**
 * "The client went away" for one request (its response closed before it finished): the upstream attempt in
 * flight aborts its undici dispatch on 'abort', a back-off wait ends at once. A plain EventEmitter: cheaper per
 * request than an AbortController and its EventTarget.
 */
class ClientGone extends EventEmitter {
  aborted = false;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.emit('abort');
  }

  /** Resolve after `ms`, or at once when the client goes away. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.off('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.once('abort', done);
    });
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const urls = new WeakMap<Member['entry'], { origin: string; path: string }>();
/** Origin and path of a member's chat endpoint (cached per registry entry object). */
function upstreamUrl(m: Member, path: string): { origin: string; path: string } {
  let hit = urls.get(m.entry);
  if (!hit) {
    const u = new URL(m.entry.host_url);
    hit = { origin: u.origin, path: `${u.pathname.replace(/\/+$/, '')}${path}` };
    urls.set(m.entry, hit);
  }
  return hit;
}

/**
 * Send `body` to a member of `target` and pass the answer to `res`. Never throws: every outcome is
 * answered (or the client is gone) and reported.
 */
export async function forward(d: ProxyDeps, target: Target, body: ReadBody, req: IncomingMessage, res: ServerResponse): Promise<ProxyOutcome> {
  const gone = new ClientGone();
  const onClose = () => {
    if (!res.writableFinished) gone.abort();
  };
  res.on('close', onClose);
  const deadline = Date.now() + d.retryWindowMs;
  // Members not to try again: hard = failed or unreachable, soft = loading (offered again after a wait).
  const hard = new Set<string>();
  const soft = new Set<string>();
  let delay = 250;
  let retries = 0;
  let attempts = 0;
  let last: { member: Member; what: string } | undefined;
  let reason = '';
  const fail = (err: GatewayHttpError, routedTo?: Member): ProxyOutcome => ({ status: err.status, bytesOut: sendError(res, err), retries, routedTo, error: err.code });
  try {
    for (;;) {
      if (gone.aborted) return { status: 499, bytesOut: 0, retries, routedTo: last?.member, error: 'client_closed' };
      if (attempts > 0 && !body.replayable && last) {
        // A body streamed straight through cannot be sent again.
        const code = d.request.readiness.fatal_types.includes(last.what) ? last.what : reason === 'warming_up' ? 'model_loading' : 'no_live_service';
        const msg = `${last.member.job_id}: ${last.what}; the body was streamed through and cannot be sent again, retry the request`;
        return fail(new GatewayHttpError(503, 'server_error', code, msg, { 'retry-after': '10' }), last.member);
      }
      const m = d.pool.pick(target, hard.size + soft.size === 0 ? NONE : new Set([...hard, ...soft]));
      if (!m) {
        if (soft.size) {
          // Only loading members are left: wait, then offer them again.
          if (Date.now() + delay > deadline)
            return fail(
              new GatewayHttpError(503, 'server_error', 'model_loading', `${last?.member.job_id ?? 'the service'} is still loading (${last?.what ?? 'model_loading'}) after the retry window of ${Math.round(d.retryWindowMs / 1000)} s; retry later`, {
                'retry-after': '10',
              }),
              last?.member,
            );
          await gone.wait(delay);
          if (gone.aborted) continue;
          delay = Math.min(5000, delay * 2);
          soft.clear();
          continue;
        }
        const name = target.kind === 'job' ? target.member.job_id : target.network_arch;
        const why = last ? `: ${last.member.job_id} ${last.what}` : '';
        const detail = d.pool.membersOf(target).map((x) => `${x.job_id} ${x.health}${x.detail ? ` (${x.detail})` : ''}`).join(', ');
        const code = last && d.request.readiness.fatal_types.includes(last.what) ? last.what : 'no_live_service';
        return fail(new GatewayHttpError(503, 'server_error', code, `no live service for ${name}${why || (detail ? `: ${detail}` : '')}`, { 'retry-after': '10' }), last?.member);
      }
      attempts++;
      if (attempts > 1) {
        retries++;
        d.metrics.retries.inc({ reason });
      }
      let headers: Record<string, string>;
      try {
        headers = d.headersFor(m);
      } catch (e) {
        hard.add(m.job_id);
        last = { member: m, what: (e as Error).message };
        reason = 'credentials';
        continue;
      }
      const up = upstreamUrl(m, d.request.endpoint.path);
      const payload = body.open();
      m.inFlight++;
      let released = false;
      const release = () => {
        if (!released) m.inFlight--;
        released = true;
      };
      try {
        const upHeaders: Record<string, string> = { 'content-type': req.headers['content-type'] ?? 'application/json' };
        if (req.headers.accept) upHeaders.accept = req.headers.accept;
        if (body.size !== undefined) upHeaders['content-length'] = String(body.size);
        for (const k in headers) upHeaders[k] = headers[k]!;
        const t0 = performance.now();
        let x: Exchange;
        try {
          x = await exchange(d.agent, { origin: up.origin, path: up.path, method: 'POST', headers: upHeaders, body: payload }, gone, res, m.job_id);
        } catch (e) {
          if (!Buffer.isBuffer(payload)) payload.destroy();
          if (body.failure) return fail(body.failure, m);
          if (gone.aborted) return { status: 499, bytesOut: 0, retries, routedTo: m, error: 'client_closed' };
          const code = (e as { code?: string }).code ?? (e as Error).name;
          if (code === 'UND_ERR_HEADERS_TIMEOUT') {
            d.eject(m, 'down', 'first_byte_timeout');
            return fail(new GatewayHttpError(504, 'server_error', 'upstream_timeout', `${m.job_id} sent no response within ${Math.round(d.firstByteMs / 1000)} s (--first-byte-timeout)`), m);
          }
          if (CONNECTION_ERRORS.has(code)) {
            d.eject(m, 'down', code);
            hard.add(m.job_id);
            last = { member: m, what: `unreachable (${code})` };
            reason = 'connection';
            continue;
          }
          return fail(new GatewayHttpError(502, 'server_error', 'upstream_error', `${m.job_id} failed: ${code}`), m);
        }
        const arch = m.entry.network_arch;
        d.metrics.upstreamLatency.observe({ network_arch: arch }, (x.headersAt - t0) / 1000);
        if (x.kind === 'warm') {
          release();
          if (gone.aborted) return { status: 499, bytesOut: 0, retries, routedTo: m, error: 'client_closed' };
          const err = errorOf(parseJson(x.text));
          const rd = d.request.readiness;
          if (x.status === 503 && rd.fatal_types.includes(err.type)) {
            d.eject(m, 'failed', err.type);
            hard.add(m.job_id);
            last = { member: m, what: err.type };
            reason = 'fatal';
            continue;
          }
          if (x.status === 202 || rd.retry_types.includes(err.type) || rd.loading_types.includes(err.type)) {
            if (m.health === 'ready' || m.health === 'unknown') m.health = 'loading';
            soft.add(m.job_id);
            last = { member: m, what: err.type === 'unknown' ? `HTTP ${x.status}` : err.type };
            reason = 'warming_up';
            continue;
          }
          // Another 503: the service's own answer, passed on.
          const data = Buffer.from(x.text);
          const out = passHeaders(x.headers, m.job_id);
          out['content-length'] = String(data.length);
          res.writeHead(x.status, out);
          res.end(data);
          return { status: x.status, bytesOut: data.length, retries, routedTo: m };
        }
        if (x.kind === 'broke') return { status: gone.aborted ? 499 : x.status, bytesOut: x.bytesOut, retries, routedTo: m, error: gone.aborted ? 'client_closed' : 'upstream_broke_off' };
        return { status: x.status, bytesOut: x.bytesOut, retries, routedTo: m };
      } finally {
        release();
      }
    }
  } finally {
    res.off('close', onClose);
  }
}

/** What one upstream attempt came to. */
type Exchange =
  /** A 202 or 503 answer, read (up to 64 KiB) and not passed on: the caller decides (retry, eject, or pass it on). */
  | { kind: 'warm'; status: number; headers: IncomingHttpHeaders; text: string; headersAt: number }
  /** Any other answer, passed to the client completely. */
  | { kind: 'passed'; status: number; bytesOut: number; headersAt: number }
  /** Any other answer whose passing broke off (upstream failed or the client went away): the response was destroyed. */
  | { kind: 'broke'; status: number; bytesOut: number; headersAt: number };

/**
 * One upstream attempt over undici's dispatch API (a DispatchHandler: onRequestStart, onResponseStart,
 * onResponseData, onResponseEnd, onResponseError; undici docs/docs/api/Dispatcher.md, types/dispatcher.d.ts),
 * which spares a Readable per answer and a pipe. A 202/503 answer is read (up to 64 KiB, cut after that) and
 * returned. Any other answer goes to `res` as it arrives: its headers at once when its length is unknown (a
 * stream), every chunk written as it comes (no buffering, no parsing), undici paused while `res` is full and
 * resumed on 'drain'; settles when `res` finished, or broke off. The client going away (`gone`) aborts the
 * upstream request at any point. Connect, first-byte and idle timeouts are the agent's.
 * Rejects with undici's error when no answer arrived (nothing was sent to the client then).
 */
function exchange(agent: Agent, opts: Dispatcher.DispatchOptions, gone: ClientGone, res: ServerResponse, jobId: string): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let mode: 'head' | 'warm' | 'pass' | 'done' = 'head';
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    let headersAt = 0;
    let text = '';
    let cut = false;
    let bytesOut = 0;
    let draining = false;
    const settle = (x: Exchange | Error) => {
      if (mode === 'done') return;
      mode = 'done';
      gone.off('abort', onGone);
      res.off('drain', onDrain);
      res.off('finish', onFinish);
      if (x instanceof Error) reject(x);
      else resolve(x);
    };
    const onGone = () => {
      if (mode === 'pass') {
        controller?.abort(new errors.RequestAbortedError());
        res.destroy();
        settle({ kind: 'broke', status, bytesOut, headersAt });
      } else controller?.abort(new errors.RequestAbortedError());
    };
    const onDrain = () => {
      draining = false;
      controller?.resume();
    };
    const onFinish = () => settle({ kind: 'passed', status, bytesOut, headersAt });
    gone.once('abort', onGone);
    agent.dispatch(opts, {
      onRequestStart(c) {
        controller = c;
        if (gone.aborted) c.abort(new errors.RequestAbortedError());
      },
      onResponseStart(c, statusCode, h) {
        if (statusCode < 200 || mode !== 'head') return;
        status = statusCode;
        headers = h;
        headersAt = performance.now();
        if (statusCode === 202 || statusCode === 503) {
          mode = 'warm';
          return;
        }
        try {
          res.writeHead(statusCode, passHeaders(h, jobId));
          // A reply of unknown length (a stream) shows its headers at once; a sized one sends them with its first chunk.
          if (h['content-length'] === undefined) res.flushHeaders();
        } catch (e) {
          c.abort(e as Error);
          return;
        }
        mode = 'pass';
      },
      onResponseData(c, chunk) {
        if (mode === 'warm') {
          text += chunk.toString('utf8');
          if (text.length > SMALL_BODY) {
            cut = true;
            c.abort(new errors.ResponseExceededMaxSizeError());
          }
          return;
        }
        if (mode !== 'pass') return;
        bytesOut += chunk.length;
        if (!res.write(chunk) && !draining) {
          draining = true;
          c.pause();
          res.once('drain', onDrain);
        }
      },
      onResponseEnd() {
        if (mode === 'warm') settle({ kind: 'warm', status, headers, text, headersAt });
        else if (mode === 'pass') {
          res.once('finish', onFinish);
          res.end();
        }
      },
      onResponseError(_c, err) {
        if (mode === 'warm') settle({ kind: 'warm', status, headers, text: cut ? text : '', headersAt });
        else if (mode === 'pass') {
          res.destroy();
          settle({ kind: 'broke', status, bytesOut, headersAt });
        } else settle(err);
      },
    });
  });
}

/** The upstream answer's headers without hop-by-hop ones (undici gives names in lower case), plus x-tao-job-id. */
function passHeaders(h: IncomingHttpHeaders, jobId: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const k in h) {
    const v = h[k];
    if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  }
  out['x-tao-job-id'] = jobId;
  return out;
}
