/**
 * The slurm platform adapter (contract §5 registry/port rule, §8 slurm).
 *
 * From a laptop or CI runner that can only SSH to the login node:
 *  1. connect with ssh2 (keys only, host key checked against known_hosts — see `./ssh.ts`);
 *  2. create the job directory `<--job-dir>/<job_id>` (mode 700), write `secrets.env` (mode 600) from
 *     SSH stdin, upload the rendered job script (`./script.ts`) and `sbatch --parsable` it;
 *  3. follow `squeue` (then `sacct` when accounting exists, then the `exit_status` file the script
 *     leaves) until RUNNING — recording the node — or a terminal state (LaunchFailedError with the log tail);
 *  4. wait until the login node can open a TCP connection to <node>:8080 (still watching the job);
 *  5. allocate a local port (8080–8199, registry lock) and start a detached forwarder (`./tunnel.ts`)
 *     `127.0.0.1:<host_port> → <node>:8080` through the login node; host_url = http://localhost:<host_port>.
 * Everything status/logs/stop/tunnel need later (SSH target, paths, job dir) is kept in
 * `entry.platform_data` — names and paths only, never a secret.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandFailedError, LaunchFailedError, PlatformUnavailableError, ReadinessTimeoutError } from '../../errors.js';
import type {
  AdapterContext,
  EntryContext,
  JobState,
  JobStateName,
  LaunchPlan,
  LaunchSpec,
  Launched,
  LogOptions,
  PlatformAdapter,
  PortAllocator,
  RegistryEntry,
} from '../../types.js';
import { forwarderEnv, isAlive, isOwnProcess, killPid, spawnDetached, waitForPort, forwarderLogFile } from '../../util/detached.js';
import { formatArgv, shQuote } from '../../util/shell.js';
import { JOB_FILES, packageFile, remote, remotePath, renderJobScript, renderSecretsFile, resolveSlurmParams, resolveSshTarget, type SlurmParams } from './script.js';
import { connectSsh, type SshSession, type SshTarget } from './ssh.js';

const PLATFORM = 'slurm';
/** Port the service listens on in the node (contract §3). */
const SERVICE_PORT = 8080;

/** What the adapter keeps in `RegistryEntry.platform_data` (non-secret). */
export interface SlurmPlatformData {
  ssh_user: string;
  ssh_host: string;
  ssh_port: number;
  identity_file?: string;
  known_hosts?: string;
  /** Job directory on the cluster (`~/...` or absolute). */
  job_dir: string;
  container_runtime: string;
  partition: string;
  account?: string;
  /** Local log file of the tunnel forwarder. */
  tunnel_log?: string;
}

// ------------------------------------------------------------------ state mapping (contract §8)

const STATE_MAP: Record<string, JobStateName> = {
  PENDING: 'pending',
  CONFIGURING: 'pending',
  REQUEUED: 'pending',
  REQUEUE_FED: 'pending',
  REQUEUE_HOLD: 'pending',
  RESV_DEL_HOLD: 'pending',
  SUSPENDED: 'pending',
  RUNNING: 'running',
  COMPLETING: 'running',
  STAGE_OUT: 'running',
  SIGNALING: 'running',
  RESIZING: 'running',
  COMPLETED: 'complete',
  FAILED: 'error',
  TIMEOUT: 'error',
  OUT_OF_MEMORY: 'error',
  NODE_FAIL: 'error',
  BOOT_FAIL: 'error',
  DEADLINE: 'error',
  SPECIAL_EXIT: 'error',
  CANCELLED: 'canceled',
  PREEMPTED: 'canceled',
  REVOKED: 'canceled',
};

/**
 * Map a Slurm state word (squeue `%T` or sacct `State`, possibly annotated `CANCELLED by 123` or
 * truncated with `+`) to a normalised state: PENDING→pending; RUNNING/COMPLETING→running;
 * COMPLETED→complete; FAILED/TIMEOUT/OUT_OF_MEMORY/NODE_FAIL/BOOT_FAIL→error; CANCELLED/PREEMPTED/REVOKED→canceled.
 */
