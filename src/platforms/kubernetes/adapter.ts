/**
 * Kubernetes platform (contract §8 kubernetes): a per-job Secret (only the secret env vars that are set,
 * used through envFrom), a batch/v1 Job running `/bin/sh -c <inner_command>` with `nvidia.com/gpu`
 * limits, and a Service exposed as a LoadBalancer (default), a NodePort, or through a detached local
 * port-forward process. Talks to the API server with `@kubernetes/client-node`; this module is imported
 * only when the kubernetes platform is used (src/platforms/index.ts).
 *
 * Registry entry: platform_job_id = Job name; platform_data = { namespace, context, kubeconfig,
 * in_cluster, job_name, service_name, secret_name, expose, pod_name, node, forwarder_log }; host_port
 * and forwarder_pid for port-forward.
 */
import { Log, type V1Pod } from '@kubernetes/client-node';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { InvalidInputError, LaunchFailedError, PlatformError, PlatformUnavailableError } from '../../errors.js';
import { loadReferences, projectRoot, secretNames as referenceSecretNames } from '../../references.js';
import type {
  AdapterContext,
  EntryContext,
  JobState,
  LaunchPlan,
  LaunchSpec,
  Launched,
  LogOptions,
  PlatformAdapter,
  PlanStep,
  RegistryEntry,
} from '../../types.js';
import { isAlive, isOwnProcess, killPid, spawnDetached, forwarderLogFile } from '../../util/detached.js';
import { tailLines } from '../../util/run.js';
import { apiStatus, isNotFound, loadKube, toPlatformError, type KubeConnection } from './client.js';
import {
  CONTAINER_NAME,
  GPU_RESOURCE,
  buildManifests,
  manifestsToYaml,
  namesFor,
  needsNgcPullSecret,
  parseK8sOptions,
  shmSizeToQuantity,
  type K8sNames,
  type K8sOptions,
} from './manifests.js';
import type { ExposeMode } from './options.js';
import { jobVerdict, newestPod, podSelectorFor, podVerdict } from './pods.js';

/** Poll interval while waiting for the pod and the load balancer. */
const POLL_MS = 1000;
/** How long stop waits for a foreground Job deletion to finish before returning. */
const STOP_WAIT_MS = 60_000;
/** Per-request timeout for status (ls stays responsive when a cluster is unreachable). */
const STATUS_TIMEOUT_MS = 10_000;
/** How long the local port-forward process may take to listen. */
const FORWARDER_START_MS = 20_000;

/** Not enough allocatable GPUs in the cluster for the Job (checked before anything is created). */
export class InsufficientGpuCapacityError extends PlatformError {
  constructor(
    readonly available: number,
    readonly requested: number,
    nodesSummary: string,
  ) {
    super(
      'insufficient_gpu_capacity',
      `kubernetes: the cluster's nodes have ${available} allocatable ${GPU_RESOURCE} in total, fewer than the ${requested} requested (--num-gpus ${requested})${nodesSummary ? `\n${nodesSummary}` : ''}`,
      {
        hint: `Use --num-gpus ${Math.max(available, 1)} or less, add GPU nodes (with the NVIDIA GPU Operator / device plugin), pick another cluster with --context, or pass --skip-capacity-check (e.g. when a cluster autoscaler adds GPU nodes on demand).`,
      },
    );
  }
  override details() {
    return { available_gpus: this.available, requested_gpus: this.requested };
  }
}

/** Non-secret data kept in `RegistryEntry.platform_data` for status/logs/stop. */
interface K8sEntryData {
  namespace: string;
  context?: string;
  kubeconfig?: string;
  in_cluster?: boolean;
  job_name: string;
  service_name: string;
  secret_name: string;
  expose: ExposeMode;
  pod_name?: string;
  node?: string;
  forwarder_log?: string;
}

function entryData(entry: RegistryEntry, env: NodeJS.ProcessEnv): K8sEntryData {
  const pd = (entry.platform_data ?? {}) as Partial<K8sEntryData>;
  const names = namesFor(entry.job_id);
  const job = typeof pd.job_name === 'string' ? pd.job_name : (entry.platform_job_id ?? names.job);
  const out: K8sEntryData = {
    namespace: typeof pd.namespace === 'string' ? pd.namespace : (env['TAO_K8S_NAMESPACE'] ?? 'default'),
    job_name: job,
    service_name: typeof pd.service_name === 'string' ? pd.service_name : job,
    secret_name: typeof pd.secret_name === 'string' ? pd.secret_name : `${job}-env`,
    expose: (pd.expose ?? 'loadbalancer') as ExposeMode,
  };
  if (typeof pd.context === 'string') out.context = pd.context;
  else if (env['TAO_K8S_CONTEXT']) out.context = env['TAO_K8S_CONTEXT'];
  if (typeof pd.kubeconfig === 'string') out.kubeconfig = pd.kubeconfig;
  if (pd.in_cluster === true) out.in_cluster = true;
  if (typeof pd.pod_name === 'string') out.pod_name = pd.pod_name;
  if (typeof pd.forwarder_log === 'string') out.forwarder_log = pd.forwarder_log;
  return out;
}

