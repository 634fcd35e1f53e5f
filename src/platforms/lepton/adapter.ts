/**
 * lepton: a DGX Cloud Lepton endpoint (deployment) through the REST API v2, no CLI (contract §8 lepton).
 *
 *  preflight  workspace URL + token from the environment; GET /shapes (reachability, token, shape exists);
 *             GET /dedicated-node-groups when --node-group is given.
 *  launch     POST /usersecrets with one per-job secret per secret env var (the only request whose body holds
 *             secret values), then POST /deployments: the image, `/bin/bash -c <inner>`, port 8080, envs that
 *             reference those secrets by name, 1 replica of --resource-shape, api token. Records the deployment
 *             name as platform_job_id at once; returns when the deployment has an external endpoint (host_url).
 *  requests   the endpoint is guarded by an api token: the value of the env var named by --endpoint-token-env
 *             (auth_env = that name; the registry keeps the NAME only). There is no default token: the SDK dropped
 *             the workspace-token reference ("Workspace token is no longer accessible", leptonai/leptonai commit
 *             93ed6aae, api/v2/deployment.py `make_token_vars_from_config`) and DGX Cloud Lepton tokens are
 *             user-created and expire. `--public` (explicit, with a warning) sends `api_tokens: []`.
 *             `ingress_timeout_seconds` from --ingress-timeout (300-6000, api/v2/types/deployment.py).
 *             The resource shape is sent lowercase, as the SDK's `ResourceRequirement.validate_resource_shape` does.
 *  status     deployment state, replica readiness issues and terminations → JobState (reason included).
 *  logs       the first replica's log stream (GET .../replicas/{id}/log).
 *  stop       DELETE the deployment, then its secrets; missing ones are fine (idempotent).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidInputError, LaunchFailedError, MissingInputError } from '../../errors.js';
import { textCapped } from '../../util/http.js';
import { loadReferences, secretNames as referenceSecretNames } from '../../references.js';
import type {
  AdapterContext,
  DiscoverContext,
  DiscoveredService,
  EntryContext,
  JobState,
  LaunchPlan,
  LaunchSpec,
  Launched,
  LogOptions,
  PlatformAdapter,
  RegistryEntry,
  StopOutcome,
} from '../../types.js';
import { LeptonApi, leptonConfig } from './api.js';
import { buildDeployment, ingressTimeout, mapLeptonState, MARKER_AUTH_ENV, markerEnvName, missingEndpointToken, opt, shapeGpus, shapeOf } from './deployment.js';
import { LABELS } from '../../labels.js';
import { descriptor } from './descriptor.js';

export { buildDeployment, deploymentName, mapLeptonState, secretName, shapeGpus, shmToMiB } from './deployment.js';

/**
 * The resource shapes of the workspace usable for endpoints (GET /shapes?purpose=deployment), for `--resource-shape` prompt choices.
 * @throws PlatformUnavailableError when credentials are missing or the API is unreachable
 */
export async function listResourceShapes(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  return listResourceShapesWith(new LeptonApi(leptonConfig(env)));
}

function entryApi(entry: RegistryEntry, ctx: EntryContext): LeptonApi {
  const url = typeof entry.platform_data?.workspace_url === 'string' ? entry.platform_data.workspace_url : undefined;
  return new LeptonApi(leptonConfig(ctx.env, url), ctx.signal);
}

function deploymentOf(entry: RegistryEntry): string | undefined {
  const d = entry.platform_job_id ?? entry.platform_data?.deployment;
  return typeof d === 'string' && d ? d : undefined;
}

class LeptonAdapter implements PlatformAdapter {
  readonly name = descriptor.name;
  readonly unsupported = descriptor.unsupported;
  readonly reservesHostPort = descriptor.reservesHostPort;