export function mapSlurmState(native: string): JobStateName {
  const word = native.trim().split(/\s+/)[0]?.replace(/\+$/, '').toUpperCase() ?? '';
  if (STATE_MAP[word]) return STATE_MAP[word]!;
  const prefix = Object.keys(STATE_MAP).find((k) => k.startsWith(word) && word.length >= 4);
  return prefix ? STATE_MAP[prefix]! : 'unknown';
}

/** Parse a sacct/scontrol exit code `N:S` (exit status : signal) or a plain number. */
function parseExitCode(s: string | undefined): number | undefined {
  if (!s) return undefined;
  const m = /^(\d+)(?::(\d+))?$/.exec(s.trim());
  if (!m) return undefined;
  const sig = Number(m[2] ?? 0);
  return sig ? 128 + sig : Number(m[1]);
}

// ------------------------------------------------------------------ entry helpers

function dataOf(entry: RegistryEntry): Partial<SlurmPlatformData> {
  return (entry.platform_data ?? {}) as Partial<SlurmPlatformData>;
}

/** SSH target of an entry: from platform_data, or (entries written by other tools) SLURM_USER/SLURM_HOSTNAME. */
function targetOf(entry: RegistryEntry, env: NodeJS.ProcessEnv): SshTarget {
  const d = dataOf(entry);
  const user = d.ssh_user ?? env.SLURM_USER;
  const host = d.ssh_host ?? env.SLURM_HOSTNAME;
  if (!user || !host)
    throw new PlatformUnavailableError(PLATFORM, `entry ${entry.job_id} does not say which login node it runs on`, {
      hint: 'Set SLURM_USER and SLURM_HOSTNAME to the login node the job was submitted from.',
    });
  const t: SshTarget = { user, host, port: Number(d.ssh_port ?? 22) };
  if (d.identity_file) t.identityFile = d.identity_file;
  if (d.known_hosts) t.knownHosts = d.known_hosts;
  return t;
}

function platformData(p: SlurmParams): SlurmPlatformData {
  const d: SlurmPlatformData = {
    ssh_user: p.target.user,
    ssh_host: p.target.host,
    ssh_port: p.target.port,
    job_dir: p.jobDir,
    container_runtime: p.runtime,
    partition: p.partition,
  };
  if (p.target.identityFile) d.identity_file = p.target.identityFile;
  if (p.target.knownHosts) d.known_hosts = p.target.knownHosts;
  if (p.account) d.account = p.account;
  return d;
}

/**
 * Partition names on the cluster (`sinfo -a -h -o %P`), the default partition first; [] when sinfo fails.
 */
async function listPartitions(s: SshSession): Promise<string[]> {
  const r = await s.exec(`sinfo -a -h -o '%P'`);
  if (r.code !== 0) return [];
  const raw = [...new Set(r.stdout.split(/\s+/).filter(Boolean))];
  const dflt = raw.filter((x) => x.endsWith('*')).map((x) => x.slice(0, -1));
  return [...new Set([...dflt, ...raw.map((x) => x.replace(/\*$/, ''))])];
}

