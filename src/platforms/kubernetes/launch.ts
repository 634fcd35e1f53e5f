/**
 * kubernetes launch (contract §8 kubernetes): create the Secret, Job and Service, wait until the pod runs
 * and the Service has an address, then expose it (./expose.ts). Failures become LaunchFailedError with the
 * pod's reason, its log tail and a hint.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { LaunchFailedError } from '../../errors.js';
import type { AdapterContext, JobState, Launched, LaunchSpec } from '../../types.js';
import { toPlatformError } from './client.js';
import { connectSpec, listJobPods, makeScrubber, podLogTail, type K8sEntryData } from './entry.js';
import { hostForUrl, nodePortUrl, startPortForward } from './expose.js';
import { buildManifests, GPU_RESOURCE, namesFor, needsNgcPullSecret, parseK8sOptions, type K8sNames, type K8sOptions } from './manifests.js';
import { jobVerdict, newestPod, podVerdict } from './pods.js';

/** Poll interval while waiting for the pod and the load balancer. */
const POLL_MS = 1000;

/**
 * Creates the Secret (if any secret env var is set), the Job and the Service; waits until the pod runs
 * and the service has an address (LoadBalancer ingress / NodePort / local port-forward).
 * Records platform_job_id and platform_data before creating anything so an interrupted start can be stopped.
 * Does not clean up on failure (the lifecycle calls stop).
 * @throws LaunchFailedError (image pull, unschedulable, pod failed, no ingress in time, forwarder failed),
 *   PlatformError/PlatformUnavailableError for API refusals.
 */
export async function launchJob(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched> {
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
    launched.host_url = await nodePortUrl(conn, ns, names, pod!, scrub);
  } else {
    Object.assign(launched, await startPortForward(spec, ctx, conn, data, pod!));
  }
  launched.platform_data = { ...data };
  return launched;
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
