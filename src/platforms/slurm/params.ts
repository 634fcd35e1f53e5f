/**
 * Slurm settings of one job, validated (contract §8 slurm): the SSH target of the login node, the `#SBATCH`
 * values (every one checked against a strict pattern, since sbatch does not parse shell quoting there), the
 * host resources and the time limit. Split from ./script.ts, which renders the job script from them.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { InvalidInputError, MissingInputError } from '../../errors.js';
import { loadReferences } from '../../references.js';
import type { LaunchSpec } from '../../types.js';
import { CONTAINER_RUNTIMES, SLURM_DEFAULTS, type ContainerRuntime } from './options.js';
import type { SshTarget } from './ssh.js';

/** Validated slurm settings for one job. Paths are absolute on the local side; `jobDir` is a cluster path (may start with `~/`). */
export interface SlurmParams {
  target: SshTarget;
  partition: string;
  account?: string;
  time: string;
  /** This job's directory on the cluster: `<--job-dir>/<job_id>`. */
  jobDir: string;
  runtime: ContainerRuntime;
  mounts?: string;
  imageFile?: string;
  sbatchArgs: string[];
  /** `--mem` value (sbatch size syntax; `0` = whole node); undefined when --sbatch-arg sets --mem-per-cpu/--mem-per-gpu. */
  mem?: string;
  /** `--cpus-per-task`; undefined when --sbatch-arg sets --cpus-per-gpu. */
  cpusPerTask?: number;
  /** `--gpu-type`: the GRES type (`--gres=gpu:<type>:N`), e.g. h100; undefined = any GPU. */
  gpuType?: string;
}