async function withSession<T>(target: SshTarget, env: NodeJS.ProcessEnv, fn: (s: SshSession) => Promise<T>): Promise<T> {
  const s = await connectSsh(target, env);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

/** Run a remote command that must succeed; CommandFailedError (command shown, no secrets in it) otherwise. */
async function must(s: SshSession, command: string, opts: { stdin?: string; signal?: AbortSignal } = {}): Promise<string> {
  const r = await s.exec(command, opts);
  if (r.code !== 0)
    throw new CommandFailedError(['ssh', `${s.target.user}@${s.target.host}`, command], r.code ?? undefined, r.stderr.trim().split('\n').slice(-10).join('\n'));
  return r.stdout;
}

const SQUEUE_ERROR = 'squeue error';

/**
 * Ask the cluster about Slurm job `id`: squeue (`-t all` also shows jobs that ended within MinJobAge),
 * then sacct when accounting exists, then the `exit_status` file the job script writes.
 */
export async function queryJob(s: SshSession, id: string, jobDir: string | undefined): Promise<JobState> {
  const q = await s.exec(remote.squeue(id));
  if (q.code !== 0 && !/invalid job id/i.test(q.stderr))
    // e.g. "Unable to contact slurm controller": say so rather than guess that the job is gone.
    return { state: 'unknown', native: SQUEUE_ERROR, reason: `squeue failed: ${q.stderr.trim().split('\n').pop() ?? `exit ${q.code}`}` };
  const line = q.code === 0 ? q.stdout.trim().split('\n')[0]?.trim() : '';
  let exitFromFile: number | undefined;
  const readStatusFile = async () => {
    if (!jobDir) return undefined;
    const r = await s.exec(`cat ${remotePath(jobDir, JOB_FILES.status)} 2>/dev/null`);
    return r.code === 0 && /^\d+$/.test(r.stdout.trim()) ? Number(r.stdout.trim()) : undefined;
  };
  if (line) {
    const [native = '', node = '', reason = ''] = line.split('|');
    const st: JobState = { state: mapSlurmState(native), native };
    if (node && node !== '(null)') st.node = node;
    // The reason column keeps the last pending reason after a cancel; it only helps for pending and failed jobs.
    if (reason && reason !== 'None' && reason !== '(null)' && (st.state === 'pending' || st.state === 'error')) st.reason = reason;
    if (st.state === 'error' || st.state === 'complete' || st.state === 'canceled') {
      exitFromFile = await readStatusFile();
      if (exitFromFile !== undefined) st.exitCode = exitFromFile;
    }
    return st;
  }
  const a = await s.exec(remote.sacct(id));
  const acct = a.code === 0 ? a.stdout.trim().split('\n')[0]?.trim() : '';
  if (acct) {
    const [native = '', exit, node] = acct.split('|');
    const st: JobState = { state: mapSlurmState(native), native };
    const code = parseExitCode(exit);
    if (code !== undefined) st.exitCode = code;
    if (node && node !== 'None assigned') st.node = node;
    return st;
  }
  exitFromFile = await readStatusFile();
  if (exitFromFile !== undefined) {
    const state: JobStateName = exitFromFile === 0 ? 'complete' : exitFromFile === 143 || exitFromFile === 130 || exitFromFile === 129 ? 'canceled' : 'error';
    return { state, native: `ended (exit ${exitFromFile})`, exitCode: exitFromFile, reason: 'Slurm no longer lists the job; state from its exit_status file' };
  }
  return { state: 'unknown', native: 'not found', reason: `Slurm no longer knows job ${id}` };
}

/** LaunchFailedError for a job that ended before its service was reachable: exit state + last 20 log lines. */
async function jobEndedError(s: SshSession, slurmId: string, jobId: string, p: SlurmParams, st: JobState): Promise<LaunchFailedError> {
  const tail = await tailLog(s, p.jobDir, 20);
  const exit = st.exitCode !== undefined ? ` with exit code ${st.exitCode}` : '';
  return new LaunchFailedError(`Slurm job ${slurmId} (${jobId}) ended ${st.native ?? st.state}${exit} before the service was reachable`, st.native ?? st.state, tail, {
    hint: tail.length
      ? `The full job log is ${p.jobDir}/${JOB_FILES.log} on ${p.target.host}.`
      : `The job left no log: it ended before it ran (cancelled while pending, or refused by Slurm). Check 'scontrol show job ${slurmId}' or sacct on ${p.target.host}.`,
  });
}

/** Can the login node open a TCP connection to node:port (an ssh2 direct-tcpip channel, closed at once)? */
function probePort(s: SshSession, node: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    s.client.forwardOut('127.0.0.1', 0, node, port, (err, ch) => {
      if (err) return resolve(false);
      ch.on('error', () => undefined);
      ch.close();
      resolve(true);
    });
  });
}

async function tailLog(s: SshSession, jobDir: string | undefined, n: number): Promise<string[]> {
  if (!jobDir) return [];
  const r = await s.exec(`${remote.tail(jobDir, n)} 2>/dev/null`);
  return r.stdout.replace(/\n$/, '').split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
}

