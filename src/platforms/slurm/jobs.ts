/**
 * Slurm jobs as seen over SSH (contract §8 slurm): state mapping, `squeue`/`sacct`/exit_status queries,
 * the registry entry's platform_data, and the small SSH helpers the adapter and the tunnel share.
 */
import { CommandFailedError, LaunchFailedError, PlatformUnavailableError } from '../../errors.js';
import type { JobState, JobStateName, RegistryEntry } from '../../types.js';
import { JOB_FILES, remote, remotePath, type SlurmParams } from './script.js';
import { connectSsh, type SshSession, type SshTarget } from './ssh.js';

export const PLATFORM = 'slurm';
/** Port the service listens on in the node (contract §3). */
export const SERVICE_PORT = 8080;

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
  /** Address the tunnel connects to: the node's NodeAddr (`scontrol show node`), not its NodeName. */
  node_addr?: string;
  /** Port of the service on the node: 8080, or the free port Docker picked (docker runtime). */
  service_port?: number;
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
export function parseExitCode(s: string | undefined): number | undefined {
  if (!s) return undefined;
  const m = /^(\d+)(?::(\d+))?$/.exec(s.trim());
  if (!m) return undefined;
  const sig = Number(m[2] ?? 0);
  return sig ? 128 + sig : Number(m[1]);
}

// ------------------------------------------------------------------ entry helpers

export function dataOf(entry: RegistryEntry): Partial<SlurmPlatformData> {
  return (entry.platform_data ?? {}) as Partial<SlurmPlatformData>;
}

/** SSH target of an entry: from platform_data, or (entries written by other tools) SLURM_USER/SLURM_HOSTNAME. */
export function targetOf(entry: RegistryEntry, env: NodeJS.ProcessEnv): SshTarget {
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

export function platformData(p: SlurmParams): SlurmPlatformData {
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
export async function listPartitions(s: SshSession): Promise<string[]> {
  const r = await s.exec(`sinfo -a -h -o '%P'`);
  if (r.code !== 0) return [];
  const raw = [...new Set(r.stdout.split(/\s+/).filter(Boolean))];
  const dflt = raw.filter((x) => x.endsWith('*')).map((x) => x.slice(0, -1));
  return [...new Set([...dflt, ...raw.map((x) => x.replace(/\*$/, ''))])];
}

export async function withSession<T>(target: SshTarget, env: NodeJS.ProcessEnv, fn: (s: SshSession) => Promise<T>): Promise<T> {
  const s = await connectSsh(target, env);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

/** Run a remote command that must succeed; CommandFailedError (command shown, no secrets in it) otherwise. */
export async function must(s: SshSession, command: string, opts: { stdin?: string; signal?: AbortSignal } = {}): Promise<string> {
  const r = await s.exec(command, opts);
  if (r.code !== 0)
    throw new CommandFailedError(['ssh', `${s.target.user}@${s.target.host}`, command], r.code ?? undefined, r.stderr.trim().split('\n').slice(-10).join('\n'));
  return r.stdout;
}

export const SQUEUE_ERROR = 'squeue error';

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
  return { state: 'gone', native: 'not found', reason: `Slurm no longer knows job ${id}` };
}

/** LaunchFailedError for a job that ended before its service was reachable: exit state + last 20 log lines. */
export async function jobEndedError(s: SshSession, slurmId: string, jobId: string, p: SlurmParams, st: JobState): Promise<LaunchFailedError> {
  const tail = await tailLog(s, p.jobDir, 20);
  const exit = st.exitCode !== undefined ? ` with exit code ${st.exitCode}` : '';
  return new LaunchFailedError(`Slurm job ${slurmId} (${jobId}) ended ${st.native ?? st.state}${exit} before the service was reachable`, st.native ?? st.state, tail, {
    hint: tail.length
      ? `The full job log is ${p.jobDir}/${JOB_FILES.log} on ${p.target.host}.`
      : `The job left no log: it ended before it ran (cancelled while pending, or refused by Slurm). Check 'scontrol show job ${slurmId}' or sacct on ${p.target.host}.`,
  });
}

/**
 * Where the login node reaches Slurm node `node`: its `NodeAddr` from `scontrol show node -o <node>`. A NodeName is
 * only Slurm's name for the node and need not resolve (slurm.conf(5): "NodeAddr: Name that a node should be referred
 * to in establishing a communications path ... By default, the NodeAddr will be identical in value to NodeHostname",
 * which defaults to NodeName). Falls back to `node` itself when scontrol is unavailable or names no address.
 */
export async function nodeAddress(s: SshSession, node: string): Promise<string> {
  const r = await s.exec(remote.nodeAddr(node));
  const addr = r.code === 0 ? /(?:^|\s)NodeAddr=(\S+)/.exec(r.stdout)?.[1] : undefined;
  return addr && addr !== '(null)' ? addr : node;
}

/**
 * Port of the service on the node: 8080 for the runtimes that use the host network (contract §3); for docker, the
 * free node port Docker picked, which the job script writes to `service_port` (undefined until it exists).
 */
export async function servicePort(s: SshSession, p: Pick<SlurmParams, 'runtime' | 'jobDir'>): Promise<number | undefined> {
  if (p.runtime !== 'docker') return SERVICE_PORT;
  const r = await s.exec(remote.servicePort(p.jobDir));
  const port = Number(r.stdout.trim());
  return r.code === 0 && Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
}

/** Can the login node open a TCP connection to node:port (an ssh2 direct-tcpip channel, closed at once)? */
export function probePort(s: SshSession, node: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    s.client.forwardOut('127.0.0.1', 0, node, port, (err, ch) => {
      if (err) return resolve(false);
      ch.on('error', () => undefined);
      ch.close();
      resolve(true);
    });
  });
}

export async function tailLog(s: SshSession, jobDir: string | undefined, n: number): Promise<string[]> {
  if (!jobDir) return [];
  const r = await s.exec(`${remote.tail(jobDir, n)} 2>/dev/null`);
  return r.stdout.replace(/\n$/, '').split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
}