// eslint-disable-next-line no-control-regex
export const CONTROL = /[\u0000-\u001f\u007f]/;
const USER_RE = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$/;
const HOST_RE = /^[A-Za-z0-9._:-]+$/;
const NAME_LIST_RE = /^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$/;
const NAME_RE = /^[A-Za-z0-9_.-]+$/;
const TIME_RE = /^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}|UNLIMITED|infinite)$/;
const SBATCH_ARG_RE = /^--[A-Za-z][A-Za-z0-9-]*(=[^\s'"\\]+)?$/;
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Options tao-infer writes itself; passing them through --sbatch-arg would contradict the job it tracks. */
const RESERVED_SBATCH = ['job-name', 'output', 'error', 'open-mode', 'partition', 'account', 'time', 'gres', 'gpus', 'parsable', 'wrap', 'chdir', 'array', 'nodes', 'ntasks', 'export', 'mem', 'cpus-per-task', 'comment'];
/** sbatch size syntax: a number of MB, or with a K/M/G/T suffix. */
const MEM_RE = /^\d+[KMGT]?$/i;

function str(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  const s = String(v).trim();
  return s === '' ? undefined : s;
}

function expandLocal(p: string): string {
  return resolve(p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p);
}

/**
 * The login node to SSH to, from `--slurm-user`/`SLURM_USER`, `--slurm-host`/`SLURM_HOSTNAME`, `--ssh-port`
 * (default 22), `--identity-file` and `--known-hosts` (a leading `~/` is this machine's home).
 * @throws MissingInputError for a missing user or host; InvalidInputError naming the flag for a bad value.
 */
export function resolveSshTarget(o: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): SshTarget {
  const user = str(o.slurmUser) ?? str(env.SLURM_USER);
  const host = str(o.slurmHost) ?? str(env.SLURM_HOSTNAME);
  if (!user) throw new MissingInputError('--slurm-user', 'Slurm login user (--slurm-user or SLURM_USER)');
  if (!host) throw new MissingInputError('--slurm-host', 'Slurm login node (--slurm-host or SLURM_HOSTNAME)');
  if (!USER_RE.test(user)) throw new InvalidInputError('--slurm-user', `'${user}' is not a valid user name`, { hint: 'Use the login name on the cluster (letters, digits, ".", "_", "-").' });
  const hostName = host.replace(/^\[(.*)\]$/, '$1');
  if (!HOST_RE.test(hostName)) throw new InvalidInputError('--slurm-host', `'${host}' is not a valid host name or address`, { hint: 'Pass the login node name or IP address, without user@ or port.' });
  const portRaw = o.sshPort ?? SLURM_DEFAULTS.sshPort;
  const port = typeof portRaw === 'number' ? portRaw : Number(String(portRaw).trim());
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidInputError('--ssh-port', `SSH port '${String(portRaw)}' is not an integer from 1 to 65535`);
  const target: SshTarget = { user, host: hostName, port };
  const identity = str(o.identityFile);
  if (identity) target.identityFile = expandLocal(identity);
  const known = str(o.knownHosts);
  if (known) target.knownHosts = expandLocal(known);
  return target;
}

/**
 * Read and validate the slurm options of a LaunchSpec (values from flags, or the env vars named in
 * `./options.ts`, already merged by the CLI; `env` is consulted again for direct library use).
 * @throws MissingInputError for a missing user/host/partition; InvalidInputError naming the flag for a bad value.
 */
export function resolveSlurmParams(spec: Pick<LaunchSpec, 'job_id' | 'options' | 'network_arch' | 'max_duration_s' | 'num_gpus'>, env: NodeJS.ProcessEnv = {}): SlurmParams {
  const o = spec.options;
  const target = resolveSshTarget(o, env);
  const partition = str(o.partition) ?? str(env.SLURM_PARTITION);
  const account = str(o.account) ?? str(env.SLURM_ACCOUNT);
  if (!partition) throw new MissingInputError('--partition', 'Slurm partition (--partition or SLURM_PARTITION)');
  if (!NAME_LIST_RE.test(partition)) throw new InvalidInputError('--partition', `'${partition}' is not a valid partition name`, { hint: "List partitions with 'sinfo -s' on the login node." });
  if (account !== undefined && !NAME_RE.test(account))
    throw new InvalidInputError('--account', `'${account}' is not a valid account name`, { hint: "List your accounts with 'sacctmgr show assoc user=$USER format=account'." });

  const given = str(o.time);
  let time = given ?? SLURM_DEFAULTS.time;
  if (spec.max_duration_s !== undefined) {
    // --max-duration is the Slurm time limit; an explicit --time that says otherwise is a contradiction.
    const fromDuration = slurmTime(spec.max_duration_s);
    if (given !== undefined && given !== SLURM_DEFAULTS.time && slurmTimeSeconds(given) !== Math.ceil(spec.max_duration_s / 60) * 60)
      throw new InvalidInputError('--max-duration', `--max-duration and --time ${given} disagree`, { hint: 'Give one of them (--max-duration sets the Slurm --time).' });
    time = fromDuration;
  }
  if (!TIME_RE.test(time)) throw new InvalidInputError('--time', `'${time}' is not a Slurm time limit`, { hint: 'Use MM, HH:MM:SS or D-HH:MM:SS, e.g. --time 04:00:00.' });

  const runtime = (str(o.containerRuntime) ?? SLURM_DEFAULTS.containerRuntime) as ContainerRuntime;
  if (!CONTAINER_RUNTIMES.includes(runtime))
    throw new InvalidInputError('--container-runtime', `unknown container runtime '${runtime}'`, { hint: `Use one of: ${CONTAINER_RUNTIMES.join(', ')}.` });

  const parent = (str(o.jobDir) ?? SLURM_DEFAULTS.jobDirParent).replace(/\/+$/, '') || '/';
  if (CONTROL.test(parent)) throw new InvalidInputError('--job-dir', '--job-dir contains a control character');
  if (!(parent.startsWith('/') || parent === '~' || parent.startsWith('~/')))
    throw new InvalidInputError('--job-dir', `--job-dir '${parent}' must be an absolute path or start with ~/`, { hint: 'Use a directory on a filesystem shared by the login and compute nodes, e.g. ~/.tao-infer/jobs or /lustre/<you>/tao-infer.' });
  // job_id becomes a path component and the Slurm job name.
  if (!/^[A-Za-z0-9_.-]+$/.test(spec.job_id)) throw new InvalidInputError('job_id', `job_id '${spec.job_id}' cannot be used as a Slurm job name`);
  const jobDir = `${parent === '/' ? '' : parent}/${spec.job_id}`;

  const mounts = str(o.containerMounts);
  if (mounts !== undefined) {
    if (CONTROL.test(mounts)) throw new InvalidInputError('--container-mounts', '--container-mounts contains a control character');
    if (runtime === 'none') throw new InvalidInputError('--container-mounts', '--container-mounts has no effect with --container-runtime none', { hint: 'Drop --container-mounts, or choose pyxis, apptainer or docker.' });
  }
  const imageFile = str(o.imageFile);
  if (imageFile !== undefined) {
    if (CONTROL.test(imageFile)) throw new InvalidInputError('--image-file', '--image-file contains a control character');
    if (runtime !== 'pyxis' && runtime !== 'apptainer')
      throw new InvalidInputError('--image-file', `--image-file applies to pyxis (.sqsh) and apptainer (.sif), not '${runtime}'`);
    if (!imageFile.startsWith('/')) throw new InvalidInputError('--image-file', `--image-file '${imageFile}' must be an absolute path on the cluster`);
  }

  const rawArgs = o.sbatchArgs === undefined ? [] : Array.isArray(o.sbatchArgs) ? o.sbatchArgs : [o.sbatchArgs];
  const sbatchArgs: string[] = [];
  for (const a of rawArgs.map((x) => String(x).trim()).filter(Boolean)) {
    if (!SBATCH_ARG_RE.test(a))
      throw new InvalidInputError('--sbatch-arg', `--sbatch-arg '${a}' is not of the form --option or --option=value (no spaces or quotes)`, { hint: 'Example: --sbatch-arg --qos=high --sbatch-arg --exclusive' });
    const name = a.slice(2).split('=')[0]!;
    if (RESERVED_SBATCH.includes(name))
      throw new InvalidInputError('--sbatch-arg', `--sbatch-arg ${a}: --${name} is set by tao-infer`, { hint: 'Use --partition, --account, --time, --num-gpus, --mem, --cpus-per-task or --job-dir instead.' });
    sbatchArgs.push(a);
  }

  const gpuType = str(o.gpuType);
  if (gpuType !== undefined) {
    // A GRES type is a name from the cluster's gres.conf (`Type=`); sbatch(1) --gres "name[[:type]:count]".
    if (!NAME_RE.test(gpuType) || gpuType.includes(':'))
      throw new InvalidInputError('--gpu-type', `'${gpuType}' is not a GPU type name`, { hint: "List the node GPU types with `sinfo -o '%G'` on the login node (e.g. gpu:h100:8 → --gpu-type h100)." });
    if (spec.num_gpus < 1) throw new InvalidInputError('--gpu-type', '--gpu-type needs --num-gpus 1 or more', { hint: 'Drop --gpu-type, or ask for GPUs with --num-gpus N.' });
  }

  const p: SlurmParams = { target, partition, time, jobDir, runtime, sbatchArgs, ...hostResources(spec, sbatchArgs) };
  if (gpuType) p.gpuType = gpuType;
  if (account) p.account = account;
  if (mounts) p.mounts = mounts;
  if (imageFile) p.imageFile = imageFile;
  return p;
}

/**
 * Memory and CPUs the job requests. Without them a cluster with `SelectTypeParameters=CR_*_Memory` gives the job
 * `DefMemPerCPU` × 1 CPU and a model load is killed (OUT_OF_MEMORY) — Slurm docs, slurm.conf(5) DefMemPerCPU and
 * sbatch(1) --mem ("--mem=0 requests all of the memory on each node"). Defaults: the arch's `resources` in
 * references/<arch>.config.json, else SLURM_DEFAULTS. A `--mem-per-cpu`/`--mem-per-gpu` (or `--cpus-per-gpu`) given
 * through --sbatch-arg replaces ours: sbatch refuses both at once.
 * @throws InvalidInputError naming --mem or --cpus-per-task
 */
function hostResources(spec: Pick<LaunchSpec, 'options' | 'network_arch'>, sbatchArgs: string[]): Pick<SlurmParams, 'mem' | 'cpusPerTask'> {
  const res = loadReferences().archConfig(spec.network_arch)?.resources;
  const mem = str(spec.options.mem) ?? res?.mem ?? SLURM_DEFAULTS.mem;
  if (!MEM_RE.test(mem)) throw new InvalidInputError('--mem', `--mem '${mem}' is not a size sbatch understands`, { hint: 'Use MB as a number or a K/M/G/T suffix, e.g. --mem 64G; --mem 0 asks for the whole node.' });
  const rawCpus = spec.options.cpusPerTask ?? res?.cpus_per_task ?? SLURM_DEFAULTS.cpusPerTask;
  const cpus = Number(rawCpus);
  if (!Number.isInteger(cpus) || cpus < 1) throw new InvalidInputError('--cpus-per-task', `--cpus-per-task must be a whole number ≥ 1, got '${String(rawCpus)}'`);
  const given = new Set(sbatchArgs.map((a) => a.slice(2).split('=')[0]!));
  const out: Pick<SlurmParams, 'mem' | 'cpusPerTask'> = {};
  if (!given.has('mem-per-cpu') && !given.has('mem-per-gpu')) out.mem = mem.toUpperCase();
  if (!given.has('cpus-per-gpu')) out.cpusPerTask = cpus;
  return out;
}

/** Seconds → a Slurm time limit `D-HH:MM:00`, rounded up to whole minutes (Slurm's finest unit). */
export function slurmTime(seconds: number): string {
  const min = Math.ceil(seconds / 60);
  const d = Math.floor(min / 1440);
  const h = Math.floor((min % 1440) / 60);
  const m = min % 60;
  return `${d}-${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:00`;
}

/**
 * A Slurm time limit (sbatch(1) `--time`: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`) in seconds;
 * undefined for `UNLIMITED`/`infinite` or anything else.
 */
export function slurmTimeSeconds(time: string): number | undefined {
  const t = time.trim();
  let m = /^(\d+)-(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t);
  if (m) return Number(m[1]) * 86400 + Number(m[2]) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
  m = /^(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t);
  if (!m) return undefined;
  if (m[3] !== undefined) return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  return Number(m[1]) * 60 + Number(m[2] ?? 0);
}
