/**
 * The slurm platform adapter (contract §5 registry/port rule, §8 slurm).
 *
 * From a laptop or CI runner that can only SSH to the login node:
 *  1. connect with ssh2 (keys only, host key checked against known_hosts — see `./ssh.ts`);
 *  2. create the job directory `<--job-dir>/<job_id>` (mode 700), write `secrets.env` (mode 600) from
 *     SSH stdin, upload the rendered job script (`./script.ts`) and `sbatch --parsable` it;
 *  3. follow `squeue` (then `sacct` when accounting exists, then the `exit_status` file the script
 *     leaves) until RUNNING — recording the node — or a terminal state (LaunchFailedError with the log tail);
 *  4. resolve the node's NodeAddr (`scontrol show node`; a NodeName need not resolve) and the service's node port
 *     (8080; docker: the free port Docker picked, from the job's `service_port` file), then wait until the login
 *     node can open a TCP connection to <NodeAddr>:<port> (still watching the job);
 *  5. allocate a local port (8080–8199, registry lock) and start a detached forwarder (`./tunnel.ts`, described
 *     in `./forward.ts`, run by src/forwarder) `127.0.0.1:<host_port> → <NodeAddr>:<port>` through the login node;
 *     host_url = http://localhost:<host_port>.
 * Job queries and SSH helpers are in `./jobs.ts`.
 * Everything status/logs/stop/tunnel need later (SSH target, paths, job dir) is kept in
 * `entry.platform_data` — names and paths only, never a secret.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandFailedError, PlatformUnavailableError, ReadinessTimeoutError } from '../../errors.js';
import { startForwarder } from '../../forwarder/forwarder.js';
import type {
  AdapterContext,
  DiscoverContext,
  DiscoveredService,
  EntryContext,
  JobState,
  LaunchPlan,
  LaunchSpec,
  Launched,
  LogOptions,
  PlatformAdapter,
  RegistryEntry,
  StopOutcome,
} from '../../types.js';
import { formatArgv, shQuote } from '../../util/shell.js';
import { descriptor } from './descriptor.js';
import { slurmForwarder, tunnelDescription } from './forward.js';
import {
  dataOf,
  jobEndedError,
  listPartitions,
  mapSlurmState,
  must,
  nodeAddress,
  PLATFORM,
  platformData,
  probePort,
  queryJob,
  SERVICE_PORT,
  servicePort,
  SQUEUE_ERROR,
  targetOf,
  withSession,
  type SlurmPlatformData,
} from './jobs.js';
import { JOB_FILES, parseJobComment, remote, renderJobScript, type SlurmParams, renderSecretsFile, resolveSlurmParams, resolveSshTarget, secretsFileNames, slurmTimeSeconds } from './script.js';
import { connectSsh } from './ssh.js';

export { mapSlurmState, queryJob, type SlurmPlatformData } from './jobs.js';

// ------------------------------------------------------------------ the adapter

function followCommand(id: string, jobDir: string, tail: number | undefined): string {
  // tail -F in the background; a watcher ends everything when our side closes stdin (we went away);
  // the loop ends it when Slurm no longer lists the job as pending/running. The channel's stdin is
  // saved on fd 3 first: an asynchronous list in a non-interactive shell gets /dev/null as stdin.
  return [
    `exec 3<&0`,
    `${remote.tail(jobDir, tail).replace(/^tail /, 'tail -F ')} 2>/dev/null </dev/null 3<&- & t=$!`,
    `(cat <&3 >/dev/null; kill $t $$ 2>/dev/null) & w=$!`,
    `exec 3<&-`,
    `while :; do s=$(squeue -j ${id} -h -o %T 2>/dev/null); case "$s" in PENDING*|CONFIGURING*|RUNNING*|COMPLETING*|SUSPENDED*|REQUEUE*|RESIZING*|STAGE_OUT*|SIGNALING*) sleep 3;; *) break;; esac; done`,
    `sleep 2; kill $t $w 2>/dev/null; wait $t 2>/dev/null; exit 0`,
  ].join('; ');
}

/** The job's resource request as its #SBATCH options, for messages. */
function resourceRequest(spec: LaunchSpec, p: SlurmParams): string {
  const r: string[] = [];
  if (spec.num_gpus > 0) r.push(`--gres=gpu:${p.gpuType ? `${p.gpuType}:` : ''}${spec.num_gpus}`);
  if (p.cpusPerTask !== undefined) r.push(`--cpus-per-task=${p.cpusPerTask}`);
  if (p.mem !== undefined) r.push(`--mem=${p.mem}`);
  return r.join(' ') || 'the defaults';
}

