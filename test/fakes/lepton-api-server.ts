/**
 * Fake DGX Cloud Lepton REST API v2 for tao-infer's tests: node:http on 127.0.0.1 (random port), nothing else.
 *
 * Reproduces these documented behaviours (paths and JSON shapes of NVIDIA's Lepton Python SDK,
 * leptonai/api/v2/{deployment,secret,resource_shape,dedicated_node_groups}.py and types/*.py; the gateway layout
 * https://gateway.dgxc-lepton.nvidia.com/api/v2/workspaces/<workspace_id>/...; docs.nvidia.com/dgx-cloud/lepton
 * "Token" and "Endpoint configurations"):
 *  - every call needs `Authorization: Bearer <workspace token>` (401 otherwise); another workspace id → 404;
 *    error bodies are `{"code": ..., "message": ...}` (what the SDK prints).
 *  - GET /shapes?purpose=deployment → [{metadata:{id,name}, spec:{name, listable_in[], accelerator_type, accelerator_num}}]
 *    (filtered by `purpose` against `listable_in`); GET /dedicated-node-groups → [{metadata:{id,name}, spec, status}].
 *  - POST /usersecrets `[{name, value}]` (409 on an existing name, 400 on bad items); GET /usersecrets lists names
 *    only (values are write-only); DELETE /usersecrets/{name} (404 when missing).
 *  - POST /deployments `{metadata:{name}, spec:{container{image, command[], ports[{container_port}]},
 *    resource_requirement{resource_shape, min_replicas, max_replicas, shared_memory_size, affinity{allowed_dedicated_node_groups}},
 *    envs[{name, value} | {name, value_from{secret_name_ref}}], image_pull_secrets[], api_tokens[{value} | {value_from{token_name_ref}}]}}`:
 *    400 on missing/invalid fields (name: lowercase letters, digits, '-', starting with a letter, ≤ 36; unknown
 *    shape, node group or secret reference), 409 on a duplicate name.
 *  - GET /deployments, GET/DELETE /deployments/{name} (404 when missing): status {state, endpoint{internal_endpoint,
 *    external_endpoint}}; state goes Starting → Ready, or "Not Ready" when the replica fails; GET
 *    /deployments/{name}/readiness → {replica_id: [{reason, message, creationTimestamp}]} with reasons
 *    InProgress/Ready/ConfigError/NoCapacity; GET /deployments/{name}/termination → {replica_id: [{started_at,
 *    finished_at, exit_code, reason, message}]}; GET /deployments/{name}/replicas → [{metadata:{id}, id, status}];
 *    GET /deployments/{name}/replicas/{id}/log streams the replica's output and stays open while it runs;
 *    GET /deployments/{name}/events → [].
 *  - the endpoint enforces the deployment's api_tokens (`{value}` tokens): 401 without a matching Bearer token; no
 *    api_tokens = public. The workspace token is no longer accessible to endpoints: the SDK dropped its
 *    `value_from.token_name_ref: WORKSPACE_TOKEN` default ("Workspace token is no longer accessible", leptonai/leptonai
 *    commit 93ed6aae, now leptonai/api/v2/deployment.py `make_token_vars_from_config`), so the fake still accepts
 *    that reference but no token matches it (every request 401). Tokens are user-created and expire (DGX Cloud
 *    Lepton docs "Token", 1 day by default): `expireEndpointToken(value)` makes the gateway refuse one (401).
 *  - resource shapes are lowercase names; the SDK lowercases `resource_shape` before sending
 *    (api/v2/types/deployment.py `ResourceRequirement.validate_resource_shape`): another case → 400.
 *  - `spec.ingress_timeout_seconds` must be 300-6000 (api/v2/types/deployment.py `validate_ingress_timeout_seconds`;
 *    unset = 300, cli/deployment.py `--ingress-timeout-seconds`): 400 otherwise; the endpoint proxy answers 504
 *    when the replica takes longer than that to answer.
 *  - the SDK sends an `origin` header (the workspace URL, or LEPTON_WORKSPACE_ORIGIN_URL) for DGXC workspaces
 *    (api/v2/client.py `APIClient.__init__`, api/v2/utils.py `_get_workspace_origin_url`). With the `origin`
 *    option the fake plays such a workspace and answers 401 to API calls without that header (the gateway's own
 *    answer is not documented; this makes a missing header visible).
 *
 * What the "replica" is: the deployment's command (`/bin/bash -c <inner>`, /bin/sh when bash is absent) runs on this
 * machine with PATH prefixed by test/fixtures/standin/bin (the stand-in microservice), STANDIN_HOST=127.0.0.1,
 * STANDIN_PORT=<free port> (no container, so not 8080), the deployment's envs with secret references resolved, and
 * the external endpoint is a loopback proxy in front of it. State Ready when the stand-in's readiness answers 200.
 * Simplifications: one replica, never restarted (a crash is one termination and state "Not Ready"); no image is pulled.
 * Test knobs: `failNext('image_pull' | 'crash' | 'no_capacity')`, `standinEnv` (extra env for every replica, e.g.
 * STANDIN_LOAD_MS). Every request is recorded (`requests`) with its raw body, for the "no secret in any body except
 * the secret creation call" check.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePort } from '../helpers/ports.js';

export const STANDIN_BIN = resolve(import.meta.dirname, '..', 'fixtures', 'standin', 'bin');

export interface RecordedRequest {
  method: string;
  /** Path under the workspace (e.g. `/deployments`), with query. */
  path: string;
  body: string;
  authorized: boolean;
}