function connectEntry(d: K8sEntryData, env: NodeJS.ProcessEnv, timeoutMs?: number): KubeConnection {
  const o: Parameters<typeof loadKube>[0] = { env };
  if (timeoutMs !== undefined) o.timeoutMs = timeoutMs;
  if (d.kubeconfig) o.kubeconfig = d.kubeconfig;
  if (d.context) o.context = d.context;
  if (d.in_cluster) o.inCluster = true;
  return loadKube(o);
}

function connectSpec(opts: K8sOptions, env: NodeJS.ProcessEnv): KubeConnection {
  const o: Parameters<typeof loadKube>[0] = { env };
  if (opts.kubeconfig) o.kubeconfig = opts.kubeconfig;
  if (opts.context) o.context = opts.context;
  return loadKube(o);
}

/** Replaces every secret value (and its base64 form) in text that came back from the cluster. */
function makeScrubber(spec: LaunchSpec, env: NodeJS.ProcessEnv): (s: string) => string {
  const pairs: Array<[string, string]> = [];
  for (const name of spec.env.secretNames) {
    const v = env[name];
    if (!v || v.length < 4) continue;
    pairs.push([v, `<${name}>`], [Buffer.from(v, 'utf8').toString('base64'), `<${name}>`]);
  }
  return (s: string) => pairs.reduce((acc, [v, r]) => acc.split(v).join(r), s);
}

/** Sum of allocatable nvidia.com/gpu over the nodes, with a one-line-per-GPU-node summary. */
async function gpuCapacity(conn: KubeConnection): Promise<{ total: number; summary: string }> {
  const nodes = await conn.core.listNode({});
  let total = 0;
  const lines: string[] = [];
  for (const n of nodes.items) {
    const q = n.status?.allocatable?.[GPU_RESOURCE];
    const count = q === undefined ? 0 : Number.parseInt(String(q), 10) || 0;
    total += count;
    if (count > 0) lines.push(`  node ${n.metadata?.name ?? '?'}: ${count} allocatable ${GPU_RESOURCE}${n.spec?.unschedulable ? ' (cordoned)' : ''}`);
  }
  if (nodes.items.length && !lines.length) lines.push(`  none of the ${nodes.items.length} node(s) advertises ${GPU_RESOURCE} (is the NVIDIA GPU Operator installed?)`);
  return { total, summary: lines.join('\n') };
}

/** Path of the compiled port-forward script next to this module (falls back to dist/ when run from src/). */
function forwarderScript(): string {
  const here = fileURLToPath(new URL('./port-forward.js', import.meta.url));
  if (existsSync(here)) return here;
  const built = join(projectRoot(), 'dist', 'src', 'platforms', 'kubernetes', 'port-forward.js');
  if (existsSync(built)) return built;
  throw new PlatformError('kubernetes_forwarder_missing', `the port-forward helper script is missing (${here})`, { hint: 'Rebuild tao-infer (npm run build).' });
}

/** True when `pid` is our port-forward process (Linux /proc check; elsewhere alive is enough). */
function isOurForwarder(pid: number): boolean {
  return isOwnProcess(pid, ['port-forward']);
}

async function podLogTail(conn: KubeConnection, namespace: string, pod: string, n: number, scrub: (s: string) => string): Promise<string[]> {
  try {
    const text = await conn.core.readNamespacedPodLog({ name: pod, namespace, container: CONTAINER_NAME, tailLines: n });
    return tailLines(scrub(String(text ?? '')), n);
  } catch {
    return [];
  }
}

async function listJobPods(conn: KubeConnection, namespace: string, job: string): Promise<V1Pod[]> {
  const list = await conn.core.listNamespacedPod({ namespace, labelSelector: podSelectorFor(job) });
  return list.items;
}