function abortError(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new Error('aborted');
}

class SlurmAdapter implements PlatformAdapter {
  readonly name = descriptor.name;
  readonly reservesHostPort = descriptor.reservesHostPort;
  readonly unsupported = descriptor.unsupported;
  readonly forwarder = slurmForwarder;

  /** Validates options, then checks over SSH that the Slurm commands exist and the partition is known. */
  async preflight(spec: LaunchSpec, ctx: AdapterContext): Promise<void> {
    const p = resolveSlurmParams(spec, ctx.env);
    renderJobScript(spec, p);
    await withSession(p.target, ctx.env, async (s) => {
      const tools = await s.exec('for c in sbatch squeue scancel sinfo; do command -v $c >/dev/null 2>&1 || echo $c; done');
      const missing = tools.stdout.trim().split(/\s+/).filter(Boolean);
      if (missing.length)
        throw new PlatformUnavailableError(PLATFORM, `${missing.join(', ')} not found on ${p.target.host}`, {
          hint: 'Point --slurm-host at a Slurm login node, or make the Slurm commands available in non-interactive SSH sessions (PATH in ~/.bashrc).',
        });
      const parts = p.partition.split(',');
      const known = await listPartitions(s);
      const unknown = parts.filter((x) => !known.includes(x));
      if (known.length && unknown.length)
        throw new PlatformUnavailableError(PLATFORM, `partition ${unknown.join(', ')} does not exist on ${p.target.host}`, { hint: `Use --partition with one of: ${known.join(', ')}.` });
    });
  }

  /**
   * Prompt choices for `partition`: the cluster's partitions (default first), read over SSH with the target
   * gathered so far. Other keys: undefined.
   * @throws what connecting throws (unknown host key, auth failure); the CLI then asks for free text.
   */
  async suggest(key: string, env: NodeJS.ProcessEnv, options: Record<string, unknown>): Promise<string[] | undefined> {
    if (key !== 'partition') return undefined;
    const names = await withSession(resolveSshTarget(options, env), env, listPartitions);
    return names.length ? names : undefined;
  }

  async plan(spec: LaunchSpec, ctx: AdapterContext): Promise<LaunchPlan> {
    const p = resolveSlurmParams(spec, ctx.env);
    const script = renderJobScript(spec, p);
    const t = p.target;
    const ssh = ['ssh', '-p', String(t.port), ...(t.identityFile ? ['-i', t.identityFile] : []), ...(t.knownHosts ? ['-o', `UserKnownHostsFile=${t.knownHosts}`] : []), '-o', 'BatchMode=yes', `${t.user}@${t.host}`];
    const names = secretsFileNames(spec, p, ctx.env);
    const secrets = names.length ? names.join(', ') : 'none';
    return {
      platform: PLATFORM,
      steps: [
        { description: `connect over SSH (ssh2, keys only; host key checked against ${t.knownHosts ?? '~/.ssh/known_hosts'}); remote commands run as /bin/sh -c on the login node`, command: ssh },
        { description: 'create the job directory (mode 700)', command: remote.prepareDir(p) },
        { description: `write ${JOB_FILES.secrets} (mode 600) with the values of: ${secrets} — sent on SSH stdin, never on a command line`, command: remote.writeSecrets(p) },
        { description: `upload the job script (on SSH stdin)`, command: remote.writeScript(p) },
        { description: 'job script', document: { name: `${p.jobDir}/${JOB_FILES.script}`, text: script } },
        { description: 'submit', command: remote.submit(p) },
        { description: 'follow the job until RUNNING (then sacct when accounting exists)', command: remote.squeue('<slurm_job_id>') },
        {
          description: 'find the node address the tunnel connects to (NodeAddr; a NodeName need not resolve)',
          command: remote.nodeAddr('<node>'),
        },
        ...(p.runtime === 'docker' ? [{ description: 'read the node port Docker picked for the service (the job script writes it)', command: remote.servicePort(p.jobDir) }] : []),
        {
          description: `start a detached forwarder: 127.0.0.1:<host_port from 8080-8199> → <NodeAddr>:${p.runtime === 'docker' ? '<node port>' : SERVICE_PORT} through ${t.user}@${t.host}; host_url http://localhost:<host_port>`,
          command: formatArgv([process.execPath, 'tunnel.js', '--job-id', spec.job_id, '--node', '<NodeAddr>', '--remote-port', p.runtime === 'docker' ? '<node port>' : String(SERVICE_PORT), '--listen-port', '<host_port>']),
        },
      ],
    };
  }

