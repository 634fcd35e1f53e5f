/**
 * `tao-infer discover` on Brev: tao-infer's containers on the user's RUNNING instances, rebuilt into registry entries
 * from their labels (src/platforms/docker-cli.ts entryFromContainer).
 */
import { LABELS } from '../../labels.js';
import type { DiscoverContext, DiscoveredService } from '../../types.js';
import { entryFromContainer, mapDockerState, type DockerInspect } from '../docker-cli.js';
import { brevExec, lastLine, listInstances } from './cli.js';

/**
 * Containers labelled `tao-infer.managed-by=tao-infer` on every RUNNING instance of `brev ls --json`, one
 * `brev exec` per instance. Stopped instances are never exec'd: `brev exec` starts a stopped instance and
 * waits for it (brev-cli pkg/cmd/exec/exec.go, runExecCommand). Found services get a new local ssh forward
 * (local_port) from the generic discover; an instance that does not answer is warned about and skipped.
 * @throws PlatformUnavailableError when brev is missing or logged out.
 */
export async function discoverContainers(ctx: DiscoverContext): Promise<DiscoveredService[]> {
  const out: DiscoveredService[] = [];
  const script = `ids=$(docker ps -a -q --no-trunc --filter label=${LABELS.managedBy}=tao-infer); if [ -n "$ids" ]; then docker inspect $ids; else echo '[]'; fi`;
  for (const w of await listInstances(ctx.env)) {
    if (String(w.status).toUpperCase() !== 'RUNNING') continue;
    const r = await brevExec(w.name, script, ctx.env, { timeoutMs: 120_000, signal: ctx.signal });
    let list: DockerInspect[] = [];
    try {
      if (!r.remote) throw new Error(lastLine(r.stderr || r.stdout) || `exit ${r.exitCode}`);
      list = JSON.parse(r.remote.out.trim() || '[]') as DockerInspect[];
    } catch (e) {
      ctx.warn(`brev: could not list the containers on ${w.name}: ${(e as Error).message}`);
      continue;
    }
    for (const c of list) {
      const entry = entryFromContainer(c, 'brev');
      if (!entry) continue;
      entry.host_url = '';
      entry.platform_data = { ...entry.platform_data, instance: w.name };
      out.push({ entry, live: mapDockerState(c.State ?? {}), localPortField: 'local_port' });
    }
  }
  return out;
}
