/**
 * The gateway's HTTP server (issue 12): one OpenAI-compatible base URL for every service in the registry.
 *
 *   GET  /health                              liveness, no auth
 *   GET  /metrics                             Prometheus text (prom-client)
 *   GET  /v1/models, /v1/models/{id}          routable job_ids and network_arch aliases, from registry + live health
 *   POST /v1/chat/completions                 routed by the body's `model` (job_id, network_arch, unique job_id prefix)
 *   POST /v1/jobs/{job_id}/chat/completions   routed by the path (also: header x-tao-job-id on the route above)
 *
 * Built on node:http and undici (loaded only by `tao-infer gateway` / startGateway). See README.md § gateway.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'undici';
import { InvalidInputError, UserError } from '../errors.js';
import { authHeaders } from '../deps.js';
import { loadReferences } from '../references.js';
import { crossCheck, type ChatBody } from '../service/request-body.js';
import { AccessLog, type AccessRecord } from './access-log.js';
import { passThroughBody, readBody, type ReadBody } from './body.js';
import { ByteBudget } from './budget.js';
import { badRequest, GatewayHttpError, sendError, sendJson } from './http-error.js';
import { GatewayMetrics } from './metrics.js';
import { resolveOptions, type GatewayOptions } from './options.js';
import { Pool, routable, type Member, type Target } from './pool.js';
import { Prober } from './prober.js';
import { forward, type ProxyDeps } from './proxy.js';
import { watchRegistry } from './registry-watch.js';

/** A running gateway. */
export interface Gateway {
  /** Base URL, e.g. `http://127.0.0.1:8000` (OpenAI clients use `${url}/v1`). */
  url: string;
  /** Stop accepting, let requests in flight finish (up to the drain timeout), then release everything. */
  close(): Promise<void>;
}

const JOB_PATH = /^\/v1\/jobs\/([^/]+)\/chat\/completions$/;
const notFound = (model: string) =>
  new GatewayHttpError(404, 'invalid_request_error', 'model_not_found', `The model '${model}' does not exist: no running service has that job_id, network_arch or job_id prefix (GET /v1/models lists them)`);

function epoch(iso: string | undefined): number {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? Math.floor(t / 1000) : 0;
}