  async launch(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched> {
    const p = resolveSlurmParams(spec, ctx.env);
    const script = renderJobScript(spec, p);
    const data = platformData(p);
    const startedAt = Date.now();
    const deadline = ctx.deadline ?? startedAt + 600_000;
    const s = await connectSsh(p.target, ctx.env);
    let slurmId: string | undefined;
    try {
      // Record where the secrets file goes before it exists, so stop can always remove it (and find the job by name).
      await ctx.record({ platform_data: { ...data } });
      await must(s, remote.prepareDir(p));
      await must(s, remote.writeSecrets(p), { stdin: renderSecretsFile(secretsFileNames(spec, p, ctx.env), ctx.env) });
      await must(s, remote.writeScript(p), { stdin: script });
      const sub = await s.exec(remote.submit(p));
      if (sub.code !== 0) {
        await s.exec(remote.removeSecrets(p.jobDir));
        throw new CommandFailedError(['sbatch', '--parsable', `${p.jobDir}/${JOB_FILES.script}`], sub.code ?? undefined, sub.stderr.trim(), {
          // "Requested node configuration is not available" / "Invalid generic resource (gres) specification": no node
          // of the partition has what the #SBATCH lines ask for (a GPU type it lacks, too many GPUs, CPUs or memory).
          hint: /gres|node configuration is not available/i.test(sub.stderr)
            ? `No node of partition ${p.partition} offers what the job asks for (${resourceRequest(spec, p)}). List the nodes' GPUs (with their types), CPUs and memory with \`sinfo -p ${p.partition} -o '%G %c %m'\` on ${p.target.host}, then adjust --num-gpus, --gpu-type, --cpus-per-task or --mem.`
            : 'sbatch refused the job: check --partition/--account/--time/--num-gpus against sinfo and your associations.',
        });
      }
      slurmId = sub.stdout.trim().split('\n').pop()!.split(';')[0]!.trim();
      if (!/^\d+(_\d+)?$/.test(slurmId)) throw new CommandFailedError(['sbatch', '--parsable'], 0, `unexpected sbatch output: ${sub.stdout.trim().slice(0, 200)}`);
      await ctx.record({ platform_job_id: slurmId, platform_data: { ...data } });
      ctx.log(`submitted Slurm job ${slurmId} (${spec.job_id}) to partition ${p.partition}; job dir ${p.jobDir} on ${p.target.host}`);

      // ---- wait for RUNNING
      let last = '';
      let node: string | undefined;
      for (let i = 0; ; i++) {
        if (ctx.signal?.aborted) throw abortError(ctx.signal);
        const st = await queryJob(s, slurmId, p.jobDir);
        const desc = `${st.native ?? st.state}${st.reason ? ` (${st.reason})` : ''}`;
        if (desc !== last) ctx.log(`Slurm job ${slurmId}: ${desc}${st.node ? ` on ${st.node}` : ''}`);
        last = desc;
        if (st.state === 'running' && st.node) {
          node = st.node;
          break;
        }
        if (st.state === 'complete' || st.state === 'error' || st.state === 'canceled' || (st.state === 'unknown' && st.native !== SQUEUE_ERROR && i > 2)) {
          throw await jobEndedError(s, slurmId, spec.job_id, p, st);
        }
        if (Date.now() >= deadline) {
          throw new ReadinessTimeoutError(spec.job_id, Math.round((deadline - startedAt) / 1000), `Slurm ${desc}`);
        }
        await sleep(i < 15 ? 1000 : 3000, undefined, ctx.signal ? { signal: ctx.signal } : undefined).catch(() => undefined);
      }
      const addr = await nodeAddress(s, node);
      data.node_addr = addr;
      // The time limit counts from now (RUNNING): Slurm ends the job then (sbatch(1) --time).
      const limit = slurmTimeSeconds(p.time);
      const expires_at = limit !== undefined ? new Date(Date.now() + limit * 1000).toISOString() : undefined;
      await ctx.record({ slurm_node: node, platform_data: { ...data }, ...(expires_at ? { expires_at } : {}) });

      // ---- wait until something listens on addr:port (seen from the login node), watching the job meanwhile
      let port: number | undefined;
      for (let i = 0; ; i++) {
        if (ctx.signal?.aborted) throw abortError(ctx.signal);
        // Job state first: a job that already died must not be mistaken for whatever else answers on that port.
        const st = await queryJob(s, slurmId, p.jobDir);
        if (st.state !== 'running' && st.native !== SQUEUE_ERROR) {
          throw await jobEndedError(s, slurmId, spec.job_id, p, st);
        }
        port ??= await servicePort(s, p);
        if (port !== undefined && data.service_port !== port) {
          data.service_port = port;
          await ctx.record({ platform_data: { ...data } });
        }
        if (port !== undefined && (await probePort(s, addr, port))) break;
        const where = `${node} (${addr}:${port ?? '<port not written yet>'})`;
        if (i === 5) ctx.log(`waiting for the service to listen on ${where}`);
        if (Date.now() >= deadline)
          throw new ReadinessTimeoutError(spec.job_id, Math.round((deadline - startedAt) / 1000), `Slurm job RUNNING on ${node}, nothing listening on ${addr}:${port ?? '<service port>'}`);
        await sleep(i < 30 ? 1000 : 3000, undefined, ctx.signal ? { signal: ctx.signal } : undefined).catch(() => undefined);
      }

      // ---- tunnel
      const hostPort = await ctx.allocatePort({ kind: 'local' });
      const fwd = tunnelDescription({ jobId: spec.job_id, slurmJobId: slurmId, target: p.target, node: addr, remotePort: port, port: hostPort, env: ctx.env });
      data.tunnel_log = fwd.logFile;
      const pid = await startForwarder(fwd, { signal: ctx.signal, onPid: (fp) => ctx.record({ forwarder_pid: fp, platform_data: { ...data } }) });
      ctx.log(`tunnel 127.0.0.1:${hostPort} → ${node} (${addr}:${port}) through ${p.target.host} (forwarder pid ${pid})`);
      return {
        host_url: `http://localhost:${hostPort}`,
        platform_job_id: slurmId,
        host_port: hostPort,
        slurm_node: node,
        forwarder_pid: pid,
        platform_data: { ...data },
        expires_at,
      };
    } finally {
      s.close();
    }
  }

  async status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
    if (!entry.platform_job_id) return { state: 'unknown', reason: 'no Slurm job id recorded (the start was interrupted before sbatch answered)' };
    return withSession(targetOf(entry, ctx.env), ctx.env, (s) => queryJob(s, entry.platform_job_id!, dataOf(entry).job_dir));
  }

