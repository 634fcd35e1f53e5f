/**
 * kubernetes status and logs of an existing entry: the Job's conditions, then its newest pod (./pods.ts);
 * the container log, followed with client-node's `Log` (GET .../pods/{pod}/log?follow=true).
 */
import { Log } from '@kubernetes/client-node';
import { PassThrough } from 'node:stream';
import { PlatformError } from '../../errors.js';
import type { EntryContext, JobState, LogOptions, RegistryEntry } from '../../types.js';
import { isNotFound, toPlatformError, type KubeConnection } from './client.js';
import { connectEntry, entryData, listJobPods } from './entry.js';
import { CONTAINER_NAME } from './manifests.js';
import { jobVerdict, newestPod, podVerdict } from './pods.js';

/** Per-request timeout for status (ls stays responsive when a cluster is unreachable). */
const STATUS_TIMEOUT_MS = 10_000;

/**
 * Job conditions first (Complete/Failed/being deleted), then the newest pod's state. Never throws:
 * an unreachable cluster or a missing Job is `unknown` with the reason.
 */
export async function jobStatus(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
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
      if (isNotFound(e)) return { state: 'gone', native: 'NotFound', reason: `Job ${d.job_name} not found in namespace ${d.namespace}` };
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
export async function* podLogs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string> {
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
  // client-node 1.4.0 Log (dist/log.js) sends tailLines only when truthy, so 0 would stream the whole log:
  // give it as the string '0' (truthy; serialized with toString()).
  if (opts.tail !== undefined) logOpts.tailLines = (opts.tail === 0 ? '0' : opts.tail) as number;
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