  private checkOptions(spec: LaunchSpec, env: NodeJS.ProcessEnv, warn: (m: string) => void): void {
    const shape = shapeOf(spec);
    if (!shape) throw new MissingInputError('--resource-shape', 'Lepton resource shape (e.g. gpu.1xh100)');
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(shape)) throw new InvalidInputError('--resource-shape', `'${shape}' is not a resource shape name`, { hint: 'Example: --resource-shape gpu.1xh100' });
    const gpus = shapeGpus(shape);
    if (gpus !== undefined && gpus !== spec.num_gpus) warn(`--resource-shape ${shape} has ${gpus} GPU(s) but --num-gpus is ${spec.num_gpus}; Lepton gives the replica what the shape has.`);
    const tokenEnv = opt(spec, 'endpointTokenEnv');
    if (tokenEnv && spec.options.public === true)
      throw new InvalidInputError('--public', '--public and --endpoint-token-env exclude each other', { hint: 'A public endpoint has no token: drop one of the two flags.' });
    if (!tokenEnv && spec.options.public !== true) throw missingEndpointToken();
    if (!tokenEnv) warn(`--public: the Lepton endpoint will answer anyone who knows its URL, without a token.`);
    ingressTimeout(spec);
    if (tokenEnv) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(tokenEnv)) throw new InvalidInputError('--endpoint-token-env', `'${tokenEnv}' is not an environment variable name`);
      if (!env[tokenEnv]) throw new InvalidInputError('--endpoint-token-env', `${tokenEnv} is not set in your environment`, { hint: `export ${tokenEnv}=<endpoint token> first; the flag takes the NAME only.` });
      // Its value goes into the deployment body: it must hold nothing but the endpoint token.
      if (spec.env.secretNames.includes(tokenEnv) || referenceSecretNames(loadReferences()).includes(tokenEnv))
        throw new InvalidInputError('--endpoint-token-env', `${tokenEnv} holds another credential; it must not become the endpoint token`, {
          hint: `Put a token made for this endpoint in its own variable (e.g. export TAO_ENDPOINT_TOKEN=...).`,
        });
    }
    const pull = opt(spec, 'imagePullSecret');
    if (pull !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(pull)) throw new InvalidInputError('--image-pull-secret', `'${pull}' is not a secret name`);
  }

  async preflight(spec: LaunchSpec, ctx: AdapterContext): Promise<void> {
    this.checkOptions(spec, ctx.env, ctx.warn);
    const api = new LeptonApi(leptonConfig(ctx.env), ctx.signal);
    const shape = shapeOf(spec)!;
    const shapes = await listResourceShapesWith(api);
    if (shapes.length && !shapes.includes(shape))
      throw new InvalidInputError('--resource-shape', `resource shape '${shape}' is not available for endpoints in this workspace`, { hint: `Available: ${shapes.join(', ')}` });
    await this.nodeGroupId(spec, api);
  }

  /** --node-group name or id → id (GET /dedicated-node-groups). */
  private async nodeGroupId(spec: LaunchSpec, api: LeptonApi): Promise<string | undefined> {
    const ng = opt(spec, 'nodeGroup');
    if (!ng) return undefined;
    const groups = (await api.listNodeGroups()) ?? [];
    const hit = groups.find((g) => g.metadata.name === ng || g.metadata.id === ng);
    if (!hit?.metadata.id)
      throw new InvalidInputError('--node-group', `node group '${ng}' does not exist in this workspace`, {
        hint: groups.length ? `Node groups: ${groups.map((g) => g.metadata.name ?? g.metadata.id).join(', ')}` : 'This workspace has no dedicated node groups: omit --node-group.',
      });
    return hit.metadata.id;
  }

  async plan(spec: LaunchSpec, ctx: AdapterContext): Promise<LaunchPlan> {
    this.checkOptions(spec, ctx.env, () => undefined);
    let base: string;
    try {
      base = leptonConfig(ctx.env).baseUrl;
    } catch {
      base = ctx.env.LEPTON_WORKSPACE_URL || `https://gateway.dgxc-lepton.nvidia.com/api/v2/workspaces/${ctx.env.LEPTON_WORKSPACE_ID || '<LEPTON_WORKSPACE_ID>'}`;
    }
    const ng = opt(spec, 'nodeGroup');
    const b = buildDeployment(spec, ctx.env, ng ? `<id of node group ${ng}>` : undefined, false);
    const steps: LaunchPlan['steps'] = [
      { description: 'check the workspace token and that the resource shape exists (Authorization: Bearer $LEPTON_WORKSPACE_TOKEN on every call)', http: { method: 'GET', url: `${base}/shapes?purpose=deployment` } },
    ];
    if (ng) steps.push({ description: `resolve node group ${ng} to its id`, http: { method: 'GET', url: `${base}/dedicated-node-groups` } });
    if (b.secrets.length)
      steps.push({
        description: `create per-job secrets for ${b.secrets.map((s) => s.env).join(', ')} (values from this shell's environment)`,
        http: { method: 'POST', url: `${base}/usersecrets`, body: b.secrets.map((s) => ({ name: s.secret, value: `<value of $${s.env}>` })) },
      });
    steps.push({ description: `create the endpoint ${b.name}; ${b.auth_env ? `requests carry Authorization: Bearer $${b.auth_env}` : 'public: requests carry no token'}`, http: { method: 'POST', url: `${base}/deployments`, body: b.body } });
    steps.push({ description: 'wait for its external endpoint (host_url), watching state, readiness and terminations', http: { method: 'GET', url: `${base}/deployments/${b.name}` } });
    return { platform: 'lepton', steps };
  }

  async launch(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched> {
    this.checkOptions(spec, ctx.env, () => undefined);
    const cfg = leptonConfig(ctx.env);
    const api = new LeptonApi(cfg, ctx.signal);
    const nodeGroupId = await this.nodeGroupId(spec, api);
    const b = buildDeployment(spec, ctx.env, nodeGroupId, true);
    const platform_data = {
      deployment: b.name,
      secrets: b.secrets.map((s) => s.secret),
      workspace_url: cfg.baseUrl,
      ...(cfg.workspaceId ? { workspace_id: cfg.workspaceId } : {}),
      resource_shape: shapeOf(spec),
    };
    // Recorded before anything exists on Lepton, so an interrupted start can always be stopped.
    await ctx.record({ platform_job_id: b.name, auth_env: b.auth_env, platform_data });

    if (b.secrets.length) {
      ctx.log(`creating Lepton secrets ${b.secrets.map((s) => s.secret).join(', ')} for ${b.secrets.map((s) => s.env).join(', ')}`);
      await api.createSecrets(
        b.secrets.map((s) => {
          const value = ctx.env[s.env];
          if (value === undefined) throw new InvalidInputError(s.env, `secret ${s.env} is listed but not set in the environment`);
          return { name: s.secret, value };
        }),
      );
    }
    ctx.log(`creating Lepton endpoint ${b.name} (${shapeOf(spec)}, image ${spec.image})`);
    await api.createDeployment(b.body);

    const until = ctx.deadline ?? Date.now() + 600_000;
    let last: JobState = { state: 'pending' };
    for (let i = 0; ; i++) {
      const d = await api.getDeployment(b.name);
      if (!d) throw new LaunchFailedError(`Lepton endpoint ${b.name} disappeared right after it was created`, 'deployment_missing');
      const st = mapLeptonState(d, await api.readiness(b.name), await api.termination(b.name));
      if (st.state === 'error' || st.state === 'canceled') {
        const tail = await this.tail(b.name, api, 20);
        throw new LaunchFailedError(`Lepton endpoint ${b.name} failed (${st.native}): ${st.reason ?? 'no reason given'}`, st.reason, tail, {
          hint: /pull|image/i.test(st.reason ?? '') ? 'Check the image name and --image-pull-secret (nvcr.io needs one).' : `See the endpoint in the Lepton console, or 'tao-infer logs' with --keep-on-failure.`,
        });
      }
      const ext = d.status?.endpoint?.external_endpoint;
      if (ext) {
        const host_url = (/^https?:\/\//.test(ext) ? ext : `https://${ext}`).replace(/\/+$/, '');
        return { host_url, platform_job_id: b.name, auth_env: b.auth_env, platform_data };
      }
      if (st.native !== last.native || st.reason !== last.reason) ctx.log(`Lepton endpoint ${b.name}: ${st.native}${st.reason ? ` (${st.reason})` : ''}`);
      last = st;
      if (Date.now() > until) throw new LaunchFailedError(`Lepton endpoint ${b.name} got no external endpoint in time (last state ${st.native})`, st.reason);
      await sleep(Math.min(500 * (i + 1), 5_000), undefined, { signal: ctx.signal });
    }
  }

  private async tail(name: string, api: LeptonApi, n: number): Promise<string[]> {
    try {
      const text = await collectLog(api, name, undefined);
      return text.split(/\r?\n/).filter((l, i, a) => l !== '' || i < a.length - 1).slice(-n);
    } catch {
      return [];
    }
  }

  /** Prompt choices for a required option (the CLI asks on a TTY): `resourceShape` → the workspace's endpoint shapes. */
  async suggest(key: string, env: NodeJS.ProcessEnv): Promise<string[] | undefined> {
    if (key !== 'resourceShape') return undefined;
    return listResourceShapes(env);
  }

  async status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
    const name = deploymentOf(entry);
    if (!name) return { state: 'unknown', native: 'no-deployment', reason: 'the registry entry does not name its Lepton deployment' };
    const api = entryApi(entry, ctx);
    const d = await api.getDeployment(name);
    if (!d) return { state: 'gone', native: 'missing', reason: `deployment ${name} no longer exists` };
    if (d.status?.state === 'Ready') return { state: 'running', native: 'Ready' };
    return mapLeptonState(d, await api.readiness(name), await api.termination(name));
  }

  async *logs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string> {
    const name = deploymentOf(entry);
    if (!name) return;
    const api = entryApi(entry, ctx);
    if (opts.follow) {
      const replica = await firstReplica(api, name);
      if (!replica) return;
      const res = await api.replicaLog(name, replica, opts.signal ?? ctx.signal);
      if (!res.ok) throw api.error('GET', `/deployments/${name}/replicas/${replica}/log`, res.status, await textCapped(res));
      if (!res.body) return;
      const dec = new TextDecoder();
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) yield dec.decode(chunk, { stream: true });
      } catch (e) {
        if (!(opts.signal?.aborted || ctx.signal?.aborted)) throw e;
      }
      return;
    }
    const text = await collectLog(api, name, opts.signal ?? ctx.signal);
    if (!text) return;
    if (opts.tail === undefined) {
      yield text;
      return;
    }
    const lines = text.split(/\r?\n/);
    if (lines[lines.length - 1] === '') lines.pop();
    const sel = opts.tail > 0 ? lines.slice(-opts.tail) : [];
    if (sel.length) yield `${sel.join('\n')}\n`;
  }

  /**
   * Deployments of the workspace named `tao-...` whose envs carry tao-infer's markers (`markerEnvs`:
   * job_id, arch, model_path, started_at, the token env NAME), listed with GET /deployments (leptonai
   * api/v2 `deployment.list_all`), rebuilt as entries with their live state.
   * @throws PlatformUnavailableError without LEPTON_WORKSPACE_ID/TOKEN or when the API refuses.
   */
  async discover(ctx: DiscoverContext): Promise<DiscoveredService[]> {
    const cfg = leptonConfig(ctx.env);
    const api = new LeptonApi(cfg, ctx.signal);
    const out: DiscoveredService[] = [];
    for (const d of await api.listDeployments()) {
      const name = d.metadata?.name;
      if (!name?.startsWith('tao-')) continue;
      const envs = new Map((d.spec?.envs ?? []).filter((e) => typeof e.value === 'string').map((e) => [e.name, e.value as string]));
      const job_id = envs.get(markerEnvName(LABELS.jobId));
      const network_arch = envs.get(markerEnvName(LABELS.arch));
      if (envs.get(markerEnvName(LABELS.managedBy)) !== 'tao-infer' || !job_id || !network_arch) continue;
      const secrets = (d.spec?.envs ?? []).map((e) => e.value_from?.secret_name_ref).filter((x): x is string => typeof x === 'string');
      const entry: RegistryEntry = {
        job_id,
        platform: 'lepton',
        platform_job_id: name,
        network_arch,
        host_url: d.status?.endpoint?.external_endpoint ?? '',
        started_at: envs.get(markerEnvName(LABELS.startedAt)) ?? new Date().toISOString(),
        auth_env: envs.get(MARKER_AUTH_ENV) || undefined,
        platform_data: {
          deployment: name,
          secrets,
          workspace_url: cfg.baseUrl,
          ...(cfg.workspaceId ? { workspace_id: cfg.workspaceId } : {}),
          ...(d.spec?.resource_requirement?.resource_shape ? { resource_shape: d.spec.resource_requirement.resource_shape } : {}),
          discovered: true,
        },
      };
      const model = envs.get(markerEnvName(LABELS.modelPath));
      if (model) entry.model_path = model;
      if (d.spec?.container?.image) entry.image = d.spec.container.image;
      out.push({ entry, live: await this.status(entry, ctx).catch((e: Error) => ({ state: 'unknown' as const, reason: e.message })) });
    }
    return out;
  }

  async stop(entry: RegistryEntry, ctx: EntryContext): Promise<StopOutcome> {
    const name = deploymentOf(entry);
    const secrets = Array.isArray(entry.platform_data?.secrets) ? (entry.platform_data.secrets as unknown[]).filter((s): s is string => typeof s === 'string') : [];
    if (!name && !secrets.length) return {};
    const api = entryApi(entry, ctx);
    let outcome: StopOutcome = {};
    if (name) {
      const existed = await api.deleteDeployment(name);
      ctx.log(existed ? `deleted Lepton endpoint ${name}` : `Lepton endpoint ${name} was already gone`);
      if (!existed) outcome = { already_gone: true };
    }
    for (const s of secrets) await api.deleteSecret(s);
    return outcome;
  }
}

