/**
 * Minimal client for the DGX Cloud Lepton REST API v2 (contract §8 lepton), with Node's fetch.
 * Paths and JSON shapes follow NVIDIA's Lepton Python SDK (leptonai/api/v2: deployment.py, secret.py,
 * resource_shape.py, dedicated_node_groups.py and types/*). Every call carries `Authorization: Bearer <token>`;
 * the token is read from the environment and never logged, stored or put in an error message.
 */
import { PlatformError, PlatformUnavailableError } from '../../errors.js';
import { BODY_CAPS, BodyTooLargeError, readBodyCapped, textCapped } from '../../util/http.js';

export const DEFAULT_GATEWAY = 'https://gateway.dgxc-lepton.nvidia.com';

export interface LeptonConfig {
  /** Workspace API base, e.g. https://gateway.dgxc-lepton.nvidia.com/api/v2/workspaces/<id> (no trailing slash). */
  baseUrl: string;
  token: string;
  workspaceId?: string;
  /** `origin` header value: sent on every call when set (DGXC workspaces need it). */
  originUrl?: string;
}

const TOKEN_HINT = 'export LEPTON_WORKSPACE_ID=<workspace id> and LEPTON_WORKSPACE_TOKEN=<token> (Settings → Tokens in the Lepton console).';

/**
 * The `origin` header the SDK sends: LEPTON_WORKSPACE_ORIGIN_URL, else the workspace URL itself when it is a DGX Cloud
 * URL (contains "dgxc"), else none (leptonai/leptonai leptonai/api/v2/client.py `APIClient.__init__` and
 * api/v2/utils.py `_get_workspace_origin_url`).
 */
export function workspaceOrigin(url: string, env: NodeJS.ProcessEnv): string | undefined {
  return env.LEPTON_WORKSPACE_ORIGIN_URL || (url.includes('dgxc') ? url : undefined);
}

/**
 * Workspace URL and token from the environment: LEPTON_WORKSPACE_URL (full workspace API URL) or
 * LEPTON_WORKSPACE_ID, and LEPTON_WORKSPACE_TOKEN; the `origin` header from `workspaceOrigin`.
 * `baseUrl` overrides the URL (registry entries keep theirs).
 * @throws PlatformUnavailableError naming what is missing
 */
export function leptonConfig(env: NodeJS.ProcessEnv, baseUrl?: string): LeptonConfig {
  const token = env.LEPTON_WORKSPACE_TOKEN;
  const workspaceId = env.LEPTON_WORKSPACE_ID || undefined;
  let url = baseUrl || env.LEPTON_WORKSPACE_URL;
  if (!url) {
    if (!workspaceId) throw new PlatformUnavailableError('lepton', 'LEPTON_WORKSPACE_ID is not set', { hint: TOKEN_HINT });
    if (!/^[A-Za-z0-9_-]+$/.test(workspaceId)) throw new PlatformUnavailableError('lepton', `LEPTON_WORKSPACE_ID '${workspaceId}' is not a workspace id`, { hint: TOKEN_HINT });
    url = `${DEFAULT_GATEWAY}/api/v2/workspaces/${workspaceId}`;
  }
  if (!/^https?:\/\//.test(url)) throw new PlatformUnavailableError('lepton', `LEPTON_WORKSPACE_URL '${url}' is not an http(s) URL`, { hint: TOKEN_HINT });
  if (!token) throw new PlatformUnavailableError('lepton', 'LEPTON_WORKSPACE_TOKEN is not set', { hint: TOKEN_HINT });
  const base = url.replace(/\/+$/, '');
  const originUrl = workspaceOrigin(base, env);
  return { baseUrl: base, token, workspaceId, ...(originUrl ? { originUrl } : {}) };
}

/** A non-2xx answer of the Lepton API: `{code, message}` bodies as the SDK reads them. */
export class LeptonApiError extends PlatformError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly apiCode: string,
    readonly apiMessage: string,
  ) {
    super('lepton_api_error', `Lepton API ${method} ${path} answered HTTP ${status}${apiCode ? ` ${apiCode}` : ''}: ${apiMessage || '(no message)'}`);
  }
  override details() {
    return { method: this.method, path: this.path, status: this.status, api_code: this.apiCode };
  }
}

