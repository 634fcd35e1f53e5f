/**
 * kubernetes `discover`: the Jobs tao-infer created in one namespace, found by the label every object it
 * creates carries (`app.kubernetes.io/managed-by=tao-infer`, ./manifests.ts) with client-node's
 * `BatchV1Api.listNamespacedJob({ namespace, labelSelector })` (GET /apis/batch/v1/namespaces/{ns}/jobs?labelSelector=...,
 * node_modules/@kubernetes/client-node/dist/gen/apis/BatchV1Api.d.ts). Each Job's annotations carry the job_id,
 * network_arch, model_path and start time verbatim; its Service tells how it is reached (LoadBalancer ingress,
 * NodePort, or ClusterIP = a local port-forward the generic discover starts).
 */
import type { V1Job } from '@kubernetes/client-node';
import type { DiscoverContext, DiscoveredService, RegistryEntry } from '../../types.js';
import { loadKube, toPlatformError } from './client.js';
import { listJobPods, type K8sEntryData } from './entry.js';
import { hostForUrl, nodePortUrl } from './expose.js';
import { ARCH_ANNOTATION, JOB_ID_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MODEL_PATH_ANNOTATION, namesFor, STARTED_AT_ANNOTATION } from './manifests.js';
import { jobStatus } from './observe.js';
import { newestPod } from './pods.js';

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() ? v.trim() : undefined);

/**
 * Jobs labelled managed-by tao-infer in `--namespace` (else TAO_K8S_NAMESPACE, else `default`) of the
 * current or `--context` context, rebuilt as registry entries with their live state.
 * @throws PlatformUnavailableError (no kubeconfig), PlatformError (the API refused the list, e.g. RBAC).
 */
export async function discoverJobs(ctx: DiscoverContext): Promise<DiscoveredService[]> {
  const o = ctx.options;
  const load: Parameters<typeof loadKube>[0] = { env: ctx.env, timeoutMs: 15_000 };
  const kubeconfig = str(o.kubeconfig);
  const context = str(o.context) ?? str(ctx.env.TAO_K8S_CONTEXT);
  if (kubeconfig) load.kubeconfig = kubeconfig;
  if (context) load.context = context;
  const conn = loadKube(load);
  const namespace = str(o.namespace) ?? str(ctx.env.TAO_K8S_NAMESPACE) ?? 'default';
  let jobs: V1Job[];
  try {
    jobs = (await conn.batch.listNamespacedJob({ namespace, labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}` })).items;
  } catch (e) {
    throw toPlatformError(e, `list Jobs in namespace ${namespace}`, conn);
  }
  const out: DiscoveredService[] = [];
  for (const job of jobs) {
    const ann = job.metadata?.annotations ?? {};
    const job_id = ann[JOB_ID_ANNOTATION];
    const network_arch = ann[ARCH_ANNOTATION];
    const jobName = job.metadata?.name;
    if (!job_id || !network_arch || !jobName) continue;
    const names = namesFor(job_id);
    const data: K8sEntryData = { namespace, context: conn.source.context, job_name: jobName, service_name: names.service, secret_name: names.secret, expose: 'port-forward' };
    if (conn.source.kubeconfig) data.kubeconfig = conn.source.kubeconfig;
    if (conn.source.inCluster) data.in_cluster = true;
    const entry: RegistryEntry = {
      job_id,
      platform: 'kubernetes',
      platform_job_id: jobName,
      network_arch,
      host_url: '',
      started_at: ann[STARTED_AT_ANNOTATION] ?? (job.metadata?.creationTimestamp ? new Date(job.metadata.creationTimestamp).toISOString() : new Date().toISOString()),
      platform_data: { ...data, discovered: true },
    };
    if (ann[MODEL_PATH_ANNOTATION]) entry.model_path = ann[MODEL_PATH_ANNOTATION];
    const image = job.spec?.template?.spec?.containers?.[0]?.image;
    if (image) entry.image = image;
    const live = await jobStatus(entry, ctx);
    let localPortField: DiscoveredService['localPortField'];
    try {
      const svc = await conn.core.readNamespacedService({ name: names.service, namespace });
      const port = svc.spec?.ports?.[0]?.port ?? 8080;
      if (svc.spec?.type === 'LoadBalancer') {
        data.expose = 'loadbalancer';
        const ing = svc.status?.loadBalancer?.ingress?.[0];
        const host = ing?.ip || ing?.hostname;
        if (host) entry.host_url = `http://${hostForUrl(host)}:${port}`;
      } else if (svc.spec?.type === 'NodePort') {
        data.expose = 'nodeport';
        const pod = newestPod(await listJobPods(conn, namespace, jobName));
        if (pod) entry.host_url = await nodePortUrl(conn, namespace, names, pod, (s) => s);
      } else localPortField = 'host_port';
    } catch (e) {
      ctx.warn(`kubernetes: Service of ${job_id} not readable (${(e as Error).message.split('\n')[0]}); reached through a port-forward`);
      localPortField = 'host_port';
    }
    entry.platform_data = { ...data, discovered: true };
    out.push({ entry, live, ...(localPortField ? { localPortField } : {}) });
  }
  return out;
}