async function firstReplica(api: LeptonApi, name: string): Promise<string | undefined> {
  const reps = await api.replicas(name);
  const r = reps[0];
  return r?.metadata?.id ?? r?.id;
}

async function listResourceShapesWith(api: LeptonApi): Promise<string[]> {
  const shapes = (await api.listShapes('deployment')) ?? [];
  const names = shapes
    .filter((s) => !s.spec?.listable_in || s.spec.listable_in.map((x) => x.toLowerCase()).includes('deployment'))
    .map((s) => s.spec?.name || s.metadata?.name || s.metadata?.id)
    .filter((n): n is string => typeof n === 'string' && n !== '');
  return [...new Set(names)];
}

/**
 * The replica log so far. The API streams it and keeps the connection open while the replica runs, so the
 * read stops after a quiet period: 1 s without new data once something arrived, 4 s before the first byte,
 * 20 s at most.
 */
async function collectLog(api: LeptonApi, name: string, signal: AbortSignal | undefined): Promise<string> {
  const replica = await firstReplica(api, name);
  if (!replica) return '';
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let text = '';
  try {
    const res = await api.replicaLog(name, replica, ac.signal);
    if (res.status === 404) return '';
    if (!res.ok) throw api.error('GET', `/deployments/${name}/replicas/${replica}/log`, res.status, await textCapped(res));
    if (!res.body) return '';
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    const hardStop = Date.now() + 20_000;
    for (;;) {
      const wait = Math.min(text ? 1_000 : 4_000, hardStop - Date.now());
      if (wait <= 0) break;
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([
        reader.read(),
        new Promise<'idle'>((resolve) => {
          timer = setTimeout(() => resolve('idle'), wait);
        }),
      ]);
      clearTimeout(timer);
      if (r === 'idle') break;
      if (r.done) break;
      text += dec.decode(r.value, { stream: true });
      // Bounded: only the end of the log is kept (the caller wants a tail).
      if (text.length > 8 * 1024 * 1024) text = text.slice(-4 * 1024 * 1024);
    }
    await reader.cancel().catch(() => undefined);
  } catch (e) {
    if (!ac.signal.aborted) throw e;
  } finally {
    ac.abort();
    signal?.removeEventListener('abort', onAbort);
  }
  return text;
}

/** The lepton adapter (contract §8 lepton). */
export function createAdapter(): PlatformAdapter {
  return new LeptonAdapter();
}