class KubernetesAdapter implements PlatformAdapter {
  readonly name = 'kubernetes' as const;
  readonly unsupported = {
    gpu_ids: 'Kubernetes assigns GPUs through the nvidia.com/gpu resource; specific device ids cannot be chosen (use --num-gpus).',
    bind_address: 'Kubernetes exposes the service through a Service (--expose loadbalancer|nodeport) or a local port-forward bound to 127.0.0.1.',
  };
  readonly reservesHostPort = false;

  /**
   * Validates the options, loads the kubeconfig (and context), warns when an nvcr.io image has no
   * --image-pull-secret, and refuses when the summed allocatable nvidia.com/gpu is below num_gpus.
   * Creates nothing.
   * @throws InvalidInputError (bad option/context), PlatformUnavailableError (no kubeconfig, unreachable, RBAC),
   *   InsufficientGpuCapacityError.
   */
  async preflight(spec: LaunchSpec, ctx: AdapterContext): Promise<void> {
    const opts = parseK8sOptions(spec.options);
    shmSizeToQuantity(spec.shm_size);
    if (spec.host_port !== undefined && opts.expose !== 'port-forward')
      throw new InvalidInputError('--port', `--port sets the local port of --expose port-forward; with --expose ${opts.expose} the Service decides the address`, {
        hint: 'Drop --port, or add --expose port-forward.',
      });
    const conn = connectSpec(opts, ctx.env);
    this.warnPullSecret(spec, opts, ctx);
    if (spec.num_gpus <= 0) return;
    if (opts.skipCapacityCheck) {
      ctx.log(`kubernetes: capacity check skipped (--skip-capacity-check); the Job waits until a node has ${spec.num_gpus} free ${GPU_RESOURCE}`);
      return;
    }
    let cap: { total: number; summary: string };
    try {
      cap = await gpuCapacity(conn);
    } catch (e) {
      const err = toPlatformError(e, 'list nodes for the GPU capacity check', conn);
      if (err instanceof PlatformUnavailableError && apiStatus(e)?.code === 403) {
        throw new PlatformUnavailableError('kubernetes', `cannot list nodes to check GPU capacity: ${apiStatus(e)?.message ?? 'forbidden'}`, {
          hint: 'Ask for permission to list nodes, or pass --skip-capacity-check to start without the check.',
        });
      }
      throw err;
    }
    if (cap.total < spec.num_gpus) throw new InsufficientGpuCapacityError(cap.total, spec.num_gpus, cap.summary);
    ctx.log(`kubernetes: ${cap.total} allocatable ${GPU_RESOURCE} in context '${conn.source.context}', ${spec.num_gpus} requested`);
  }

  private warnPullSecret(spec: LaunchSpec, opts: K8sOptions, ctx: AdapterContext): void {
    if (needsNgcPullSecret(spec.image) && !opts.imagePullSecret) {
      ctx.warn(
        `the image ${spec.image} is on nvcr.io but no --image-pull-secret was given; unless the nodes already have NGC credentials the pod will fail with ImagePullBackOff. ` +
          `Create one with: kubectl -n ${opts.namespace} create secret docker-registry ngc-pull --docker-server=nvcr.io --docker-username='$oauthtoken' --docker-password="$NGC_KEY", then pass --image-pull-secret ngc-pull`,
      );
    }
  }

  /** The API calls and manifests (YAML) start would use; secret values shown by name only. Contacts nothing. */
  async plan(spec: LaunchSpec, ctx: AdapterContext): Promise<LaunchPlan> {
    const opts = parseK8sOptions(spec.options);
    const names = namesFor(spec.job_id);
    let server = '<kubernetes-api-server>';
    let contextNote = opts.context ?? 'current-context';
    try {
      const conn = connectSpec(opts, ctx.env);
      server = conn.server;
      contextNote = conn.source.context;
    } catch (e) {
      if (!(e instanceof PlatformUnavailableError)) throw e;
      ctx.warn(`${e.message} (the plan shows placeholders)`);
    }
    this.warnPullSecret(spec, opts, ctx);
    const m = buildManifests(spec, opts, names, (n) => `<base64 of $${n}>`);
    const ns = opts.namespace;
    const steps: PlanStep[] = [];
    if (spec.num_gpus > 0 && !opts.skipCapacityCheck) {
      steps.push({
        description: `Check capacity (context '${contextNote}'): refuse unless the nodes' summed allocatable ${GPU_RESOURCE} is at least ${spec.num_gpus}`,
        http: { method: 'GET', url: `${server}/api/v1/nodes` },
      });
    }
    if (m.secret) {
      steps.push({
        description: `Create Secret ${names.secret} holding ${spec.env.secretNames.join(', ')} (values read from the environment at launch)`,
        http: { method: 'POST', url: `${server}/api/v1/namespaces/${ns}/secrets`, body: m.secret },
      });
    }
    steps.push({ description: `Create Job ${names.job}`, http: { method: 'POST', url: `${server}/apis/batch/v1/namespaces/${ns}/jobs`, body: m.job } });
    steps.push({
      description: `Create Service ${names.service} (type ${m.service.spec?.type})`,
      http: { method: 'POST', url: `${server}/api/v1/namespaces/${ns}/services`, body: m.service },
    });
    const exposeText =
      opts.expose === 'loadbalancer'
        ? `Wait for the pod to run and for status.loadBalancer.ingress[0] (ip or hostname, up to ${opts.lbTimeoutS}s); host_url http://<ingress>:${spec.container_port}`
        : opts.expose === 'nodeport'
          ? `Wait for the pod to run; host_url http://<node address>:<nodePort>`
          : `Wait for the pod to run; start a detached local port-forward 127.0.0.1:<port> -> pod:${spec.container_port}; host_url http://localhost:<port>`;
    steps.push({ description: exposeText });
    steps.push({ description: 'Manifests', document: { name: 'manifests.yaml', text: manifestsToYaml(m) } });
    return { platform: 'kubernetes', steps };
  }