/**
 * Start the gateway and resolve once it listens.
 * @throws InvalidInputError (bad options, port in use, api key env var unset, non-loopback without a key, log file not writable); registry problems are only warned about
 */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const o = resolveOptions(options);
  const refs = loadReferences();
  const pool = new Pool();
  const budget = new ByteBudget(o.byteBudget);
  let active = 0;
  const metrics = new GatewayMetrics({ inFlight: () => active, bodyBytes: () => budget.inUse });
  const keyHash = o.apiKey ? createHash('sha256').update(o.apiKey).digest() : undefined;
  const log = o.logFile ? new AccessLog(o.logFile, (e) => o.warn(`access log ${o.logFile}: ${e.message}; logging stopped`)) : undefined;
  const spoolDir = await fsp.mkdtemp(join(tmpdir(), 'tao-gateway-'));
  const agent = new Agent({ connect: { timeout: o.connectMs }, headersTimeout: o.firstByteMs, bodyTimeout: o.idleMs, keepAliveTimeout: 4000 });
  const headersFor = (m: Member) => authHeaders(m.entry, o.env);
  const countMembers = () => {
    metrics.members.reset();
    for (const m of pool.members.values()) metrics.members.inc({ health: m.health });
  };
  const prober = new Prober(pool, {
    intervalMs: o.probeIntervalMs,
    timeoutMs: Math.min(5000, Math.max(500, o.probeIntervalMs)),
    concurrency: 8,
    readiness: refs.request.readiness,
    headersFor,
    onChange: (m, from) => {
      if ((m.health === 'down' || m.health === 'failed') && from !== 'down' && from !== 'failed') {
        metrics.ejections.inc({ reason: `probe_${m.health}` });
        o.warn(`${m.job_id} (${m.entry.network_arch}) is ${m.health}: ${m.detail}; out of rotation`);
      }
      countMembers();
    },
  });
  const eject = (m: Member, health: 'down' | 'failed', reason: string) => {
    if (m.health !== health) {
      metrics.ejections.inc({ reason });
      o.warn(`${m.job_id} (${m.entry.network_arch}) ejected: ${reason}`);
    }
    m.health = health;
    m.detail = reason;
    countMembers();
  };
  const watcher = await watchRegistry(
    o.stateFile,
    (s) => {
      const { added } = pool.sync(s);
      countMembers();
      if (added.length) void prober.probe(added);
    },
    (e) => o.warn(`registry ${o.stateFile}: ${e.message}; keeping the last services read`),
    o.registryPollMs,
  );
  await prober.probe([...pool.members.keys()]);
  prober.start();

  const authorized = (req: IncomingMessage): boolean => {
    if (!keyHash) return true;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    return timingSafeEqual(createHash('sha256').update(m[1]!.trim()).digest(), keyHash);
  };

  /** The target of a resolved name. @throws GatewayHttpError 404 (unknown), 400 (ambiguous prefix), 503 (that job failed to load) */
  const accept = (name: string, r: ReturnType<Pool['resolve']>): Target => {
    if (r.kind === 'none') throw notFound(name);
    if (r.kind === 'ambiguous') throw badRequest(`'${name}' is a prefix of several job_ids (${r.candidates.join(', ')}); give more of it`, 'ambiguous_model');
    if (r.kind === 'job' && r.member.health === 'failed')
      throw new GatewayHttpError(503, 'server_error', r.member.detail ?? 'model_load_error', `${r.member.job_id} failed to load its model (${r.member.detail}); see 'tao-infer logs ${r.member.job_id}'`);
    return r;
  };
  /** Find the target of a name, re-reading the registry once when it is unknown (a service just started). */
  const resolveName = async (name: string): Promise<Target> => {
    const r = pool.resolve(name);
    if (r.kind !== 'none') return accept(name, r);
    await watcher.refresh();
    return accept(name, pool.resolve(name));
  };

  const models = async () => {
    await watcher.refresh();
    const unknown = [...pool.members.values()].filter((m) => m.health === 'unknown').map((m) => m.job_id);
    if (unknown.length) await prober.probe(unknown);
    const live = [...pool.members.values()].filter(routable).sort((a, b) => a.entry.started_at.localeCompare(b.entry.started_at));
    const data: Array<Record<string, unknown>> = live.map((m) => ({
      id: m.job_id,
      object: 'model',
      created: epoch(m.entry.started_at),
      owned_by: 'tao-infer',
      network_arch: m.entry.network_arch,
      platform: m.entry.platform,
      state: m.health,
      ...(typeof m.entry.expires_at === 'string' ? { expires_at: m.entry.expires_at } : {}),
    }));
    for (const arch of [...new Set(live.map((m) => m.entry.network_arch))].sort()) {
      const ms = live.filter((m) => m.entry.network_arch === arch);
      const platforms = [...new Set(ms.map((m) => m.entry.platform))];
      data.push({
        id: arch,
        object: 'model',
        created: Math.min(...ms.map((m) => epoch(m.entry.started_at))),
        owned_by: 'tao-infer',
        network_arch: arch,
        platform: platforms.length === 1 ? platforms[0] : platforms.join(','),
        state: ms.some((m) => m.health === 'ready') ? 'ready' : 'loading',
        members: ms.map((m) => m.job_id),
      });
    }
    return data;
  };

  /** The per-arch checks of `request` (contract §7) on a body or its skeleton. @throws GatewayHttpError 400 */
  const checkArch = (arch: string, doc: Record<string, unknown>) => {
    try {
      crossCheck(refs, arch, doc as ChatBody);
    } catch (e) {
      if (e instanceof InvalidInputError) throw badRequest(`${e.message} (network_arch ${arch})`, 'invalid_for_network_arch');
      throw e;
    }
  };

  const limits = { maxBytes: o.maxBodyBytes, spoolAbove: o.spoolAbove, parseLimit: o.parseLimit, spoolDir, budget };
  const proxyDeps: ProxyDeps = { pool, agent, metrics, request: refs.request, retryWindowMs: o.retryWindowMs, firstByteMs: o.firstByteMs, idleMs: o.idleMs, headersFor, eject };

  const chat = async (req: IncomingMessage, res: ServerResponse, rec: AccessRecord, label: { model: string }, jobFromPath?: string) => {
    const header = req.headers['x-tao-job-id'];
    const early = jobFromPath ?? (typeof header === 'string' && header ? header : undefined);
    let target = early !== undefined ? await resolveName(decodeURIComponent(early)) : undefined;
    const declared = Number(req.headers['content-length'] ?? NaN);
    // A large body for a known, ready service streams straight through; anything else is read (and spooled) first.
    const through = target?.kind === 'job' && target.member.health === 'ready' && declared > o.parseLimit;
    const body: ReadBody = through
      ? passThroughBody(req, declared, limits, (doc) => checkArch((target as { member: Member }).member.entry.network_arch, doc))
      : await readBody(req, limits);
    try {
      rec.bytes_in = body.size;
      rec.model = early ?? body.model ?? null;
      if (!target) {
        if (!body.model) throw badRequest("the body has no 'model': give a job_id or network_arch (GET /v1/models lists them), or use /v1/jobs/{job_id}/chat/completions", 'model_required');
        const r = pool.resolve(body.model);
        target = r.kind === 'none' ? await resolveName(body.model) : accept(body.model, r);
      }
      const arch = target.kind === 'job' ? target.member.entry.network_arch : target.network_arch;
      rec.network_arch = arch;
      label.model = target.kind === 'job' ? target.member.job_id : arch;
      if (!through) checkArch(arch, body.doc);
      const out = await forward(proxyDeps, target, body, req, res);
      rec.stream = body.stream;
      rec.status = out.status;
      rec.bytes_out = out.bytesOut;
      rec.retries = out.retries;
      rec.routed_to = out.routedTo?.job_id ?? null;
      if (out.error) rec.error = out.error;
    } finally {
      await body.dispose();
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, rec: AccessRecord, label: { model: string }) => {
    const path = rec.path;
    if (path === '/health') {
      rec.bytes_out = sendJson(res, req.method === 'GET' || req.method === 'HEAD' ? 200 : 405, { status: 'ok' });
      return;
    }
    if (!authorized(req)) throw new GatewayHttpError(401, 'authentication_error', 'invalid_api_key', 'missing or wrong api key: send Authorization: Bearer <key>', { 'www-authenticate': 'Bearer' });
    const route = `${req.method} ${path}`;
    if (route === 'GET /metrics') {
      const m = await metrics.text();
      const data = Buffer.from(m.body);
      res.writeHead(200, { 'content-type': m.contentType, 'content-length': String(data.length) });
      res.end(data);
      rec.bytes_out = data.length;
      return;
    }
    if (route === 'GET /v1/models') {
      rec.bytes_out = sendJson(res, 200, { object: 'list', data: await models() });
      return;
    }
    if (req.method === 'GET' && path.startsWith('/v1/models/')) {
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      const hit = (await models()).find((m) => m.id === id);
      if (!hit) throw notFound(id);
      rec.bytes_out = sendJson(res, 200, hit);
      return;
    }
    const job = JOB_PATH.exec(path);
    if (req.method === 'POST' && (path === '/v1/chat/completions' || job)) return chat(req, res, rec, label, job?.[1]);
    if (path === '/v1/chat/completions' || job || path === '/v1/models' || path === '/metrics')
      throw new GatewayHttpError(405, 'invalid_request_error', 'method_not_allowed', `${req.method} is not allowed on ${path}`);
    throw new GatewayHttpError(404, 'invalid_request_error', 'not_found', `no route for ${req.method} ${path}`);
  };

  const server = createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    active++;
    const t0 = performance.now();
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const rec: AccessRecord = {
      time: '',
      method: req.method ?? '',
      path: query < 0 ? url : url.slice(0, query),
      model: null,
      routed_to: null,
      network_arch: null,
      status: 0,
      latency_ms: 0,
      bytes_in: 0,
      bytes_out: 0,
      retries: 0,
      stream: false,
    };
    const label = { model: 'unknown' };
    handle(req, res, rec, label)
      .catch((e: unknown) => {
        const err = e instanceof GatewayHttpError ? e : e instanceof UserError ? badRequest(e.message) : new GatewayHttpError(500, 'server_error', 'gateway_error', 'the gateway failed on this request');
        if (!(e instanceof GatewayHttpError) && !(e instanceof UserError)) o.warn(`unexpected failure on ${rec.method} ${rec.path}: ${(e as Error)?.message}`);
        rec.status = err.status;
        rec.error = err.code;
        // An unread body: answer, then close the connection rather than read the rest.
        if (!req.complete) res.setHeader('connection', 'close');
        rec.bytes_out = sendError(res, err);
        if (!req.complete) res.once('finish', () => req.socket.destroySoon?.());
      })
      .finally(() => {
        if (!rec.status) rec.status = res.statusCode;
        const ms = performance.now() - t0;
        rec.latency_ms = Math.round(ms * 100) / 100;
        if (rec.method === 'POST') metrics.requests.inc({ model: label.model, status: String(rec.status) });
        if (log) {
          rec.time = new Date(Date.now() - ms).toISOString();
          log.write(rec);
        }
        active--;
      });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      watcher.close();
      prober.stop();
      void agent.destroy();
      void log?.close();
      void fsp.rm(spoolDir, { recursive: true, force: true });
      if (e.code === 'EADDRINUSE') reject(new InvalidInputError('--port', `${o.host}:${o.port} is already in use`, { hint: 'Pick another --port (0 takes any free one).' }));
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'EACCES') reject(new InvalidInputError('--host', `cannot listen on ${o.host}:${o.port} (${e.code})`));
      else reject(e);
    });
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const host = o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    close() {
      closing ??= (async () => {
        server.close();
        server.closeIdleConnections();
        const until = Date.now() + o.drainMs;
        while (active > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        server.closeAllConnections();
        watcher.close();
        prober.stop();
        await (active > 0 ? agent.destroy() : agent.close()).catch(() => undefined);
        await log?.close();
        await fsp.rm(spoolDir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}
