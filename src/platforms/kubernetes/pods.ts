/**
 * Reading Job and Pod state (contract §8 kubernetes): which pod belongs to a Job, and what its
 * conditions and container states mean for tao-infer (JobState), including the reasons users need
 * (`ImagePullBackOff`, `Insufficient nvidia.com/gpu`, `OOMKilled`). Types only from the client.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { JobState } from '../../types.js';

/** Container waiting reasons that never resolve by themselves for a tao-infer job. */
export const FATAL_WAITING = new Set([
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
  'CrashLoopBackOff',
]);

/** ErrImagePull is fatal at once when the registry's answer cannot change on retry. */
const PERMANENT_PULL_ERROR = /unauthori[sz]ed|denied|forbidden|not found|manifest unknown|no such host|invalid reference|401|403|404/i;

/** Label the Job controller puts on its pods (`batch.kubernetes.io/job-name` on 1.27+, `job-name` on all versions). */
export function podSelectorFor(jobName: string): string {
  return `job-name=${jobName}`;
}

/** The pod to look at: the newest one (a Job with backoffLimit 0 has one). */
export function newestPod(pods: V1Pod[]): V1Pod | undefined {
  const ts = (p: V1Pod) => new Date(p.metadata?.creationTimestamp ?? 0).getTime();
  return [...pods].sort((a, b) => ts(b) - ts(a))[0];
}

/** What a pod's state means. `fatal` marks a pending pod that will never start (stop waiting). */
export interface PodVerdict extends JobState {
  fatal?: boolean;
  /** The pod's IP and node address (hostIP) once known. */
  podIP?: string;
  hostIP?: string;
}

/**
 * Classify a pod: Pending (Unschedulable with the scheduler's message, e.g. "0/3 nodes are available:
 * 3 Insufficient nvidia.com/gpu."; container waiting reasons), Running, Succeeded → complete,
 * Failed → error with the container's terminated reason (`OOMKilled`, `Error`) and exit code.
 * @param opts.unschedulableIsFatal treat Unschedulable as fatal (no autoscaler expected).
 */
export function podVerdict(pod: V1Pod, opts: { unschedulableIsFatal?: boolean } = {}): PodVerdict {
  const st = pod.status ?? {};
  const phase = st.phase ?? 'Unknown';
  const node = pod.spec?.nodeName;
  const base: PodVerdict = { state: 'unknown', native: phase };
  if (node) base.node = node;
  if (st.podIP) base.podIP = st.podIP;
  if (st.hostIP) base.hostIP = st.hostIP;
  const cs = st.containerStatuses?.[0];
  const terminated = cs?.state?.terminated;
  const terminal = (t: NonNullable<typeof terminated>): PodVerdict => {
    const v: PodVerdict = { ...base, state: t.exitCode === 0 ? 'complete' : 'error', native: t.reason ?? phase, exitCode: t.exitCode };
    const why = [t.reason, t.message?.trim()].filter(Boolean).join(': ');
    if (why) v.reason = why;
    return v;
  };
  if (pod.metadata?.deletionTimestamp) return { ...base, state: 'canceled', native: 'Terminating', reason: 'the pod is being deleted' };
  if (phase === 'Pending') {
    const sched = st.conditions?.find((c) => c.type === 'PodScheduled');
    if (sched && sched.status === 'False') {
      const v: PodVerdict = { ...base, state: 'pending', native: sched.reason ?? 'Unschedulable', reason: sched.message ?? sched.reason ?? 'not scheduled' };
      if (opts.unschedulableIsFatal && sched.reason === 'Unschedulable') v.fatal = true;
      return v;
    }
    const waiting = cs?.state?.waiting;
    if (waiting) {
      const reason = waiting.reason ?? 'Waiting';
      const v: PodVerdict = { ...base, state: 'pending', native: reason };
      if (waiting.message) v.reason = `${reason}: ${waiting.message}`;
      else v.reason = reason;
      if (FATAL_WAITING.has(reason) || (reason === 'ErrImagePull' && PERMANENT_PULL_ERROR.test(waiting.message ?? ''))) {
        v.state = 'error';
        v.fatal = true;
      }
      return v;
    }
    if (terminated) return terminal(terminated);
    return { ...base, state: 'pending', native: 'Pending' };
  }
  if (phase === 'Running') {
    if (terminated) return terminal(terminated);
    const waiting = cs?.state?.waiting;
    if (waiting && FATAL_WAITING.has(waiting.reason ?? '')) {
      return { ...base, state: 'error', native: waiting.reason, reason: `${waiting.reason}: ${waiting.message ?? ''}`.trim(), fatal: true };
    }
    const v: PodVerdict = { ...base, state: 'running', native: cs?.ready ? 'Running (ready)' : 'Running' };
    return v;
  }
  if (phase === 'Succeeded') return terminated ? terminal(terminated) : { ...base, state: 'complete', native: 'Succeeded' };
  if (phase === 'Failed') {
    if (terminated) return terminal(terminated);
    const v: PodVerdict = { ...base, state: 'error', native: st.reason ?? 'Failed' };
    if (st.message) v.reason = st.message;
    return v;
  }
  return base;
}

/** Job-level verdict from `status.conditions` (Complete / Failed / Suspended), or undefined while active. */
export function jobVerdict(job: V1Job): JobState | undefined {
  if (job.metadata?.deletionTimestamp) return { state: 'canceled', native: 'Terminating', reason: 'the Job is being deleted' };
  const conds = job.status?.conditions ?? [];
  const isTrue = (t: string) => conds.find((c) => c.type === t && c.status === 'True');
  const failed = isTrue('Failed');
  if (failed) {
    const s: JobState = { state: 'error', native: failed.reason ?? 'Failed' };
    if (failed.message) s.reason = failed.message;
    return s;
  }
  if (isTrue('Complete')) return { state: 'complete', native: 'Complete' };
  if (isTrue('Suspended')) return { state: 'pending', native: 'Suspended', reason: 'the Job is suspended' };
  return undefined;
}