// ------------------------------------------------------------------ tunnel forwarder

/** The built forwarder script (dist/src/platforms/slurm/tunnel.js), also when this module runs from src/ under vitest. */
export function tunnelScript(): string {
  const here = fileURLToPath(new URL('./tunnel.js', import.meta.url));
  if (existsSync(here)) return here;
  return packageFile('dist/src/platforms/slurm/tunnel.js');
}

/** True when `pid` is alive and (where /proc exists) is the forwarder of `jobId`, so we never signal a recycled PID. */
export function isOurForwarder(pid: number | undefined, jobId: string): boolean {
  return isOwnProcess(pid, ['tunnel.js', jobId]);
}

/**
 * Start the detached forwarder `127.0.0.1:<port> → <node>:8080` via the login node and wait until it listens.
 * @returns its PID
 * @throws PlatformUnavailableError with the forwarder's log tail when it exits or does not listen within 30 s.
 */
async function startForwarder(a: { jobId: string; slurmJobId: string; target: SshTarget; node: string; port: number; env: NodeJS.ProcessEnv; logFile: string; onPid?: (pid: number) => Promise<void> }): Promise<number> {
  const args = [tunnelScript(), '--job-id', a.jobId, '--slurm-job-id', a.slurmJobId, '--user', a.target.user, '--host', a.target.host, '--port', String(a.target.port)];
  if (a.target.identityFile) args.push('--identity-file', a.target.identityFile);
  if (a.target.knownHosts) args.push('--known-hosts', a.target.knownHosts);
  args.push('--node', a.node, '--remote-port', String(SERVICE_PORT), '--listen-host', '127.0.0.1', '--listen-port', String(a.port));
  const pid = spawnDetached({ command: process.execPath, args, env: forwarderEnv(a.env), logFile: a.logFile });
  await a.onPid?.(pid);
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    if (await waitForPort('127.0.0.1', a.port, 300)) {
      if (isAlive(pid)) return pid;
    }
    if (!isAlive(pid)) break;
  }
  await killPid(pid);
  let tail = '';
  try {
    tail = readFileSync(a.logFile, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {
    /* no log */
  }
  throw new PlatformUnavailableError(PLATFORM, `the SSH tunnel 127.0.0.1:${a.port} → ${a.node}:${SERVICE_PORT} did not come up${tail ? `:\n${tail}` : ''}`, {
    hint: `The login node must allow TCP forwarding (AllowTcpForwarding) to ${a.node}:${SERVICE_PORT}. Forwarder log: ${a.logFile}`,
  });
}

/** Result of `restartTunnel`: the fields the caller stores on the registry entry. */
export interface TunnelInfo {
  forwarder_pid: number;
  host_port: number;
  host_url: string;
  slurm_node: string;
  /** false when the forwarder was alive and listening: nothing was changed. */
  restarted: boolean;
}

/**
 * `tao-infer tunnel <job_id>`: make sure the forwarder of a running slurm job is up; start a new one
 * (same local port, so host_url stays valid) when it is dead. The caller persists the returned
 * `forwarder_pid` (and `slurm_node`/`host_url`/`host_port`) on the entry.
 * @param ctx.allocatePort optional; used only when the entry has no host_port.
 * @throws PlatformUnavailableError when the job is not running, the port is taken by something else, or SSH fails.
 */
export async function restartTunnel(entry: RegistryEntry, ctx: EntryContext & { allocatePort?: PortAllocator }): Promise<TunnelInfo> {
  if (entry.platform !== PLATFORM) throw new PlatformUnavailableError(PLATFORM, `${entry.job_id} runs on ${entry.platform}, not slurm; only slurm services have a tunnel`);
  if (!entry.platform_job_id) throw new PlatformUnavailableError(PLATFORM, `entry ${entry.job_id} has no Slurm job id`, { hint: `Stop it with 'tao-infer stop ${entry.job_id}' and start again.` });
  const port = entry.host_port;
  if (isOurForwarder(entry.forwarder_pid, entry.job_id) && port && (await waitForPort('127.0.0.1', port, 2000)) && entry.slurm_node)
    return { forwarder_pid: entry.forwarder_pid!, host_port: port, host_url: `http://localhost:${port}`, slurm_node: entry.slurm_node, restarted: false };
  const target = targetOf(entry, ctx.env);
  const st = await withSession(target, ctx.env, (s) => queryJob(s, entry.platform_job_id!, dataOf(entry).job_dir));
  if (st.state !== 'running' || !st.node)
    throw new PlatformUnavailableError(PLATFORM, `Slurm job ${entry.platform_job_id} (${entry.job_id}) is ${st.native ?? st.state}, not running: there is nothing to tunnel to`, {
      hint: `See 'tao-infer logs ${entry.job_id}'; remove it with 'tao-infer stop ${entry.job_id}'.`,
    });
  if (isOurForwarder(entry.forwarder_pid, entry.job_id)) await killPid(entry.forwarder_pid);
  let hostPort = port;
  if (!hostPort) {
    if (!ctx.allocatePort) throw new PlatformUnavailableError(PLATFORM, `entry ${entry.job_id} has no host_port to listen on`);
    hostPort = await ctx.allocatePort({ holds: (e) => e.platform === PLATFORM, checkBound: true });
  } else if (await waitForPort('127.0.0.1', hostPort, 500)) {
    throw new PlatformUnavailableError(PLATFORM, `local port ${hostPort} of ${entry.job_id} is in use by another process`, {
      hint: `Free port ${hostPort} (e.g. find it with 'ss -ltnp | grep :${hostPort}') and run 'tao-infer tunnel ${entry.job_id}' again.`,
    });
  }
  const logFile = dataOf(entry).tunnel_log ?? forwarderLogFile('slurm', entry.job_id);
  const pid = await startForwarder({ jobId: entry.job_id, slurmJobId: entry.platform_job_id, target, node: st.node, port: hostPort, env: ctx.env, logFile });
  ctx.log(`tunnel ${entry.job_id}: 127.0.0.1:${hostPort} → ${st.node}:${SERVICE_PORT} (pid ${pid})`);
  return { forwarder_pid: pid, host_port: hostPort, host_url: `http://localhost:${hostPort}`, slurm_node: st.node, restarted: true };
}

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

function abortError(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new Error('aborted');
}

class SlurmAdapter implements PlatformAdapter {
  readonly name = PLATFORM;
  readonly reservesHostPort = false;
  readonly unsupported = {
    gpu_ids: 'Slurm chooses the GPUs of a job (--gres=gpu:<n>); device ids cannot be requested',
    bind_address: 'the local end of the Slurm SSH tunnel always listens on 127.0.0.1',
    port: 'the local tunnel port is allocated from 8080-8199 like local-docker host ports',
  };

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
    const secrets = spec.env.secretNames.length ? spec.env.secretNames.join(', ') : 'none';
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
          description: `start a detached forwarder: 127.0.0.1:<host_port from 8080-8199> → <node>:${SERVICE_PORT} through ${t.user}@${t.host}; host_url http://localhost:<host_port>`,
          command: formatArgv([process.execPath, 'tunnel.js', '--job-id', spec.job_id, '--node', '<node>', '--listen-port', '<host_port>']),
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
      await must(s, remote.writeSecrets(p), { stdin: renderSecretsFile(spec.env.secretNames, ctx.env) });
      await must(s, remote.writeScript(p), { stdin: script });
      const sub = await s.exec(remote.submit(p));
      if (sub.code !== 0) {
        await s.exec(remote.removeSecrets(p.jobDir));
        throw new CommandFailedError(['sbatch', '--parsable', `${p.jobDir}/${JOB_FILES.script}`], sub.code ?? undefined, sub.stderr.trim(), {
          hint: 'sbatch refused the job: check --partition/--account/--time/--num-gpus against sinfo and your associations.',
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
      await ctx.record({ slurm_node: node });

      // ---- wait until something listens on node:8080 (seen from the login node), watching the job meanwhile
      for (let i = 0; ; i++) {
        if (ctx.signal?.aborted) throw abortError(ctx.signal);
        // Job state first: a job that already died must not be mistaken for whatever else answers on that port.
        const st = await queryJob(s, slurmId, p.jobDir);
        if (st.state !== 'running' && st.native !== SQUEUE_ERROR) {
          throw await jobEndedError(s, slurmId, spec.job_id, p, st);
        }
        if (await probePort(s, node, SERVICE_PORT)) break;
        if (i === 5) ctx.log(`waiting for the service to listen on ${node}:${SERVICE_PORT}`);
        if (Date.now() >= deadline)
          throw new ReadinessTimeoutError(spec.job_id, Math.round((deadline - startedAt) / 1000), `Slurm job RUNNING on ${node}, nothing listening on ${node}:${SERVICE_PORT}`);
        await sleep(i < 30 ? 1000 : 3000, undefined, ctx.signal ? { signal: ctx.signal } : undefined).catch(() => undefined);
      }

      // ---- tunnel
      const hostPort = await ctx.allocatePort({ holds: (e) => e.platform === PLATFORM, checkBound: true });
      const logFile = forwarderLogFile('slurm', spec.job_id);
      data.tunnel_log = logFile;
      const pid = await startForwarder({
        jobId: spec.job_id,
        slurmJobId: slurmId,
        target: p.target,
        node,
        port: hostPort,
        env: ctx.env,
        logFile,
        onPid: (fp) => ctx.record({ forwarder_pid: fp, platform_data: { ...data } }),
      });
      ctx.log(`tunnel 127.0.0.1:${hostPort} → ${node}:${SERVICE_PORT} through ${p.target.host} (forwarder pid ${pid})`);
      return {
        host_url: `http://localhost:${hostPort}`,
        platform_job_id: slurmId,
        host_port: hostPort,
        slurm_node: node,
        forwarder_pid: pid,
        platform_data: { ...data },
      };
    } finally {
      s.close();
    }
  }

  async status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
    if (!entry.platform_job_id) return { state: 'unknown', reason: 'no Slurm job id recorded (the start was interrupted before sbatch answered)' };
    const st = await withSession(targetOf(entry, ctx.env), ctx.env, (s) => queryJob(s, entry.platform_job_id!, dataOf(entry).job_dir));
    if (st.state === 'running' && entry.forwarder_pid !== undefined && !isOurForwarder(entry.forwarder_pid, entry.job_id))
      st.reason = `${st.reason ? `${st.reason}; ` : ''}SSH tunnel is down: run 'tao-infer tunnel ${entry.job_id}'`;
    return st;
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

  async stop(entry: RegistryEntry, ctx: EntryContext): Promise<void> {
    const jobDir = dataOf(entry).job_dir;
    try {
      if (entry.platform_job_id || jobDir) {
        await withSession(targetOf(entry, ctx.env), ctx.env, async (s) => {
          const id = entry.platform_job_id;
          if (id) {
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
        });
      }
    } finally {
      if (isOurForwarder(entry.forwarder_pid, entry.job_id)) await killPid(entry.forwarder_pid);
      const tunnelLog = dataOf(entry).tunnel_log;
      if (tunnelLog && !isOurForwarder(entry.forwarder_pid, entry.job_id)) rmSync(tunnelLog, { force: true });
    }
  }

  /** `tao-infer tunnel <job_id>`: see `restartTunnel`. Resolves `{}` when the forwarder is alive and listening. */
  async restartForwarder(entry: RegistryEntry, ctx: EntryContext): Promise<Partial<RegistryEntry>> {
    const t = await restartTunnel(entry, ctx);
    if (!t.restarted) return {};
    return { forwarder_pid: t.forwarder_pid, host_port: t.host_port, host_url: t.host_url, slurm_node: t.slurm_node };
  }
}

/** Factory loaded lazily by `src/platforms/index.ts`. */
export function createAdapter(): PlatformAdapter {
  return new SlurmAdapter();
}
