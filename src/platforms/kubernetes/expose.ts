/**
 * How a kubernetes service is reached (contract §8 kubernetes: "clusters without a load balancer need
 * NodePort or a port-forward"): the NodePort URL, and the local port-forward (`./port-forward.ts`, run with
 * this Node) described for src/forwarder, which starts, checks, stops and restarts it. A LoadBalancer URL
 * comes from the Service status in ./launch.ts.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { InvalidInputError, LaunchFailedError, PlatformError } from '../../errors.js';
import { startForwarder, type ForwarderDescription, type ForwarderSupport } from '../../forwarder/forwarder.js';
import { forwarderLogFile } from '../../forwarder/log.js';
import { loadReferences, secretNames as referenceSecretNames } from '../../references.js';
import type { AdapterContext, Launched, LaunchSpec } from '../../types.js';
import { toPlatformError, type KubeConnection } from './client.js';
import { connectEntry, entryData, listJobPods, type K8sEntryData } from './entry.js';
import type { K8sNames } from './manifests.js';
import { newestPod, podVerdict } from './pods.js';

/** How long the local port-forward process may take to listen. */
const FORWARDER_START_MS = 20_000;

export function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export async function nodePortUrl(conn: KubeConnection, ns: string, names: K8sNames, pod: V1Pod, scrub: (s: string) => string): Promise<string> {
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

/**
 * The port-forward of one job: listens on localhost:`port`, one WebSocket to `podName`:`containerPort`
 * through the API server per connection. The process keeps the caller's environment (kubeconfig exec
 * credential plugins such as aws or gke-gcloud-auth-plugin need AWS_PROFILE and the like) minus every
 * secret service.yaml names and the --env secrets of this job (`jobSecretNames`).
 */
export function portForwardDescription(a: {
  job_id: string;
  conn: KubeConnection;
  namespace: string;
  podName: string;
  containerPort: number;
  port: number;
  env: NodeJS.ProcessEnv;
  jobSecretNames: string[];
}): ForwarderDescription {
  const args = ['--namespace', a.namespace, '--pod', a.podName, '--port', String(a.containerPort), '--local-port', String(a.port), '--context', a.conn.source.context];
  if (a.conn.source.kubeconfig) args.push('--kubeconfig', a.conn.source.kubeconfig);
  if (a.conn.source.inCluster) args.push('--in-cluster');
  const env: NodeJS.ProcessEnv = { ...a.env };
  for (const n of [...referenceSecretNames(loadReferences()), ...a.jobSecretNames]) delete env[n];
  return {
    platform: 'kubernetes',
    job_id: a.job_id,
    kind: 'port-forward process',
    run: { module: new URL('./port-forward.js', import.meta.url), args },
    env,
    logFile: forwarderLogFile('kubernetes', a.job_id),
    listen: { host: '127.0.0.1', port: a.port },
    target: `pod ${a.namespace}/${a.podName}:${a.containerPort}`,
    hint: `Check RBAC in namespace ${a.namespace}: the port-forward needs 'get' on pods/portforward (Kubernetes 1.35+: 'get' and 'create'); check that port ${a.port} is free; or use --expose loadbalancer|nodeport.`,
    readyTimeoutMs: FORWARDER_START_MS,
  };
}

/** `--expose port-forward` at launch: allocate a local port, start the port-forward, record its PID. */
export async function startPortForward(
  spec: LaunchSpec,
  ctx: AdapterContext,
  conn: KubeConnection,
  data: K8sEntryData,
  pod: V1Pod,
): Promise<Pick<Launched, 'host_url' | 'host_port' | 'forwarder_pid'>> {
  const port = await ctx.allocatePort({ kind: 'local' });
  const podName = pod.metadata!.name!;
  const d = portForwardDescription({ job_id: spec.job_id, conn, namespace: data.namespace, podName, containerPort: spec.container_port, port, env: ctx.env, jobSecretNames: spec.env.secretNames });
  data.forwarder_log = d.logFile;
  const pid = await startForwarder(d, { signal: ctx.signal, onPid: (p) => ctx.record({ forwarder_pid: p, host_port: port, platform_data: { ...data } }) });
  ctx.log(`kubernetes: port-forward (pid ${pid}) localhost:${port} -> ${podName}:${spec.container_port}`);
  return { host_url: `http://localhost:${port}`, host_port: port, forwarder_pid: pid };
}

/**
 * Forwarder support of the kubernetes adapter: for `tao-infer tunnel`, a port-forward on the entry's
 * host_port to the Job's newest running pod.
 * @throws InvalidInputError when the service is not exposed by port-forward; PlatformError when it has no
 *   host_port or no running pod.
 */
export const k8sForwarder: ForwarderSupport = {
  kind: 'port-forward process',
  async describe(entry, ctx) {
    const d = entryData(entry, ctx.env);
    if (d.expose !== 'port-forward') {
      throw new InvalidInputError('<job_id>', `service ${entry.job_id} is exposed with --expose ${d.expose}; it has no local port-forward to restart`);
    }
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
    const desc = portForwardDescription({ job_id: entry.job_id, conn, namespace: d.namespace, podName: d.pod_name, containerPort: 8080, port, env: ctx.env, jobSecretNames: [] });
    d.forwarder_log = desc.logFile;
    desc.fields = { platform_data: { ...(entry.platform_data ?? {}), ...d } };
    return desc;
  },
};