  /**
   * Creates the Secret (if any secret env var is set), the Job and the Service; waits until the pod runs
   * and the service has an address (LoadBalancer ingress / NodePort / local port-forward).
   * Records platform_job_id and platform_data before creating anything so an interrupted start can be stopped.
   * Does not clean up on failure (the lifecycle calls stop).
   * @throws LaunchFailedError (image pull, unschedulable, pod failed, no ingress in time, forwarder failed),
   *   PlatformError/PlatformUnavailableError for API refusals.
   */
  async launch(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched> {
    const opts = parseK8sOptions(spec.options);
    const conn = connectSpec(opts, ctx.env);
    const names = namesFor(spec.job_id);
    const ns = opts.namespace;
    const scrub = makeScrubber(spec, ctx.env);
    const data: K8sEntryData = {
      namespace: ns,
      context: conn.source.context,
      job_name: names.job,
      service_name: names.service,
      secret_name: names.secret,
      expose: opts.expose,
    };
    if (conn.source.kubeconfig) data.kubeconfig = conn.source.kubeconfig;
    if (conn.source.inCluster) data.in_cluster = true;
    await ctx.record({ platform_job_id: names.job, platform_data: { ...data } });

    const m = buildManifests(spec, opts, names, (n) => Buffer.from(ctx.env[n] ?? '', 'utf8').toString('base64'));
    const create = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (e) {
        throw toPlatformError(e, what, conn, scrub);
      }
    };
    if (m.secret) {
      const body = m.secret;
      await create(`create Secret ${names.secret} in namespace ${ns}`, () => conn.core.createNamespacedSecret({ namespace: ns, body }));
    }
    await create(`create Job ${names.job} in namespace ${ns}`, () => conn.batch.createNamespacedJob({ namespace: ns, body: m.job }));
    await create(`create Service ${names.service} in namespace ${ns}`, () => conn.core.createNamespacedService({ namespace: ns, body: m.service }));
    ctx.log(`kubernetes: created ${m.secret ? `Secret ${names.secret}, ` : ''}Job ${names.job} and Service ${names.service} in namespace ${ns} (context ${conn.source.context})`);

    const deadline = ctx.deadline ?? Date.now() + 30 * 60_000;
    const lbDeadline = Date.now() + opts.lbTimeoutS * 1000;
    let pod: V1Pod | undefined;
    let ingress: string | undefined;
    let lastNote = '';
    const note = (s: string) => {
      if (s !== lastNote) ctx.log(`kubernetes: ${s}`);
      lastNote = s;
    };
    for (;;) {
      if (ctx.signal?.aborted) throw new LaunchFailedError('start interrupted', 'Interrupted');
      try {
        if (!pod) {
          const job = await conn.batch.readNamespacedJob({ name: names.job, namespace: ns });
          const pods = await listJobPods(conn, ns, names.job);
          const p = newestPod(pods);
          const jv = jobVerdict(job);
          const pv = p ? podVerdict(p, { unschedulableIsFatal: !opts.skipCapacityCheck }) : undefined;
          if (pv?.state === 'running') {
            pod = p;
            data.pod_name = p!.metadata!.name!;
            if (pv.node) data.node = pv.node;
            await ctx.record({ platform_data: { ...data } });
            note(`pod ${data.pod_name} is running on node ${pv.node ?? '?'}`);
          } else if ((jv && jv.state !== 'pending') || pv?.fatal || pv?.state === 'error' || pv?.state === 'complete' || pv?.state === 'canceled') {
            const v = pv && pv.state !== 'pending' ? pv : (jv ?? pv!);
            const tail = p?.metadata?.name ? await podLogTail(conn, ns, p.metadata.name, 20, scrub) : [];
            throw launchFailure(names, ns, v, tail, opts, spec);
          } else {
            note(pv ? `pod ${p!.metadata?.name}: ${pv.native}${pv.reason ? ` (${pv.reason})` : ''}` : `waiting for the Job's pod`);
          }
        }
        if (opts.expose === 'loadbalancer' && !ingress) {
          const svc = await conn.core.readNamespacedService({ name: names.service, namespace: ns });
          const ing = svc.status?.loadBalancer?.ingress?.[0];
          ingress = ing?.ip || ing?.hostname || undefined;
          if (ingress) ctx.log(`kubernetes: load balancer address ${ingress}`);
          else if (Date.now() > lbDeadline) {
            throw new LaunchFailedError(
              `Service ${names.service} got no load balancer address (status.loadBalancer.ingress) within ${opts.lbTimeoutS}s`,
              'NoLoadBalancerIngress',
              [],
              {
                hint:
                  'The cluster may have no load balancer controller (bare metal: install MetalLB), or provisioning is slow (raise --lb-timeout). ' +
                  'Otherwise use --expose nodeport (nodes reachable from here) or --expose port-forward (works everywhere).',
              },
            );
          }
        }
      } catch (e) {
        if (e instanceof LaunchFailedError) throw e;
        throw toPlatformError(e, `watch Job ${names.job} in namespace ${ns}`, conn, scrub);
      }
      if (pod && (opts.expose !== 'loadbalancer' || ingress)) break;
      if (Date.now() > deadline) {
        if (pod) {
          throw new LaunchFailedError(`Service ${names.service} got no load balancer address (status.loadBalancer.ingress) before the start timeout`, 'NoLoadBalancerIngress', [], {
            hint: 'The cluster may have no load balancer controller (bare metal: install MetalLB). Otherwise use --expose nodeport or --expose port-forward, or raise --timeout.',
          });
        }
        throw new LaunchFailedError(`the pod of Job ${names.job} did not start before the start timeout${lastNote ? ` (last: ${lastNote})` : ''}`, 'StartTimeout', [], {
          hint: `Inspect it with: kubectl -n ${ns} describe job ${names.job}; raise --timeout for large images.`,
        });
      }
      await sleep(POLL_MS, undefined, ctx.signal ? { signal: ctx.signal } : undefined).catch(() => undefined);
    }

    const launched: Launched = { host_url: '', platform_job_id: names.job };
    if (opts.expose === 'loadbalancer') {
      launched.host_url = `http://${hostForUrl(ingress!)}:${spec.container_port}`;
    } else if (opts.expose === 'nodeport') {
      launched.host_url = await this.nodePortUrl(conn, ns, names, pod!, scrub);
    } else {
      const pf = await this.startForwarder(spec, ctx, conn, data, pod!);
      Object.assign(launched, pf);
    }
    launched.platform_data = { ...data };
    return launched;
  }