interface Issue {
  reason: string;
  message: string;
  creationTimestamp: string;
}
interface Termination {
  started_at: number;
  finished_at: number;
  exit_code: number;
  reason: string;
  message: string;
}
interface FakeDeployment {
  name: string;
  spec: Record<string, any>;
  createdAt: number;
  state: string;
  replicaId: string;
  proc?: ChildProcess;
  startedAt?: number;
  log: string;
  logListeners: Set<ServerResponse>;
  standinPort: number;
  proxy: http.Server;
  proxyPort: number;
  readiness: Issue[];
  terminations: Termination[];
  poll?: NodeJS.Timeout;
  mode?: FailMode;
  deleted?: boolean;
}

export type FailMode = 'image_pull' | 'crash' | 'no_capacity';

export interface FakeLeptonOptions {
  workspaceId?: string;
  token?: string;
  /** Resource shapes offered (default cpu.small, gpu.1xh100, gpu.2xh100, gpu.8xh100-sxm). */
  shapes?: string[];
  nodeGroups?: { id: string; name: string }[];
  /** Extra env for every replica (e.g. { STANDIN_LOAD_MS: '300' }). */
  standinEnv?: Record<string, string>;
  /** Play a DGXC workspace: API calls must carry this `origin` header. */
  origin?: string;
}

const NAME_RE = /^[a-z]([a-z0-9-]{0,34}[a-z0-9])?$/;
const SECRET_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const now = () => new Date().toISOString();

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
const err = (res: ServerResponse, status: number, code: string, message: string) => send(res, status, { code, message });

export class FakeLeptonApi {
  readonly workspaceId: string;
  readonly token: string;
  readonly requests: RecordedRequest[] = [];
  readonly secrets = new Map<string, string>();
  readonly deployments = new Map<string, FakeDeployment>();
  standinEnv: Record<string, string>;
  private server!: http.Server;
  private port = 0;
  private shapes: string[];
  private nodeGroups: { id: string; name: string }[];
  private nextFail: FailMode | undefined;
  private readonly origin: string | undefined;
  private readonly expiredTokens = new Set<string>();

  private constructor(opts: FakeLeptonOptions) {
    this.workspaceId = opts.workspaceId ?? 'fakews01';
    this.token = opts.token ?? `fake-workspace-token-${randomBytes(6).toString('hex')}`;
    this.shapes = opts.shapes ?? ['cpu.small', 'gpu.1xh100', 'gpu.2xh100', 'gpu.8xh100-sxm'];
    this.nodeGroups = opts.nodeGroups ?? [{ id: 'ng-7f3a9c', name: 'h100-pool' }];
    this.standinEnv = opts.standinEnv ?? {};
    this.origin = opts.origin;
  }

  /** The gateway refuses this endpoint token from now on (it expired or was deleted in the console). */
  expireEndpointToken(value: string): void {
    this.expiredTokens.add(value);
  }

