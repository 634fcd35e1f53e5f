/**
 * The Job controller and scheduler of the fake Kubernetes API server (see ../k8s-api-server.ts for the documented
 * behaviour): one pod per attempt (`<job>-xxxxx`, ownerReferences to the Job), a failed pod replaced until
 * `status.failed > backoffLimit` (then FailureTarget + Failed/BackoffLimitExceeded), success → SuccessCriteriaMet +
 * Complete, status.active/ready, Foreground-deleted Jobs removed once their pods are gone; pods scheduled on a node
 * with enough allocatable `nvidia.com/gpu` whose NoSchedule taints they tolerate, else PodScheduled=False/Unschedulable.
 */
import type { Kubelet } from './kubelet.js';
import type { Network } from './network.js';
import { nameSuffix, type ClusterState, type FakeNode, type Obj, type PodRuntime } from './state.js';

export class JobController {
  constructor(
    private readonly c: ClusterState,
    private readonly kubelet: Kubelet,
    private readonly network: Network,
  ) {}

  /** One round of the controllers (every 100 ms): the Job controller, then scheduler + kubelet for every pod, then the proxies. */
  reconcile(): void {
    // Job controller
    for (const job of this.c.objects('jobs')) {
      const ns = job.metadata.namespace;
      const stored = this.c.store.get(`jobs/${ns}/${job.metadata.name}`);
      if (!stored) continue;
      const pods = this.c.objects('pods', ns).filter((p) => p.metadata.ownerReferences?.some((o: Obj) => o.uid === job.metadata.uid));
      if (stored.metadata.deletionTimestamp) {
        if (pods.length === 0) this.c.store.delete(`jobs/${ns}/${job.metadata.name}`);
        continue;
      }
      const conds: Obj[] = (stored.status.conditions ??= []);
      const done = conds.some((c) => (c.type === 'Failed' || c.type === 'Complete') && c.status === 'True');
      const failed = pods.filter((p) => p.status?.phase === 'Failed').length;
      const succeeded = pods.filter((p) => p.status?.phase === 'Succeeded').length;
      const active = pods.filter((p) => !['Failed', 'Succeeded'].includes(p.status?.phase) && !p.metadata.deletionTimestamp);
      const ready = active.filter((p) => p.status?.conditions?.some((c: Obj) => c.type === 'Ready' && c.status === 'True')).length;
      const changed = stored.status.failed !== failed || stored.status.succeeded !== succeeded || stored.status.active !== active.length || stored.status.ready !== ready;
      Object.assign(stored.status, { failed, succeeded, active: active.length, ready });
      if (!done) {
        const now = new Date().toISOString();
        if (succeeded >= (stored.spec.completions ?? 1)) {
          conds.push({ type: 'SuccessCriteriaMet', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods', lastProbeTime: now, lastTransitionTime: now });
          conds.push({ type: 'Complete', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods', lastProbeTime: now, lastTransitionTime: now });
          stored.status.completionTime = now;
        } else if (failed > stored.spec.backoffLimit) {
          conds.push({ type: 'FailureTarget', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastProbeTime: now, lastTransitionTime: now });
          conds.push({ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastProbeTime: now, lastTransitionTime: now });
        } else if (active.length === 0 && !stored.spec.suspend) {
          this.createPod(stored);
        }
      }
      if (changed || !done) stored.metadata.resourceVersion = String(++this.c.rv);
    }
    // scheduler + kubelet
    for (const pod of this.c.store.values()) {
      if (pod.kind !== 'Pod') continue;
      this.stepPod(pod);
    }
    this.network.syncProxies();
  }

  private createPod(job: Obj): void {
    const ns = job.metadata.namespace;
    const suffix = nameSuffix();
    const name = `${job.metadata.name}-${suffix}`;
    const tpl = structuredClone(job.spec.template);
    const pod: Obj = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        ...(tpl.metadata ?? {}),
        name,
        generateName: `${job.metadata.name}-`,
        ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name, uid: job.metadata.uid, controller: true, blockOwnerDeletion: true }],
      },
      spec: { ...tpl.spec, schedulerName: 'default-scheduler', terminationGracePeriodSeconds: tpl.spec.terminationGracePeriodSeconds ?? 30 },
      status: { phase: 'Pending', qosClass: 'BestEffort' },
    };
    this.c.stamp(pod, ns);
    const gpus = (pod.spec.containers as Obj[]).reduce((n, c) => n + Number(c.resources?.limits?.['nvidia.com/gpu'] ?? c.resources?.requests?.['nvidia.com/gpu'] ?? 0), 0);
    this.c.store.set(`pods/${ns}/${name}`, pod);
    this.c.runtimes.set(`${ns}/${name}`, { stage: 'unscheduled', since: Date.now(), behaviour: this.c.nextBehaviours.shift() ?? {}, logs: '', followers: new Set(), gpus, portMap: new Map() });
  }