  private async nodePortUrl(conn: KubeConnection, ns: string, names: K8sNames, pod: V1Pod, scrub: (s: string) => string): Promise<string> {
    let nodePort: number | undefined;
    try {
      const svc = await conn.core.readNamespacedService({ name: names.service, namespace: ns });
      nodePort = svc.spec?.ports?.[0]?.nodePort;
    } catch (e) {
      throw toPlatformError(e, `read Service ${names.service}`, conn, scrub);
    }
    if (!nodePort) throw new LaunchFailedError(`Service ${names.service} has no nodePort`, 'NoNodePort');
    let address = pod.status?.hostIP;
    const nodeName = pod.spec?.nodeName;
    if (nodeName) {
      try {
        const node = await conn.core.readNode({ name: nodeName });
        const addrs = node.status?.addresses ?? [];
        address = addrs.find((a) => a.type === 'ExternalIP')?.address ?? addrs.find((a) => a.type === 'InternalIP')?.address ?? address;
      } catch {
        /* no permission to read nodes: the pod's hostIP is the node's InternalIP */
      }
    }
    if (!address) throw new LaunchFailedError(`no address is known for node ${nodeName ?? '?'} of pod ${pod.metadata?.name}`, 'NoNodeAddress');
    return `http://${hostForUrl(address)}:${nodePort}`;
  }