  static async start(opts: FakeLeptonOptions = {}): Promise<FakeLeptonApi> {
    const f = new FakeLeptonApi(opts);
    f.server = http.createServer((req, res) => {
      f.handle(req, res).catch((e) => {
        if (!res.headersSent) err(res, 500, 'InternalError', String((e as Error).message));
      });
    });
    await new Promise<void>((r) => f.server.listen(0, '127.0.0.1', () => r()));
    f.port = (f.server.address() as AddressInfo).port;
    return f;
  }

  /** The workspace API base, what LEPTON_WORKSPACE_URL holds. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/api/v2/workspaces/${this.workspaceId}`;
  }

  /** Env for tao-infer: workspace id, token and URL pointing here. */
  get env(): Record<string, string> {
    return {
      LEPTON_WORKSPACE_ID: this.workspaceId,
      LEPTON_WORKSPACE_TOKEN: this.token,
      LEPTON_WORKSPACE_URL: this.url,
      ...(this.origin ? { LEPTON_WORKSPACE_ORIGIN_URL: this.origin } : {}),
    };
  }

  /** Make the next created deployment fail this way. */
  failNext(mode: FailMode): void {
    this.nextFail = mode;
  }

  async close(): Promise<void> {
    for (const d of this.deployments.values()) await this.destroy(d);
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  // ---------------------------------------------------------------- routing
  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const u = new URL(req.url ?? '/', 'http://x');
    const prefix = `/api/v2/workspaces/`;
    const auth = req.headers.authorization ?? '';
    const authorized = auth === `Bearer ${this.token}` && (this.origin === undefined || req.headers.origin === this.origin);
    const method = req.method ?? 'GET';
    if (!u.pathname.startsWith(prefix)) return err(res, 404, 'NotFound', `no route ${u.pathname}`);
    const rest = u.pathname.slice(prefix.length);
    const slash = rest.indexOf('/');
    const ws = slash < 0 ? rest : rest.slice(0, slash);
    const path = slash < 0 ? '/' : rest.slice(slash);
    this.requests.push({ method, path: `${path}${u.search}`, body, authorized });
    if (!authorized) return err(res, 401, 'Unauthorized', 'invalid or missing token');
    if (ws !== this.workspaceId) return err(res, 404, 'NotFound', `workspace ${ws} not found`);
    const seg = path.split('/').filter(Boolean).map(decodeURIComponent);
    let json: unknown;
    if (body) {
      try {
        json = JSON.parse(body);
      } catch {
        return err(res, 400, 'InvalidRequest', 'request body is not JSON');
      }
    }
    const [a, b, c, d, e] = seg;
    if (a === 'shapes' && !b && method === 'GET') return this.listShapes(res, u.searchParams.get('purpose'));
    if (a === 'dedicated-node-groups' && !b && method === 'GET')
      return send(res, 200, this.nodeGroups.map((g) => ({ metadata: { id: g.id, name: g.name }, spec: {}, status: {} })));
    if (a === 'usersecrets') {
      if (!b && method === 'GET') return send(res, 200, [...this.secrets.keys()].map((name) => ({ name })));
      if (!b && method === 'POST') return this.createSecrets(res, json);
      if (b && !c && method === 'DELETE') {
        if (!this.secrets.delete(b)) return err(res, 404, 'NotFound', `secret ${b} not found`);
        return send(res, 200, {});
      }
    }
    if (a === 'deployments') {
      if (!b && method === 'GET') return send(res, 200, [...this.deployments.values()].map((x) => this.view(x)));
      if (!b && method === 'POST') return this.createDeployment(res, json);
      const dep = b ? this.deployments.get(b) : undefined;
      if (b && !dep) return err(res, 404, 'NotFound', `deployment ${b} not found`);
      if (dep && !c && method === 'GET') return send(res, 200, this.view(dep));
      if (dep && !c && method === 'DELETE') {
        await this.destroy(dep);
        this.deployments.delete(dep.name);
        return send(res, 200, {});
      }
      if (dep && c === 'readiness' && !d && method === 'GET') return send(res, 200, dep.readiness.length ? { [dep.replicaId]: dep.readiness } : {});
      if (dep && c === 'termination' && !d && method === 'GET') return send(res, 200, dep.terminations.length ? { [dep.replicaId]: dep.terminations } : {});
      if (dep && c === 'events' && !d && method === 'GET') return send(res, 200, []);
      if (dep && c === 'replicas' && !d && method === 'GET')
        return send(res, 200, dep.mode === 'no_capacity' ? [] : [{ metadata: { id: dep.replicaId, name: dep.replicaId }, id: dep.replicaId, status: { node: { name: 'fake-node-0', id: 'fake-node-0' } } }]);
      if (dep && c === 'replicas' && d && e === 'log' && method === 'GET') {
        if (d !== dep.replicaId || dep.mode === 'no_capacity') return err(res, 404, 'NotFound', `replica ${d} not found`);
        return this.streamLog(dep, res);
      }
    }
    return err(res, 404, 'NotFound', `no route ${method} ${path}`);
  }

