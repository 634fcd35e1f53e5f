/**
 * The slurm forwarder: `./tunnel.ts` (ssh2, run with this Node) listening on 127.0.0.1:<host_port> and
 * forwarding to <node>:8080 through the login node (contract §5 "slurm ... through an SSH local forward"),
 * described for src/forwarder, which starts, checks, stops and restarts it.
 */
import { PlatformUnavailableError } from '../../errors.js';
import { forwarderEnv, type ForwarderDescription, type ForwarderSupport } from '../../forwarder/forwarder.js';
import { forwarderLogFile } from '../../forwarder/log.js';
import type { RegistryEntry } from '../../types.js';
import { dataOf, PLATFORM, queryJob, SERVICE_PORT, targetOf, withSession } from './jobs.js';
import type { SshTarget } from './ssh.js';

/** The tunnel of Slurm job `slurmJobId` (job_id `jobId`): 127.0.0.1:`port` → `node`:8080 through `target`. */
export function tunnelDescription(a: { jobId: string; slurmJobId: string; target: SshTarget; node: string; port: number; env: NodeJS.ProcessEnv }): ForwarderDescription {
  const t = a.target;
  const args = ['--job-id', a.jobId, '--slurm-job-id', a.slurmJobId, '--user', t.user, '--host', t.host, '--port', String(t.port)];
  if (t.identityFile) args.push('--identity-file', t.identityFile);
  if (t.knownHosts) args.push('--known-hosts', t.knownHosts);
  args.push('--node', a.node, '--remote-port', String(SERVICE_PORT), '--listen-host', '127.0.0.1', '--listen-port', String(a.port));
  return {
    platform: PLATFORM,
    job_id: a.jobId,
    kind: 'SSH tunnel',
    run: { module: new URL('./tunnel.js', import.meta.url), args },
    env: forwarderEnv(a.env),
    logFile: forwarderLogFile(PLATFORM, a.jobId),
    listen: { host: '127.0.0.1', port: a.port },
    target: `${a.node}:${SERVICE_PORT} through ${t.user}@${t.host}`,
    hint: `The login node must allow TCP forwarding (AllowTcpForwarding) to ${a.node}:${SERVICE_PORT}.`,
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
    const st = await withSession(target, ctx.env, (s) => queryJob(s, id, dataOf(entry).job_dir));
    if (st.state !== 'running' || !st.node)
      throw new PlatformUnavailableError(PLATFORM, `Slurm job ${id} (${entry.job_id}) is ${st.native ?? st.state}, not running: there is nothing to tunnel to`, {
        hint: `See 'tao-infer logs ${entry.job_id}'; remove it with 'tao-infer stop ${entry.job_id}'.`,
      });
    const d = tunnelDescription({ jobId: entry.job_id, slurmJobId: id, target, node: st.node, port, env: ctx.env });
    d.fields = { host_port: port, host_url: `http://localhost:${port}`, slurm_node: st.node };
    return d;
  },
};