  private async startForwarder(
    spec: LaunchSpec,
    ctx: AdapterContext,
    conn: KubeConnection,
    data: K8sEntryData,
    pod: V1Pod,
  ): Promise<Pick<Launched, 'host_url' | 'host_port' | 'forwarder_pid'>> {
    const port = await ctx.allocatePort({ holds: () => true, checkBound: true, bindAddress: '127.0.0.1', field: 'host_port' });
    data.forwarder_log = forwarderLogFile('kubernetes', data.job_name);
    const podName = pod.metadata!.name!;
    const pid = await spawnForwarder(conn, data, podName, spec.container_port, port, ctx.env, spec.env.secretNames, async (p) => {
      await ctx.record({ forwarder_pid: p, host_port: port, platform_data: { ...data } });
    });
    ctx.log(`kubernetes: port-forward (pid ${pid}) localhost:${port} -> ${podName}:${spec.container_port}`);
    return { host_url: `http://localhost:${port}`, host_port: port, forwarder_pid: pid };
  }

  /**
   * `tao-infer tunnel`: start the port-forward again (same local port) when its process is gone.
   * Resolves {} when it is alive.
   * @throws InvalidInputError when the service is not exposed by port-forward; PlatformError when the pod
   *   is not running or the port is taken.
   */
  async restartForwarder(entry: RegistryEntry, ctx: EntryContext): Promise<Partial<RegistryEntry>> {
    const d = entryData(entry, ctx.env);
    if (d.expose !== 'port-forward') {
      throw new InvalidInputError('<job_id>', `service ${entry.job_id} is exposed with --expose ${d.expose}; it has no local port-forward to restart`);
    }
    if (entry.forwarder_pid && isAlive(entry.forwarder_pid) && isOurForwarder(entry.forwarder_pid)) return {};
    const port = entry.host_port;
    if (typeof port !== 'number') throw new PlatformError('kubernetes_port_forward', `service ${entry.job_id} has no host_port in the registry`);
    const conn = connectEntry(d, ctx.env);
    let pod: V1Pod | undefined;
    try {
      pod = newestPod(await listJobPods(conn, d.namespace, d.job_name));
    } catch (e) {
      throw toPlatformError(e, `list the pods of Job ${d.job_name}`, conn);
    }
    const v = pod ? podVerdict(pod) : undefined;
    if (!pod || v?.state !== 'running') {
      throw new PlatformError('kubernetes_port_forward', `Job ${d.job_name} has no running pod (${v ? `${v.native}${v.reason ? `: ${v.reason}` : ''}` : 'no pod'})`, {
        hint: `See 'tao-infer ls' and 'tao-infer logs ${entry.job_id}'.`,
      });
    }
    d.pod_name = pod.metadata!.name!;
    d.forwarder_log ??= forwarderLogFile('kubernetes', d.job_name);
    const pid = await spawnForwarder(conn, d, d.pod_name, 8080, port, ctx.env, [], async () => undefined);
    ctx.log(`kubernetes: port-forward (pid ${pid}) localhost:${port} -> ${d.pod_name}:8080`);
    return { forwarder_pid: pid, platform_data: { ...(entry.platform_data ?? {}), ...d } };
  }