  private listShapes(res: ServerResponse, purpose: string | null): void {
    const all = this.shapes.map((name) => {
      const m = /^gpu\.(\d+)x([a-z0-9]+)/.exec(name);
      return {
        metadata: { id: name, name },
        spec: {
          name,
          listable_in: ['pod', 'deployment', 'job'],
          ...(m ? { accelerator_type: m[2]!.toUpperCase(), accelerator_num: Number(m[1]) } : { accelerator_num: 0 }),
        },
      };
    });
    send(res, 200, purpose ? all.filter((s) => s.spec.listable_in.includes(purpose.toLowerCase())) : all);
  }

  private createSecrets(res: ServerResponse, json: unknown): void {
    if (!Array.isArray(json) || !json.length) return err(res, 400, 'InvalidRequest', 'body must be a non-empty array of {name, value}');
    for (const it of json) {
      if (!it || typeof it !== 'object' || typeof it.name !== 'string' || typeof it.value !== 'string')
        return err(res, 400, 'InvalidRequest', 'each secret needs a string name and value');
      if (!SECRET_RE.test(it.name)) return err(res, 400, 'InvalidRequest', `invalid secret name ${it.name}`);
      if (this.secrets.has(it.name)) return err(res, 409, 'AlreadyExists', `secret ${it.name} already exists`);
    }
    for (const it of json as { name: string; value: string }[]) this.secrets.set(it.name, it.value);
    send(res, 200, {});
  }

  private view(d: FakeDeployment) {
    return {
      metadata: { id: d.name, name: d.name, created_at: d.createdAt, version: 1 },
      spec: d.spec,
      status: {
        state: d.state,
        endpoint: { internal_endpoint: `http://${d.name}.${this.workspaceId}.svc.cluster.local:8080`, external_endpoint: `http://127.0.0.1:${d.proxyPort}` },
      },
    };
  }

