/**
 * The slurm forwarder: `./tunnel.ts` (ssh2, run with this Node) listening on 127.0.0.1:<host_port> and
 * forwarding to <NodeAddr>:<service port> through the login node (contract §5 "slurm ... through an SSH local forward"),
 * described for src/forwarder, which starts, checks, stops and restarts it.
 */
import { PlatformUnavailableError } from '../../errors.js';
import { forwarderEnv, type ForwarderDescription, type ForwarderSupport } from '../../forwarder/forwarder.js';
import { forwarderLogFile } from '../../forwarder/log.js';
import type { RegistryEntry } from '../../types.js';
import { dataOf, nodeAddress, PLATFORM, queryJob, servicePort, targetOf, withSession } from './jobs.js';
import type { SshTarget } from './ssh.js';

/**
 * The tunnel of Slurm job `slurmJobId` (job_id `jobId`): 127.0.0.1:`port` → `node`:`remotePort` through `target`.
 * `node` is the address the login node connects to (the node's NodeAddr), `remotePort` the service's node port.
 */
export function tunnelDescription(a: { jobId: string; slurmJobId: string; target: SshTarget; node: string; remotePort: number; port: number; env: NodeJS.ProcessEnv }): ForwarderDescription {
  const t = a.target;
  const args = ['--job-id', a.jobId, '--slurm-job-id', a.slurmJobId, '--user', t.user, '--host', t.host, '--port', String(t.port)];
  if (t.identityFile) args.push('--identity-file', t.identityFile);
  if (t.knownHosts) args.push('--known-hosts', t.knownHosts);
  args.push('--node', a.node, '--remote-port', String(a.remotePort), '--listen-host', '127.0.0.1', '--listen-port', String(a.port));
  return {
    platform: PLATFORM,
    job_id: a.jobId,
    kind: 'SSH tunnel',
    run: { module: new URL('./tunnel.js', import.meta.url), args },
    env: forwarderEnv(a.env),
    logFile: forwarderLogFile(PLATFORM, a.jobId),
    listen: { host: '127.0.0.1', port: a.port },
    target: `${a.node}:${a.remotePort} through ${t.user}@${t.host}`,
    hint: `The login node must allow TCP forwarding (AllowTcpForwarding) to ${a.node}:${a.remotePort}.`,
  };
}

/**
 * Forwarder support of the slurm adapter: for `tao-infer tunnel`, asks the cluster where the job runs now and
 * describes a tunnel on the entry's host_port (so host_url stays valid).
 * @throws PlatformUnavailableError when the entry has no Slurm job id or host_port, or the job is not running.
 */
export const slurmForwarder: ForwarderSupport = {
  kind: 'SSH tunnel',
  async describe(entry: RegistryEntry, ctx) {
    const id = entry.platform_job_id;
    if (!id) throw new PlatformUnavailableError(PLATFORM, `entry ${entry.job_id} has no Slurm job id`, { hint: `Stop it with 'tao-infer stop ${entry.job_id}' and start again.` });
    const port = entry.host_port;
    if (typeof port !== 'number') throw new PlatformUnavailableError(PLATFORM, `entry ${entry.job_id} has no host_port to listen on`);
    const target = targetOf(entry, ctx.env);
    const data = dataOf(entry);
    // Where the job runs now (a requeued job may have moved): its node, that node's NodeAddr, the service's node port.
    const { st, addr, remotePort } = await withSession(target, ctx.env, async (s) => {
      const st = await queryJob(s, id, data.job_dir);
      if (st.state !== 'running' || !st.node) return { st };
      const addr = await nodeAddress(s, st.node);
      const runtime = data.container_runtime === 'docker' ? 'docker' : 'none';
      // docker: the port file the job wrote (re-read: a requeued job has a new port), else the recorded port.
      const fromJob = runtime === 'docker' && !data.job_dir ? undefined : await servicePort(s, { runtime, jobDir: data.job_dir ?? '' });
      const remotePort = fromJob ?? data.service_port;
      return { st, addr, remotePort };
    });
    if (st.state !== 'running' || !st.node || !addr)
      throw new PlatformUnavailableError(PLATFORM, `Slurm job ${id} (${entry.job_id}) is ${st.native ?? st.state}, not running: there is nothing to tunnel to`, {
        hint: `See 'tao-infer logs ${entry.job_id}'; remove it with 'tao-infer stop ${entry.job_id}'.`,
      });
    if (remotePort === undefined)
      throw new PlatformUnavailableError(PLATFORM, `Slurm job ${id} (${entry.job_id}) has not written its service port yet (docker is still starting the container)`, {
        hint: `Try again in a moment; see 'tao-infer logs ${entry.job_id}'.`,
      });
    const d = tunnelDescription({ jobId: entry.job_id, slurmJobId: id, target, node: addr, remotePort, port, env: ctx.env });
    d.fields = { host_port: port, host_url: `http://localhost:${port}`, slurm_node: st.node };
    return d;
  },
};