  /**
   * Job conditions first (Complete/Failed/being deleted), then the newest pod's state. Never throws:
   * an unreachable cluster or a missing Job is `unknown` with the reason.
   */
  async status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
    const d = entryData(entry, ctx.env);
    let conn: KubeConnection;
    try {
      conn = connectEntry(d, ctx.env, STATUS_TIMEOUT_MS);
    } catch (e) {
      return { state: 'unknown', reason: (e as Error).message };
    }
    try {
      let job;
      try {
        job = await conn.batch.readNamespacedJob({ name: d.job_name, namespace: d.namespace });
      } catch (e) {
        if (isNotFound(e)) return { state: 'unknown', native: 'NotFound', reason: `Job ${d.job_name} not found in namespace ${d.namespace}` };
        throw e;
      }
      const pod = newestPod(await listJobPods(conn, d.namespace, d.job_name));
      const jv = jobVerdict(job);
      const pv = pod ? podVerdict(pod) : undefined;
      let st: JobState;
      if (jv) {
        st = { ...jv };
        // Prefer the container's reason (OOMKilled, Error + exit code) over BackoffLimitExceeded.
        if (pv && (pv.state === 'error' || pv.state === 'complete')) {
          st.native = `${jv.native}/${pv.native}`;
          if (pv.reason) st.reason = pv.reason;
          if (pv.exitCode !== undefined) st.exitCode = pv.exitCode;
        }
      } else if (pv) {
        st = { state: pv.state, native: pv.native ?? 'Unknown' };
        if (pv.reason) st.reason = pv.reason;
        if (pv.exitCode !== undefined) st.exitCode = pv.exitCode;
      } else {
        st = { state: 'pending', native: 'NoPod', reason: `the Job has no pod yet` };
      }
      const node = pod?.spec?.nodeName;
      if (node) st.node = node;
      if (d.expose === 'port-forward' && st.state === 'running' && entry.forwarder_pid && !isAlive(entry.forwarder_pid)) {
        st.reason = `the local port-forward process (pid ${entry.forwarder_pid}) is not running; ${entry.host_url} is unreachable`;
      }
      return st;
    } catch (e) {
      return { state: 'unknown', reason: toPlatformError(e, `read Job ${d.job_name}`, conn).message };
    }
  }

  /**
   * Container log of the Job's newest pod. `tail` = last N lines; `follow` streams until the container
   * ends or `signal` aborts.
   * @throws PlatformError when the API refuses (e.g. the container is still waiting for its image).
   */
  async *logs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string> {
    const d = entryData(entry, ctx.env);
    const conn = connectEntry(d, ctx.env);
    let podName: string | undefined;
    try {
      podName = newestPod(await listJobPods(conn, d.namespace, d.job_name))?.metadata?.name ?? d.pod_name;
    } catch (e) {
      throw toPlatformError(e, `list the pods of Job ${d.job_name}`, conn);
    }
    if (!podName) {
      ctx.warn(`Job ${d.job_name} in namespace ${d.namespace} has no pod (yet), so there is no log`);
      return;
    }
    if (!opts.follow) {
      let text: string;
      try {
        const req: Parameters<typeof conn.core.readNamespacedPodLog>[0] = { name: podName, namespace: d.namespace, container: CONTAINER_NAME };
        if (opts.tail !== undefined) req.tailLines = opts.tail;
        text = String((await conn.core.readNamespacedPodLog(req)) ?? '');
      } catch (e) {
        throw toPlatformError(e, `read the log of pod ${podName}`, conn);
      }
      if (text) yield text;
      return;
    }
    const stream = new PassThrough();
    const logOpts: { follow: boolean; tailLines?: number } = { follow: true };
    if (opts.tail !== undefined) logOpts.tailLines = opts.tail;
    let controller: AbortController;
    try {
      controller = await new Log(conn.kc).log(d.namespace, podName, CONTAINER_NAME, stream, logOpts);
    } catch (e) {
      throw toPlatformError(e, `follow the log of pod ${podName}`, conn);
    }
    const onAbort = () => {
      controller.abort();
      stream.end();
    };
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of stream) yield Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk);
    } catch (e) {
      if (!opts.signal?.aborted) throw new PlatformError('kubernetes_log_stream', `the log stream of pod ${podName} broke: ${(e as Error).message}`);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      controller.abort();
    }
  }

  /**
   * Ends the port-forward process (by its recorded PID), deletes the Job with foreground propagation
   * (its pod goes first), the Service and the Secret. Objects already gone are fine (idempotent).
   * Waits up to 60 s for the Job to disappear.
   * @throws PlatformUnavailableError / PlatformError when the cluster cannot be reached or refuses a deletion.
   */
  async stop(entry: RegistryEntry, ctx: EntryContext): Promise<void> {
    const d = entryData(entry, ctx.env);
    const pid = entry.forwarder_pid;
    if (typeof pid === 'number' && isAlive(pid)) {
      if (isOurForwarder(pid)) await killPid(pid);
      else ctx.warn(`process ${pid} is no longer the port-forward of ${entry.job_id}; left alone`);
    }
    if (d.forwarder_log) rmSync(d.forwarder_log, { force: true });
    const conn = connectEntry(d, ctx.env);
    const del = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (e) {
        if (isNotFound(e)) return;
        throw toPlatformError(e, what, conn);
      }
    };
    const ns = d.namespace;
    await del(`delete Job ${d.job_name}`, () => conn.batch.deleteNamespacedJob({ name: d.job_name, namespace: ns, propagationPolicy: 'Foreground' }));
    await del(`delete Service ${d.service_name}`, () => conn.core.deleteNamespacedService({ name: d.service_name, namespace: ns }));
    await del(`delete Secret ${d.secret_name}`, () => conn.core.deleteNamespacedSecret({ name: d.secret_name, namespace: ns }));
    const until = Date.now() + STOP_WAIT_MS;
    while (Date.now() < until) {
      try {
        await conn.batch.readNamespacedJob({ name: d.job_name, namespace: ns });
      } catch (e) {
        if (isNotFound(e)) return;
        throw toPlatformError(e, `read Job ${d.job_name}`, conn);
      }
      await sleep(500);
    }
    ctx.log(`kubernetes: Job ${d.job_name} is still terminating in namespace ${ns}; the cluster finishes the deletion`);
  }
}