  // ---------------------------------------------------------------- deployments
  private async createDeployment(res: ServerResponse, json: any): Promise<void> {
    const bad = (m: string) => err(res, 400, 'InvalidRequest', m);
    if (!json || typeof json !== 'object') return bad('body must be a deployment object');
    const name = json.metadata?.name;
    if (typeof name !== 'string' || !NAME_RE.test(name))
      return bad(`invalid deployment name ${JSON.stringify(name)}: lowercase letters, digits and '-', starting with a letter, at most 36 characters`);
    if (this.deployments.has(name)) return err(res, 409, 'AlreadyExists', `deployment ${name} already exists`);
    const spec = json.spec;
    if (!spec || typeof spec !== 'object') return bad('spec is required');
    const cont = spec.container;
    if (!cont || typeof cont.image !== 'string' || !cont.image) return bad('spec.container.image is required');
    if (!Array.isArray(cont.command) || !cont.command.length || !cont.command.every((x: unknown) => typeof x === 'string')) return bad('spec.container.command must be a non-empty string array');
    if (!Array.isArray(cont.ports) || !cont.ports.every((p: any) => Number.isInteger(p?.container_port) && p.container_port > 0 && p.container_port < 65536))
      return bad('spec.container.ports must be [{container_port}]');
    const rr = spec.resource_requirement;
    if (!rr || typeof rr.resource_shape !== 'string') return bad('spec.resource_requirement.resource_shape is required');
    if (!this.shapes.includes(rr.resource_shape)) return bad(`invalid resource shape ${rr.resource_shape}`);
    if (rr.min_replicas !== undefined && !(Number.isInteger(rr.min_replicas) && rr.min_replicas >= 0)) return bad('min_replicas must be a non-negative integer');
    if (rr.max_replicas !== undefined && !(Number.isInteger(rr.max_replicas) && rr.max_replicas >= (rr.min_replicas ?? 0))) return bad('max_replicas must be ≥ min_replicas');
    if (rr.shared_memory_size !== undefined && !(Number.isInteger(rr.shared_memory_size) && rr.shared_memory_size > 0)) return bad('shared_memory_size must be a positive integer (MiB)');
    const ngs: unknown = rr.affinity?.allowed_dedicated_node_groups;
    if (ngs !== undefined) {
      if (!Array.isArray(ngs)) return bad('allowed_dedicated_node_groups must be an array');
      for (const id of ngs) if (!this.nodeGroups.some((g) => g.id === id)) return bad(`dedicated node group ${id} not found`);
    }
    const envs = spec.envs ?? [];
    if (!Array.isArray(envs)) return bad('spec.envs must be an array');
    for (const ev of envs) {
      if (!ev || typeof ev.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(ev.name)) return bad(`invalid env name ${JSON.stringify(ev?.name)}`);
      const hasValue = typeof ev.value === 'string';
      const ref = ev.value_from?.secret_name_ref;
      if (hasValue === (ref !== undefined)) return bad(`env ${ev.name} needs exactly one of value or value_from.secret_name_ref`);
      if (ref !== undefined && !this.secrets.has(ref)) return bad(`secret ${ref} referenced by env ${ev.name} not found`);
    }
    const ingress = spec.ingress_timeout_seconds;
    if (ingress !== undefined && !(Number.isInteger(ingress) && ingress >= 300 && ingress <= 6000)) return bad('ingress_timeout_seconds must be between 300 and 6000 seconds.');
    const tokens = spec.api_tokens ?? [];
    if (!Array.isArray(tokens)) return bad('spec.api_tokens must be an array');
    for (const t of tokens) {
      if (typeof t?.value === 'string' && t.value) continue;
      if (t?.value_from?.token_name_ref === 'WORKSPACE_TOKEN') continue;
      return bad('api_tokens items are {value} or {value_from: {token_name_ref: "WORKSPACE_TOKEN"}}');
    }
    if (spec.image_pull_secrets !== undefined && !(Array.isArray(spec.image_pull_secrets) && spec.image_pull_secrets.every((x: unknown) => typeof x === 'string')))
      return bad('image_pull_secrets must be a string array');

    const mode = this.nextFail;
    this.nextFail = undefined;
    const proxyPort = await freePort();
    const d: FakeDeployment = {
      name,
      spec,
      createdAt: Date.now(),
      state: 'Starting',
      replicaId: `${name}-${randomBytes(3).toString('hex')}-${randomBytes(2).toString('hex')}`,
      log: '',
      logListeners: new Set(),
      standinPort: await freePort(),
      proxy: http.createServer((q, s) => this.proxyRequest(d, q, s)),
      proxyPort,
      readiness: [{ reason: 'InProgress', message: 'replica is starting', creationTimestamp: now() }],
      terminations: [],
      mode,
    };
    await new Promise<void>((r) => d.proxy.listen(proxyPort, '127.0.0.1', () => r()));
    this.deployments.set(name, d);
    send(res, 200, this.view(d));
    this.run(d);
  }