  async *logs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string> {
    const jobDir = dataOf(entry).job_dir;
    if (!jobDir) throw new PlatformUnavailableError(PLATFORM, `entry ${entry.job_id} does not record its job directory, so its log cannot be found`);
    const s = await connectSsh(targetOf(entry, ctx.env), ctx.env);
    try {
      if (!opts.follow || !entry.platform_job_id) {
        const r = await s.exec(`${remote.tail(jobDir, opts.tail)}`, opts.signal ? { signal: opts.signal } : {});
        if (r.code !== 0 && /No such file/i.test(r.stderr)) return;
        if (r.code !== 0) throw new CommandFailedError(['ssh', `${s.target.user}@${s.target.host}`, remote.tail(jobDir, opts.tail)], r.code ?? undefined, r.stderr.trim());
        if (r.stdout) yield r.stdout;
        return;
      }
      const ch = await s.execStream(followCommand(entry.platform_job_id, jobDir, opts.tail));
      const queue: string[] = [];
      let done = false;
      let wake: (() => void) | undefined;
      const notify = () => {
        wake?.();
        wake = undefined;
      };
      ch.on('data', (d: Buffer) => {
        queue.push(d.toString('utf8'));
        notify();
      });
      ch.stderr.resume();
      ch.on('close', () => {
        done = true;
        notify();
      });
      const onAbort = () => {
        ch.end();
        setTimeout(() => ch.close(), 500).unref();
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        while (true) {
          if (queue.length) {
            yield queue.splice(0).join('');
            continue;
          }
          if (done || opts.signal?.aborted) break;
          await new Promise<void>((r) => (wake = r));
        }
      } finally {
        opts.signal?.removeEventListener('abort', onAbort);
        if (!done) ch.end();
      }
    } finally {
      s.close();
    }
  }