/**
 * Start the detached port-forward process and wait until it reports listening on localhost:`port`.
 * `onSpawn` runs right after the spawn (to record the PID before waiting).
 * @throws PlatformError('kubernetes_port_forward') with the forwarder's log tail when it does not come up.
 */
async function spawnForwarder(
  conn: KubeConnection,
  data: K8sEntryData,
  podName: string,
  containerPort: number,
  port: number,
  baseEnv: NodeJS.ProcessEnv,
  jobSecretNames: string[],
  onSpawn: (pid: number) => Promise<void>,
): Promise<number> {
  const logFile = data.forwarder_log!;
  const args = [forwarderScript(), '--namespace', data.namespace, '--pod', podName, '--port', String(containerPort), '--local-port', String(port), '--context', conn.source.context];
  if (conn.source.kubeconfig) args.push('--kubeconfig', conn.source.kubeconfig);
  if (conn.source.inCluster) args.push('--in-cluster');
  // The forwarder keeps the caller's environment (kubeconfig exec credential plugins such as aws or
  // gke-gcloud-auth-plugin need AWS_PROFILE and the like) minus every secret service.yaml names and the
  // --env secrets of this job.
  const env: NodeJS.ProcessEnv = { ...baseEnv };
  for (const n of [...referenceSecretNames(loadReferences()), ...jobSecretNames]) delete env[n];
  let offset = 0;
  try {
    offset = statSync(logFile).size;
  } catch {
    /* new file */
  }
  const pid = spawnDetached({ command: process.execPath, args, env, logFile });
  await onSpawn(pid);
  const readLog = () => {
    try {
      return readFileSync(logFile).subarray(offset).toString('utf8');
    } catch {
      return '';
    }
  };
  const until = Date.now() + FORWARDER_START_MS;
  while (Date.now() < until) {
    if (readLog().includes(`forwarding localhost:${port} `)) return pid;
    if (!isAlive(pid)) break;
    await sleep(100);
  }
  await killPid(pid);
  throw new PlatformError('kubernetes_port_forward', `the local port-forward to pod ${podName} did not start listening on localhost:${port}\n${tailLines(readLog(), 20).join('\n')}`, {
    hint: `Check RBAC for pods/portforward in namespace ${data.namespace} and that port ${port} is free, or use --expose loadbalancer|nodeport.`,
  });
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function launchFailure(names: K8sNames, ns: string, v: JobState, tail: string[], opts: K8sOptions, spec: LaunchSpec): LaunchFailedError {
  const native = v.native ?? v.state;
  const exit = v.exitCode !== undefined ? ` (exit code ${v.exitCode})` : '';
  const what = v.reason ? (v.reason.startsWith(native) ? `${v.reason}${exit}` : `${native}${exit}: ${v.reason}`) : `${native}${exit}`;
  let hint = `Inspect it with: kubectl -n ${ns} describe pod -l job-name=${names.job}`;
  if (/ImagePull|ErrImage|InvalidImageName/.test(native)) {
    hint = needsNgcPullSecret(spec.image) && !opts.imagePullSecret
      ? `The image is on nvcr.io: create a docker-registry Secret with your NGC key and pass --image-pull-secret <name>.`
      : `Check the image name and that --image-pull-secret ${opts.imagePullSecret ?? '<name>'} holds valid registry credentials.`;
  } else if (native === 'Unschedulable') {
    hint = `No node can take the pod now (free ${GPU_RESOURCE} are spread over nodes or in use). Lower --num-gpus, wait for GPUs to free up, or pass --skip-capacity-check to let the Job wait (e.g. for a cluster autoscaler).`;
  } else if (/OOMKilled/.test(native)) {
    hint = 'The container ran out of memory: use nodes with more memory or a smaller model.';
  }
  return new LaunchFailedError(`the pod of Job ${names.job} failed to start: ${what}`, native, tail, { hint });
}

/** Entry point used by src/platforms/index.ts. */
export function createAdapter(): PlatformAdapter {
  return new KubernetesAdapter();
}