  private usedGpus(node: string): number {
    let n = 0;
    for (const [key, rt] of this.c.runtimes) {
      const pod = this.c.store.get(`pods/${key}`);
      if (!pod || pod.spec.nodeName !== node) continue;
      if (['Succeeded', 'Failed'].includes(pod.status.phase)) continue;
      n += rt.gpus;
    }
    return n;
  }

  /** One step of a pod: scheduling while unscheduled, then the kubelet. */
  private stepPod(pod: Obj): void {
    const rt = this.c.runtimes.get(`${pod.metadata.namespace}/${pod.metadata.name}`);
    if (!rt || pod.metadata.deletionTimestamp) return;
    if (rt.stage === 'unscheduled') this.schedule(pod, rt);
    else this.kubelet.step(pod, rt);
  }

  /** The scheduler: a node with enough free nvidia.com/gpu whose NoSchedule taints the pod tolerates, else Unschedulable. */
  private schedule(pod: Obj, rt: PodRuntime): void {
    const now = Date.now();
  const reasons = new Map<string, number>();
  let chosen: FakeNode | undefined;
  for (const n of this.c.nodes) {
    if (n.unschedulable) {
      reasons.set('node(s) were unschedulable', (reasons.get('node(s) were unschedulable') ?? 0) + 1);
      continue;
    }
    const untolerated = (n.taints ?? []).find(
      (t) =>
        (t.effect === 'NoSchedule' || t.effect === 'NoExecute') &&
        !(pod.spec.tolerations ?? []).some(
          (tol: Obj) => (tol.operator === 'Exists' ? !tol.key || tol.key === t.key : tol.key === t.key && (tol.value ?? '') === (t.value ?? '')) && (!tol.effect || tol.effect === t.effect),
        ),
    );
    if (untolerated) {
      const r = `node(s) had untolerated taint {${untolerated.key}: ${untolerated.value ?? ''}}`;
      reasons.set(r, (reasons.get(r) ?? 0) + 1);
      continue;
    }
    if (n.gpus - this.usedGpus(n.name) < rt.gpus) {
      reasons.set('Insufficient nvidia.com/gpu', (reasons.get('Insufficient nvidia.com/gpu') ?? 0) + 1);
      continue;
    }
    chosen = n;
    break;
  }
  if (!chosen) {
    const parts = [...reasons.entries()].map(([r, c]) => `${c} ${r}`).sort();
    const msg = `0/${this.c.nodes.length} nodes are available: ${parts.join(', ')}. preemption: 0/${this.c.nodes.length} nodes are available: ${this.c.nodes.length} No preemption victims found for incoming pod.`;
    const before = JSON.stringify(pod.status.conditions);
    this.c.setCondition(pod, 'PodScheduled', 'False', 'Unschedulable', msg);
    if (JSON.stringify(pod.status.conditions) !== before) this.c.touch(pod);
    return;
  }
  pod.spec.nodeName = chosen.name;
  pod.status.hostIP = this.c.nodeIPs.get(chosen.name);
  pod.status.hostIPs = [{ ip: pod.status.hostIP }];
  pod.status.podIP = this.c.allocIP();
  pod.status.podIPs = [{ ip: pod.status.podIP }];
  pod.status.startTime = new Date().toISOString();
  this.c.setCondition(pod, 'PodScheduled', 'True');
  this.c.setCondition(pod, 'Initialized', 'True');
  this.c.setCondition(pod, 'Ready', 'False', 'ContainersNotReady', `containers with unready status: [${pod.spec.containers[0].name}]`);
  this.c.setCondition(pod, 'ContainersReady', 'False', 'ContainersNotReady', `containers with unready status: [${pod.spec.containers[0].name}]`);
  this.c.containerStatus(pod, { waiting: { reason: 'ContainerCreating' } });
  rt.stage = 'creating';
  rt.since = now;
  this.c.touch(pod);
  return;
  }
}
