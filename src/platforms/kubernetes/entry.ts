/**
 * A kubernetes registry entry: the non-secret data kept in `platform_data` (contract §5: platform-specific
 * fields), connecting to its cluster again, its pods and their log tail, and scrubbing secret values out of
 * what the cluster sends back.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { LaunchSpec, RegistryEntry } from '../../types.js';
import { tailLines } from '../../util/run.js';
import { loadKube, type KubeConnection } from './client.js';
import { CONTAINER_NAME, namesFor, type K8sOptions } from './manifests.js';
import type { ExposeMode } from './options.js';
import { podSelectorFor } from './pods.js';

/** Non-secret data kept in `RegistryEntry.platform_data` for status/logs/stop. */
export interface K8sEntryData {
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

export function entryData(entry: RegistryEntry, env: NodeJS.ProcessEnv): K8sEntryData {
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

export function connectEntry(d: K8sEntryData, env: NodeJS.ProcessEnv, timeoutMs?: number): KubeConnection {
  const o: Parameters<typeof loadKube>[0] = { env };
  if (timeoutMs !== undefined) o.timeoutMs = timeoutMs;
  if (d.kubeconfig) o.kubeconfig = d.kubeconfig;
  if (d.context) o.context = d.context;
  if (d.in_cluster) o.inCluster = true;
  return loadKube(o);
}

export function connectSpec(opts: K8sOptions, env: NodeJS.ProcessEnv): KubeConnection {
  const o: Parameters<typeof loadKube>[0] = { env };
  if (opts.kubeconfig) o.kubeconfig = opts.kubeconfig;
  if (opts.context) o.context = opts.context;
  return loadKube(o);
}

/** Replaces every secret value (and its base64 form) in text that came back from the cluster. */
export function makeScrubber(spec: LaunchSpec, env: NodeJS.ProcessEnv): (s: string) => string {
  const pairs: Array<[string, string]> = [];
  for (const name of spec.env.secretNames) {
    const v = env[name];
    if (!v || v.length < 4) continue;
    pairs.push([v, `<${name}>`], [Buffer.from(v, 'utf8').toString('base64'), `<${name}>`]);
  }
  return (s: string) => pairs.reduce((acc, [v, r]) => acc.split(v).join(r), s);
}

export async function podLogTail(conn: KubeConnection, namespace: string, pod: string, n: number, scrub: (s: string) => string): Promise<string[]> {
  try {
    const text = await conn.core.readNamespacedPodLog({ name: pod, namespace, container: CONTAINER_NAME, tailLines: n });
    return tailLines(scrub(String(text ?? '')), n);
  } catch {
    return [];
  }
}

export async function listJobPods(conn: KubeConnection, namespace: string, job: string): Promise<V1Pod[]> {
  const list = await conn.core.listNamespacedPod({ namespace, labelSelector: podSelectorFor(job) });
  return list.items;
}
