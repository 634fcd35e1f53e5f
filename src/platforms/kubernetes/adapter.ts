/**
 * Kubernetes platform (contract §8 kubernetes): a per-job Secret (only the secret env vars that are set,
 * used through envFrom), a batch/v1 Job running `/bin/sh -c <inner_command>` with `nvidia.com/gpu`
 * limits, and a Service exposed as a LoadBalancer (default), a NodePort, or through a detached local
 * port-forward process. Talks to the API server with `@kubernetes/client-node`; this module is imported
 * only when the kubernetes platform is used (src/platforms/index.ts).
 *
 * Registry entry: platform_job_id = Job name; platform_data = { namespace, context, kubeconfig,
 * in_cluster, job_name, service_name, secret_name, expose, pod_name, node, forwarder_log } (./entry.ts);
 * host_port and forwarder_pid for port-forward.
 * Files: ./launch.ts (create + wait), ./expose.ts (NodePort URL, port-forward), ./observe.ts (status, logs),
 * ./manifests.ts, ./pods.ts (pod verdicts), ./client.ts (kubeconfig, API errors).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidInputError, PlatformError, PlatformUnavailableError } from '../../errors.js';
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
  PlanStep,
  RegistryEntry,
  StopOutcome,
} from '../../types.js';
import { apiStatus, isNotFound, toPlatformError, type KubeConnection } from './client.js';
import { descriptor } from './descriptor.js';
import { discoverJobs } from './discover.js';
import { connectEntry, connectSpec, entryData } from './entry.js';
import { k8sForwarder } from './expose.js';
import { launchJob } from './launch.js';
import { GPU_RESOURCE, buildManifests, manifestsToYaml, namesFor, needsNgcPullSecret, parseK8sOptions, shmSizeToQuantity, type K8sOptions } from './manifests.js';
import { jobStatus, podLogs } from './observe.js';

/** How long stop waits for a foreground Job deletion to finish before returning. */
const STOP_WAIT_MS = 60_000;

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

class KubernetesAdapter implements PlatformAdapter {
  readonly name = descriptor.name;
  readonly unsupported = descriptor.unsupported;
  readonly reservesHostPort = descriptor.reservesHostPort;
  readonly forwarder = k8sForwarder;

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
    warnLoadBalancer(opts, ctx);
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
    warnLoadBalancer(opts, ctx);
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


  /** See ./launch.ts. */
  launch(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched> {
    return launchJob(spec, ctx);
  }

  /** Job conditions, then the newest pod (./observe.ts). Never throws. */
  status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
    return jobStatus(entry, ctx);
  }

  /** Container log of the Job's newest pod (./observe.ts). */
  logs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string> {
    return podLogs(entry, opts, ctx);
  }

  /**
   * Deletes the Job with foreground propagation
   * (its pod goes first), the Service and the Secret. Objects already gone are fine (idempotent).
   * Waits up to 60 s for the Job to disappear.
   * @throws PlatformUnavailableError / PlatformError when the cluster cannot be reached or refuses a deletion.
   */
  /** Jobs labelled managed-by tao-infer in the namespace (./discover.ts). */
  discover(ctx: DiscoverContext): Promise<DiscoveredService[]> {
    return discoverJobs(ctx);
  }

  async stop(entry: RegistryEntry, ctx: EntryContext): Promise<StopOutcome> {
    const d = entryData(entry, ctx.env);
    const conn = connectEntry(d, ctx.env);
    /** Resolves false when the object was already gone (404). */
    const del = async (what: string, fn: () => Promise<unknown>): Promise<boolean> => {
      try {
        await fn();
        return true;
      } catch (e) {
        if (isNotFound(e)) return false;
        throw toPlatformError(e, what, conn);
      }
    };
    const ns = d.namespace;
    const outcome: StopOutcome = (await del(`delete Job ${d.job_name}`, () => conn.batch.deleteNamespacedJob({ name: d.job_name, namespace: ns, propagationPolicy: 'Foreground' }))) ? {} : { already_gone: true };
    await del(`delete Service ${d.service_name}`, () => conn.core.deleteNamespacedService({ name: d.service_name, namespace: ns }));
    await del(`delete Secret ${d.secret_name}`, () => conn.core.deleteNamespacedSecret({ name: d.secret_name, namespace: ns }));
    const until = Date.now() + STOP_WAIT_MS;
    while (Date.now() < until) {
      try {
        await conn.batch.readNamespacedJob({ name: d.job_name, namespace: ns });
      } catch (e) {
        if (isNotFound(e)) return outcome;
        throw toPlatformError(e, `read Job ${d.job_name}`, conn);
      }
      await sleep(500);
    }
    ctx.log(`kubernetes: Job ${d.job_name} is still terminating in namespace ${ns}; the cluster finishes the deletion`);
    return outcome;
  }
}

/**
 * A LoadBalancer Service is reachable by anyone who can reach its address, and the microservice has no
 * authentication: say so when creating one, with the ways to narrow it (--lb-source-ranges, --lb-internal,
 * --expose port-forward).
 */
function warnLoadBalancer(opts: K8sOptions, ctx: Pick<AdapterContext, 'warn'>): void {
  if (opts.expose !== 'loadbalancer') return;
  const reach = opts.lbInternal
    ? `an internal load balancer (inside the VPC/VNet${opts.lbSourceRanges ? `, from ${opts.lbSourceRanges.join(', ')}` : ''})`
    : opts.lbSourceRanges
      ? `a load balancer open to ${opts.lbSourceRanges.join(', ')}`
      : 'a PUBLIC load balancer (any address on the internet on most clouds)';
  ctx.warn(
    `--expose loadbalancer creates ${reach}; the microservice has no authentication, so whoever reaches it can use the model` +
      (opts.lbInternal || opts.lbSourceRanges ? '.' : '. Restrict it with --lb-source-ranges CIDR,... or --lb-internal, or use --expose port-forward.'),
  );
}

/** Entry point used by src/platforms/index.ts. */
export function createAdapter(): PlatformAdapter {
  return new KubernetesAdapter();
}
