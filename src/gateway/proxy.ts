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
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent, Dispatcher } from 'undici';
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

/** Read at most `limit` characters of a small upstream body (warm-up answers). */
async function readSmall(body: Dispatcher.ResponseData['body'], limit = SMALL_BODY): Promise<string> {
  let text = '';
  for await (const c of body) {
    text += (c as Buffer).toString('utf8');
    if (text.length > limit) {
      body.destroy();
      break;
    }
  }
  return text;
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
  const ac = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) ac.abort();
  };
  res.on('close', onClose);
  const deadline = Date.now() + d.retryWindowMs;
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
      if (ac.signal.aborted) return { status: 499, bytesOut: 0, retries, routedTo: last?.member, error: 'client_closed' };
      if (attempts > 0 && !body.replayable && last) {
        // A body streamed straight through cannot be sent again.
        const code = d.request.readiness.fatal_types.includes(last.what) ? last.what : reason === 'warming_up' ? 'model_loading' : 'no_live_service';
        const msg = `${last.member.job_id}: ${last.what}; the body was streamed through and cannot be sent again, retry the request`;
        return fail(new GatewayHttpError(503, 'server_error', code, msg, { 'retry-after': '10' }), last.member);
      }
      const m = d.pool.pick(target, new Set([...hard, ...soft]));
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
          try {
            await sleep(delay, undefined, { signal: ac.signal });
          } catch {
            continue;
          }
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
        const t0 = process.hrtime.bigint();
        let r: Dispatcher.ResponseData;
        try {
          r = await d.agent.request({
            origin: up.origin,
            path: up.path,
            method: 'POST',
            headers: {
              'content-type': String(req.headers['content-type'] ?? 'application/json'),
              ...(req.headers.accept ? { accept: String(req.headers.accept) } : {}),
              ...(body.size !== undefined ? { 'content-length': String(body.size) } : {}),
              ...headers,
            },
            body: payload,
            signal: ac.signal,
          });
        } catch (e) {
          if (!Buffer.isBuffer(payload)) payload.destroy();
          if (body.failure) return fail(body.failure, m);
          if (ac.signal.aborted) return { status: 499, bytesOut: 0, retries, routedTo: m, error: 'client_closed' };
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
        d.metrics.upstreamLatency.observe({ network_arch: arch }, Number(process.hrtime.bigint() - t0) / 1e9);
        if (r.statusCode === 202 || r.statusCode === 503) {
          const text = await readSmall(r.body).catch(() => '');
          release();
          const err = errorOf(parseJson(text));
          const rd = d.request.readiness;
          if (r.statusCode === 503 && rd.fatal_types.includes(err.type)) {
            d.eject(m, 'failed', err.type);
            hard.add(m.job_id);
            last = { member: m, what: err.type };
            reason = 'fatal';
            continue;
          }
          if (r.statusCode === 202 || rd.retry_types.includes(err.type) || rd.loading_types.includes(err.type)) {
            if (m.health === 'ready' || m.health === 'unknown') m.health = 'loading';
            soft.add(m.job_id);
            last = { member: m, what: err.type === 'unknown' ? `HTTP ${r.statusCode}` : err.type };
            reason = 'warming_up';
            continue;
          }
          // Another 503: the service's own answer, passed on.
          const data = Buffer.from(text);
          res.writeHead(r.statusCode, { ...passHeaders(r.headers), 'content-length': String(data.length), 'x-tao-job-id': m.job_id });
          res.end(data);
          return { status: r.statusCode, bytesOut: data.length, retries, routedTo: m };
        }
        res.writeHead(r.statusCode, { ...passHeaders(r.headers), 'x-tao-job-id': m.job_id });
        // A reply of unknown length (a stream) shows its headers at once; a sized one sends them with its first chunk.
        if (r.headers['content-length'] === undefined) res.flushHeaders();
        const sized = Number(r.headers['content-length']);
        let bytesOut = Number.isFinite(sized) ? sized : 0;
        if (!Number.isFinite(sized)) r.body.on('data', (c: Buffer) => (bytesOut += c.length));
        try {
          await pipe(r.body, res);
        } catch {
          res.destroy();
          return { status: ac.signal.aborted ? 499 : r.statusCode, bytesOut, retries, routedTo: m, error: ac.signal.aborted ? 'client_closed' : 'upstream_broke_off' };
        }
        return { status: r.statusCode, bytesOut, retries, routedTo: m };
      } finally {
        release();
      }
    }
  } finally {
    res.off('close', onClose);
  }
}

/** Pipe upstream body into the response; resolves when the response is finished, rejects when either side breaks. */
function pipe(src: Dispatcher.ResponseData['body'], res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: unknown) => {
      cleanup();
      src.destroy();
      reject(e instanceof Error ? e : new Error(String(e)));
    };
    const onFinish = () => {
      cleanup();
      resolve();
    };
    const onResClose = () => {
      if (!res.writableFinished) onError(new Error('client closed'));
    };
    const cleanup = () => {
      src.off('error', onError);
      res.off('finish', onFinish);
      res.off('close', onResClose);
    };
    src.on('error', onError);
    res.on('finish', onFinish);
    res.on('close', onResClose);
    src.pipe(res);
  });
}

function passHeaders(h: Dispatcher.ResponseData['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  return out;
}