export interface Metadata {
  id?: string;
  name?: string;
  [k: string]: unknown;
}
export interface EnvVar {
  name: string;
  value?: string;
  value_from?: { secret_name_ref: string };
}
/** An endpoint api token: a literal value (the SDK's `TokenVar(value=...)`; the workspace token reference is gone). */
export interface TokenVar {
  value: string;
}
export interface DeploymentSpec {
  container: { image: string; command: string[]; ports: { container_port: number; protocol?: string }[] };
  resource_requirement: {
    resource_shape: string;
    min_replicas: number;
    max_replicas: number;
    shared_memory_size?: number;
    affinity?: { allowed_dedicated_node_groups: string[] };
  };
  envs: EnvVar[];
  image_pull_secrets?: string[];
  /** Empty = public endpoint. */
  api_tokens: TokenVar[];
  /** Seconds the ingress waits for a response, 300-6000 (Lepton default 300). */
  ingress_timeout_seconds?: number;
}
export interface Deployment {
  metadata: Metadata;
  spec?: Partial<DeploymentSpec>;
  status?: { state?: string; endpoint?: { internal_endpoint?: string; external_endpoint?: string } };
}
export interface ReplicaIssue {
  reason: string;
  message: string;
  creationTimestamp?: string;
}
export interface ReplicaTermination {
  started_at?: number;
  finished_at?: number;
  exit_code: number;
  reason: string;
  message: string;
}
export interface Replica {
  metadata?: Metadata;
  id?: string;
  status?: Record<string, unknown>;
}
export interface Shape {
  metadata?: Metadata;
  spec?: { name?: string; listable_in?: string[]; accelerator_num?: number; accelerator_type?: string; description?: string };
}
export interface NodeGroup {
  metadata: Metadata;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

/**
 * The DGX Cloud Lepton REST API v2 of one workspace (`<base>/api/v2/workspaces/<id>`), called with fetch and
 * `Authorization: Bearer <workspace token>`: deployments, their replicas, readiness and termination reasons,
 * replica logs, user secrets, node groups and resource shapes. Non-2xx answers throw LeptonApiError.
 */
export class LeptonApi {
  constructor(
    readonly cfg: LeptonConfig,
    private readonly signal?: AbortSignal,
  ) {}

  /** Full URL of an API path (path starts with `/`). */
  url(path: string): string {
    return `${this.cfg.baseUrl}${path}`;
  }

  /**
   * One JSON call. `allow404` → undefined on 404.
   * @throws PlatformUnavailableError (unreachable, 401/403), LeptonApiError (other non-2xx)
   */
  async call<T>(method: string, path: string, body?: unknown, opts: { allow404?: boolean; timeoutMs?: number } = {}): Promise<T | undefined> {
    const res = await this.raw(method, path, body, opts.timeoutMs ?? 60_000);
    if (res.status === 404 && opts.allow404) {
      await res.body?.cancel().catch(() => undefined);
      return undefined;
    }
    if (!res.ok) throw this.error(method, path, res.status, await textCapped(res));
    let text: string;
    try {
      text = (await readBodyCapped(res, BODY_CAPS.platformJson)).body.toString('utf8');
    } catch (e) {
      if (e instanceof BodyTooLargeError) throw new LeptonApiError(method, path, res.status, 'ResponseTooLarge', e.message);
      throw e;
    }
    if (!text.trim()) return undefined;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new LeptonApiError(method, path, res.status, 'BadResponse', `not JSON: ${text.slice(0, 200)}`);
    }
  }