  async stop(entry: RegistryEntry, ctx: EntryContext): Promise<StopOutcome> {
    const jobDir = dataOf(entry).job_dir;
    let outcome: StopOutcome = {};
    if (entry.platform_job_id || jobDir) {
      await withSession(targetOf(entry, ctx.env), ctx.env, async (s) => {
        const id = entry.platform_job_id;
        if (id) {
          const before = await queryJob(s, id, jobDir);
          if (before.state === 'gone') outcome = { already_gone: true };
          const r = await s.exec(remote.cancel(id));
          if (r.code !== 0 && !/invalid job id|already completing or completed|job has finished/i.test(r.stderr))
            throw new CommandFailedError(['scancel', id], r.code ?? undefined, r.stderr.trim(), { hint: 'Check that the job belongs to the Slurm user tao-infer connects as.' });
          // Wait until the job has really ended, so the service port is closed when stop returns.
          const until = Date.now() + 90_000;
          let st = await queryJob(s, id, jobDir);
          while (st.state === 'running' || st.state === 'pending' || st.native === SQUEUE_ERROR) {
            if (Date.now() > until) {
              ctx.warn(`Slurm job ${id} is still ${st.native} after scancel; it ends when Slurm's KillWait expires`);
              break;
            }
            await sleep(1000);
            st = await queryJob(s, id, jobDir);
          }
          ctx.log(`Slurm job ${id}: ${st.native ?? st.state}`);
        } else {
          // Interrupted between sbatch and recording its id: the job name is the job_id (a UUID).
          await s.exec(`scancel --name=${shQuote(entry.job_id)}`);
        }
        if (jobDir) await s.exec(remote.removeSecrets(jobDir));
        // A docker-runtime container is a child of the Docker daemon, not of the job: when the batch script was
        // SIGKILLed (scancel --signal=KILL, a node-level kill) its EXIT trap never ran and the container still
        // holds the GPUs. Remove it by its Slurm job id label. This reaches the Docker engine of the login node
        // (the same machine on single-node setups); on other clusters the site epilog is the robust place
        // (platforms/slurm/README.md gives the line).
        if (id && dataOf(entry).container_runtime === 'docker') await s.exec(remote.removeContainers(id));
      });
    }
    return outcome;
  }

  /**
   * Jobs of the SSH user (`squeue -u`, recently ended ones too) whose `--comment` is tao-infer's marker
   * (`jobComment`): entries rebuilt with the job's node, job directory (its working directory), partition
   * and account; running ones get a local tunnel port from the generic discover.
   * @throws MissingInputError without a login node (--slurm-host / SLURM_HOSTNAME); what connecting throws.
   */
  async discover(ctx: DiscoverContext): Promise<DiscoveredService[]> {
    const target = resolveSshTarget(ctx.options, ctx.env);
    const out = await withSession(target, ctx.env, (s) => must(s, remote.listMine()));
    const found: DiscoveredService[] = [];
    for (const line of out.split('\n')) {
      const [id = '', native = '', node = '', comment = '', workDir = '', partition = '', account = '', submitted = ''] = line.trim().split('|');
      const marker = parseJobComment(comment);
      if (!marker || !/^\d+(_\d+)?$/.test(id)) continue;
      const live: JobState = { state: mapSlurmState(native), native };
      if (node && node !== '(null)') live.node = node;
      const data: SlurmPlatformData = { ssh_user: target.user, ssh_host: target.host, ssh_port: target.port, job_dir: workDir, container_runtime: marker.runtime, partition };
      if (target.identityFile) data.identity_file = target.identityFile;
      if (target.knownHosts) data.known_hosts = target.knownHosts;
      if (account && account !== '(null)') data.account = account;
      const started = new Date(submitted);
      const entry: RegistryEntry = {
        job_id: marker.job_id,
        platform: PLATFORM,
        platform_job_id: id,
        network_arch: marker.network_arch,
        host_url: '',
        started_at: Number.isNaN(started.getTime()) ? new Date().toISOString() : started.toISOString(),
        platform_data: { ...data, discovered: true },
      };
      if (marker.model_path) entry.model_path = marker.model_path;
      if (live.node) entry.slurm_node = live.node;
      found.push({ entry, live, localPortField: 'host_port' });
    }
    return found;
  }
}

/** Factory loaded lazily by `src/platforms/index.ts`. */
export function createAdapter(): PlatformAdapter {
  return new SlurmAdapter();
}