  private run(d: FakeDeployment): void {
    if (d.mode === 'image_pull') {
      setTimeout(() => {
        if (d.deleted) return;
        d.state = 'Not Ready';
        d.readiness = [
          {
            reason: 'ConfigError',
            message: `Back-off pulling image "${d.spec.container.image}": ErrImagePull: failed to pull and unpack image: 401 Unauthorized`,
            creationTimestamp: now(),
          },
        ];
      }, 300);
      return;
    }
    if (d.mode === 'no_capacity') {
      d.readiness = [{ reason: 'NoCapacity', message: `no node with free capacity for resource shape ${d.spec.resource_requirement.resource_shape}`, creationTimestamp: now() }];
      return;
    }
    const cmd: string[] = [...d.spec.container.command];
    if (cmd[0] === '/bin/bash' && !existsSync('/bin/bash')) cmd[0] = '/bin/sh';
    const env: Record<string, string> = {
      PATH: `${STANDIN_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: process.env.HOME ?? '/tmp',
      STANDIN_HOST: '127.0.0.1',
      STANDIN_PORT: String(d.standinPort),
      STANDIN_EXIT_WITH_PARENT: '1',
      ...this.standinEnv,
      ...(d.mode === 'crash' ? { STANDIN_CRASH_AT_START: '1' } : {}),
    };
    for (const ev of d.spec.envs ?? []) env[ev.name] = typeof ev.value === 'string' ? ev.value : (this.secrets.get(ev.value_from.secret_name_ref) ?? '');
    const proc = spawn(cmd[0]!, cmd.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    d.proc = proc;
    d.startedAt = Date.now();
    const onData = (b: Buffer) => {
      const s = b.toString('utf8');
      d.log += s;
      for (const l of d.logListeners) l.write(s);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('error', (e) => onData(Buffer.from(`exec failed: ${e.message}\n`)));
    proc.on('exit', (code, signal) => {
      d.proc = undefined;
      if (d.poll) clearInterval(d.poll);
      for (const l of d.logListeners) l.end();
      d.logListeners.clear();
      if (d.deleted) return;
      const exit = code ?? (signal ? 137 : 1);
      const lastLine = d.log.trim().split('\n').pop() ?? '';
      d.terminations.push({ started_at: Math.floor((d.startedAt ?? Date.now()) / 1000), finished_at: Math.floor(Date.now() / 1000), exit_code: exit, reason: exit === 0 ? 'Completed' : 'Error', message: lastLine.slice(0, 300) });
      d.state = 'Not Ready';
      d.readiness = [{ reason: 'InProgress', message: `container exited with code ${exit}`, creationTimestamp: now() }];
    });
    d.poll = setInterval(() => {
      if (!d.proc || d.deleted) return;
      const q = http.get({ host: '127.0.0.1', port: d.standinPort, path: '/api/v1/health/readiness', timeout: 1000 }, (r) => {
        r.resume();
        if (d.deleted || !d.proc) return;
        if (r.statusCode === 200) {
          if (d.state !== 'Ready') d.readiness = [{ reason: 'Ready', message: '', creationTimestamp: now() }];
          d.state = 'Ready';
        }
      });
      q.on('error', () => undefined);
      q.on('timeout', () => q.destroy());
    }, 200);
  }

  private streamLog(d: FakeDeployment, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    if (d.log) res.write(d.log);
    if (!d.proc) {
      res.end();
      return;
    }
    d.logListeners.add(res);
    res.on('close', () => d.logListeners.delete(res));
  }

  /** The external endpoint: api token check, then forward to the replica. */
  private proxyRequest(d: FakeDeployment, req: IncomingMessage, res: ServerResponse): void {
    const tokens: any[] = d.spec.api_tokens ?? [];
    if (tokens.length) {
      // A WORKSPACE_TOKEN reference matches nothing: the workspace token is no longer accessible (see the header).
      const allowed = tokens.filter((t) => typeof t.value === 'string' && !this.expiredTokens.has(t.value)).map((t) => t.value as string);
      const got = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!got || !allowed.includes(got)) {
        req.resume();
        res.writeHead(401, { 'content-type': 'text/plain' });
        res.end('Unauthorized: missing or invalid endpoint token');
        return;
      }
    }
    const headers = { ...req.headers };
    delete headers.authorization;
    const ingressMs = (d.spec.ingress_timeout_seconds ?? 300) * 1000;
    const up = http.request({ host: '127.0.0.1', port: d.standinPort, method: req.method, path: req.url, headers, timeout: ingressMs }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('timeout', () => {
      up.destroy();
      if (!res.headersSent) {
        res.writeHead(504, { 'content-type': 'text/plain' });
        res.end('upstream request timeout');
      } else res.destroy();
    });
    up.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(503, { 'content-type': 'text/plain' });
        res.end('no healthy upstream');
      } else res.destroy();
    });
    req.pipe(up);
  }

  private async destroy(d: FakeDeployment): Promise<void> {
    d.deleted = true;
    if (d.poll) clearInterval(d.poll);
    const p = d.proc;
    if (p?.pid) {
      try {
        process.kill(-p.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      const done = new Promise<void>((r) => p.once('exit', () => r()));
      const t = setTimeout(() => {
        try {
          process.kill(-p.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 2000);
      await done;
      clearTimeout(t);
    }
    for (const l of d.logListeners) l.end();
    d.proxy.closeAllConnections();
    await new Promise<void>((r) => d.proxy.close(() => r()));
  }
}