  /** The fetch Response of a call (for streamed logs). The caller checks status. */
  async raw(method: string, path: string, body?: unknown, timeoutMs?: number, signal?: AbortSignal): Promise<Response> {
    const signals = [signal, this.signal, timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined].filter((s): s is AbortSignal => !!s);
    try {
      return await fetch(this.url(path), {
        method,
        headers: {
          authorization: `Bearer ${this.cfg.token}`,
          accept: 'application/json',
          ...(this.cfg.originUrl ? { origin: this.cfg.originUrl } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: signals.length ? AbortSignal.any(signals) : undefined,
      });
    } catch (e) {
      if ((signal?.aborted || this.signal?.aborted) && e instanceof Error) throw e;
      const cause = e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e);
      throw new PlatformUnavailableError('lepton', `cannot reach the Lepton API at ${this.cfg.baseUrl} (${method} ${path}): ${cause}`, {
        hint: 'Check the network and LEPTON_WORKSPACE_ID / LEPTON_WORKSPACE_URL.',
        cause: e,
      });
    }
  }

  /** Turn a non-2xx answer into the right error. Exposed for streamed calls. */
  error(method: string, path: string, status: number, text: string): PlatformError {
    let code = '';
    let message = text.trim().slice(0, 300);
    try {
      const j = JSON.parse(text) as { code?: string; message?: string };
      code = j.code ?? '';
      message = j.message ?? message;
    } catch {
      /* plain text */
    }
    if (status === 401 || status === 403)
      return new PlatformUnavailableError('lepton', `the workspace token was rejected (HTTP ${status}${code ? ` ${code}` : ''})`, { hint: TOKEN_HINT });
    return new LeptonApiError(method, path, status, code, message);
  }

  listShapes(purpose = 'deployment'): Promise<Shape[] | undefined> {
    return this.call<Shape[]>('GET', `/shapes?purpose=${encodeURIComponent(purpose)}`);
  }
  listNodeGroups(): Promise<NodeGroup[] | undefined> {
    return this.call<NodeGroup[]>('GET', '/dedicated-node-groups');
  }
  /** POST /usersecrets `[{name, value}]`: the only call whose body holds secret values. */
  async createSecrets(items: { name: string; value: string }[]): Promise<void> {
    await this.call('POST', '/usersecrets', items);
  }
  /** @returns false when it did not exist */
  deleteSecret(name: string): Promise<boolean> {
    return this.deleteIfExists('/usersecrets', name);
  }
  async createDeployment(d: { metadata: Metadata; spec: DeploymentSpec }): Promise<void> {
    await this.call('POST', '/deployments', d);
  }
  /** GET /deployments: every deployment of the workspace (spec included). */
  async listDeployments(): Promise<Deployment[]> {
    return (await this.call<Deployment[]>('GET', '/deployments')) ?? [];
  }
  getDeployment(name: string): Promise<Deployment | undefined> {
    return this.call<Deployment>('GET', `/deployments/${encodeURIComponent(name)}`, undefined, { allow404: true });
  }
  /** @returns false when it did not exist */
  deleteDeployment(name: string): Promise<boolean> {
    return this.deleteIfExists('/deployments', name);
  }
  /** DELETE `<collection>/<name>`: true when deleted, false on 404 (idempotent stop), LeptonApiError otherwise. */
  private async deleteIfExists(collection: string, name: string): Promise<boolean> {
    const res = await this.raw('DELETE', `${collection}/${encodeURIComponent(name)}`, undefined, 60_000);
    const text = await textCapped(res);
    if (res.status === 404) return false;
    if (!res.ok) throw this.error('DELETE', `${collection}/${name}`, res.status, text);
    return true;
  }
  async readiness(name: string): Promise<Record<string, ReplicaIssue[]>> {
    return (await this.call<Record<string, ReplicaIssue[]>>('GET', `/deployments/${encodeURIComponent(name)}/readiness`, undefined, { allow404: true })) ?? {};
  }
  async termination(name: string): Promise<Record<string, ReplicaTermination[]>> {
    return (await this.call<Record<string, ReplicaTermination[]>>('GET', `/deployments/${encodeURIComponent(name)}/termination`, undefined, { allow404: true })) ?? {};
  }
  async replicas(name: string): Promise<Replica[]> {
    return (await this.call<Replica[]>('GET', `/deployments/${encodeURIComponent(name)}/replicas`, undefined, { allow404: true })) ?? [];
  }
  /** Streamed replica log (GET .../replicas/{id}/log): the live Response. */
  replicaLog(name: string, replica: string, signal?: AbortSignal): Promise<Response> {
    return this.raw('GET', `/deployments/${encodeURIComponent(name)}/replicas/${encodeURIComponent(replica)}/log`, undefined, undefined, signal);
  }
}
