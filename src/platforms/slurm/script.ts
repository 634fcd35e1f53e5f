/**
 * Slurm job script rendering and the remote commands the adapter runs (contract §8 slurm).
 *
 * The script comes from the template `platforms/slurm/job.sbatch.tmpl` with `{{NAME}}` placeholders;
 * every value placed in shell context is quoted with `shQuote`, every value placed on an `#SBATCH`
 * line is first validated against a strict pattern (sbatch does not parse shell quoting there).
 * Secret values never appear here: the script sources `secrets.env` from the job directory.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError, MissingInputError } from '../../errors.js';
import { loadReferences } from '../../references.js';
import { LABELS } from '../../labels.js';
import type { LaunchSpec } from '../../types.js';
import { shQuote, shQuoteAlways } from '../../util/shell.js';
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

/** File names inside the job directory. */
export const JOB_FILES = { script: 'job.sbatch', log: 'job.log', secrets: 'secrets.env', status: 'exit_status', port: 'service_port' } as const;

/** Docker label naming the Slurm job a docker-runtime container belongs to (set from `$SLURM_JOB_ID` in the job). */
export const SLURM_JOB_LABEL = 'tao-infer.slurm_job_id';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const USER_RE = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$/;
const HOST_RE = /^[A-Za-z0-9._:-]+$/;
const NAME_LIST_RE = /^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$/;
const NAME_RE = /^[A-Za-z0-9_.-]+$/;
const TIME_RE = /^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}|UNLIMITED|infinite)$/;
const SBATCH_ARG_RE = /^--[A-Za-z][A-Za-z0-9-]*(=[^\s'"\\]+)?$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Options tao-infer writes itself; passing them through --sbatch-arg would contradict the job it tracks. */
const RESERVED_SBATCH = ['job-name', 'output', 'error', 'open-mode', 'partition', 'account', 'time', 'gres', 'gpus', 'parsable', 'wrap', 'chdir', 'array', 'nodes', 'ntasks', 'export', 'mem', 'cpus-per-task', 'comment'];
/** sbatch size syntax: a number of MB, or with a K/M/G/T suffix. */
const MEM_RE = /^\d+[KMGT]?$/i;

/** Prefix of the `--comment` marker that `discover` finds tao-infer's jobs by. */
export const COMMENT_PREFIX = 'tao-infer:';

/**
 * The `--comment` marker of a job: `tao-infer:<job_id>:<network_arch>:<runtime>:<model_path as base64url>`
 * (no spaces or quotes, so it is safe on an `#SBATCH` line; shown by `squeue -o %k`).
 */
export function jobComment(spec: Pick<LaunchSpec, 'job_id' | 'network_arch' | 'labels'>, runtime: string, modelPath = spec.labels[LABELS.modelPath] ?? ''): string {
  return `${COMMENT_PREFIX}${spec.job_id}:${spec.network_arch.replace(/[^A-Za-z0-9._-]/g, '')}:${runtime}:${Buffer.from(modelPath, 'utf8').toString('base64url')}`;
}

/** Parse a `jobComment` marker; undefined for any other comment. */
export function parseJobComment(comment: string): { job_id: string; network_arch: string; runtime: string; model_path?: string } | undefined {
  const m = /^tao-infer:([A-Za-z0-9-]+):([A-Za-z0-9._-]+):([a-z]+):([A-Za-z0-9_-]*)$/.exec(comment.trim());
  if (!m) return undefined;
  const model_path = Buffer.from(m[4]!, 'base64url').toString('utf8');
  return { job_id: m[1]!, network_arch: m[2]!, runtime: m[3]!, ...(model_path ? { model_path } : {}) };
}

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

/** A cluster path as a shell word: `~/x` → `"$HOME"/x` (tilde does not expand inside quotes), others quoted. */
export function remotePath(p: string, file?: string): string {
  const full = file ? `${p.replace(/\/+$/, '')}/${file}` : p;
  if (full === '~') return '"$HOME"';
  if (full.startsWith('~/')) return `"$HOME"/${shQuote(full.slice(2))}`;
  return shQuote(full);
}

/**
 * Docker reference → enroot URI for pyxis `--container-image` (`[REGISTRY#]IMAGE[:TAG]`):
 * a first path component with a `.` or `:` or equal to `localhost` is a registry and is followed by `#`.
 * Paths (`/x.sqsh`) and references already holding `#` pass through.
 */
export function enrootImage(image: string): string {
  if (image.startsWith('/') || image.startsWith('./') || image.includes('#')) return image;
  const slash = image.indexOf('/');
  if (slash < 0) return image;
  const first = image.slice(0, slash);
  if (first.includes('.') || first.includes(':') || first === 'localhost') return `${first}#${image.slice(slash + 1)}`;
  return image;
}

/** Locate a file of the installed package (`platforms/slurm/<name>`), from src/ (tests) or dist/src/ (built). */
export function packageFile(rel: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 7; i++) {
    const p = join(dir, rel);
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new InvalidInputError('slurm', `${rel} not found above ${fileURLToPath(import.meta.url)}`, { hint: 'Reinstall tao-infer: its platforms/ folder is missing.' });
}

/** Fill `{{NAME}}` placeholders. A line holding only a placeholder takes the value's lines (indented alike) or disappears when empty. */
export function fillTemplate(template: string, values: Record<string, string>): string {
  const out: string[] = [];
  for (const line of template.split('\n')) {
    const whole = /^(\s*)\{\{([A-Z_]+)\}\}\s*$/.exec(line);
    if (whole) {
      const v = values[whole[2]!];
      if (v === undefined) throw new Error(`template placeholder {{${whole[2]}}} has no value`);
      if (v !== '') for (const l of v.split('\n')) out.push(whole[1]! + l);
      continue;
    }
    out.push(
      line.replace(/\{\{([A-Z_]+)\}\}/g, (_, k: string) => {
        const v = values[k];
        if (v === undefined) throw new Error(`template placeholder {{${k}}} has no value`);
        return v;
      }),
    );
  }
  return out.join('\n');
}

/** The `#SBATCH` lines beyond the fixed ones (values validated by resolveSlurmParams). */
function sbatchLines(spec: LaunchSpec, p: SlurmParams): string[] {
  const l = [`#SBATCH --partition=${p.partition}`];
  if (p.account) l.push(`#SBATCH --account=${p.account}`);
  l.push(`#SBATCH --time=${p.time}`);
  l.push(`#SBATCH --comment=${jobComment(spec, p.runtime)}`);
  // sbatch(1) --gres=<name>[[:<type>]:<count>]: an untyped request takes GPUs of any type.
  if (spec.num_gpus > 0) l.push(`#SBATCH --gres=gpu:${p.gpuType ? `${p.gpuType}:` : ''}${spec.num_gpus}`);
  if (p.cpusPerTask !== undefined) l.push(`#SBATCH --cpus-per-task=${p.cpusPerTask}`);
  if (p.mem !== undefined) l.push(`#SBATCH --mem=${p.mem}`);
  for (const a of p.sbatchArgs) l.push(`#SBATCH ${a}`);
  return l;
}

/** argv-like lines joined with ` \` continuations (each word already shell-safe). */
function continued(words: string[][]): string {
  return words.map((w, i) => (i === 0 ? '' : '  ') + w.join(' ')).join(' \\\n');
}

/**
 * Shell command removing the docker-runtime containers of Slurm job `idWord` (a shell word: a quoted id or
 * "$SLURM_JOB_ID") by their `tao-infer.slurm_job_id` label; a no-op where docker is absent. Used by the job's EXIT
 * trap, by `stop` over SSH, and given in the README as the line for a site epilog (slurm.conf(5) Epilog runs as root
 * on the node after every job, with SLURM_JOB_ID set, even when the batch script was SIGKILLed).
 */
export function removeContainersCommand(idWord: string): string {
  return `command -v docker >/dev/null 2>&1 && docker ps -aq --filter label=${SLURM_JOB_LABEL}=${idWord} | xargs -r docker rm -f >/dev/null 2>&1 || true`;
}

/** Whether the apptainer job pulls `docker://nvcr.io/...`, so NGC_KEY (when set) is written to secrets.env for the pull. */
export function pullsFromNgc(spec: Pick<LaunchSpec, 'image'>, p: Pick<SlurmParams, 'runtime' | 'imageFile'>): boolean {
  return p.runtime === 'apptainer' && !p.imageFile && /^nvcr\.io\//.test(spec.image);
}

/**
 * Names whose values go to `secrets.env`: the service's secrets, plus NGC_KEY when set and the apptainer job pulls
 * from nvcr.io (the job script turns it into the registry password and removes it from the service's environment).
 */
export function secretsFileNames(spec: Pick<LaunchSpec, 'image' | 'env'>, p: Pick<SlurmParams, 'runtime' | 'imageFile'>, env: NodeJS.ProcessEnv): string[] {
  const names = [...spec.env.secretNames];
  if (pullsFromNgc(spec, p) && env.NGC_KEY && !names.includes('NGC_KEY')) names.push('NGC_KEY');
  return names;
}

interface RuntimeLines {
  /** Lines before the service starts (after secrets.env is sourced). */
  prepare: string;
  run: string;
  /** Lines right after the service was started in the background (`$child` is its PID). */
  afterStart: string;
  /** Lines of the EXIT trap. */
  cleanup: string;
}

/** The command that runs the service on the node, per container runtime. */
function runCommand(spec: LaunchSpec, p: SlurmParams): RuntimeLines {
  const inner = ['/bin/sh', '-c', shQuoteAlways(spec.inner_command)];
  const gpu = spec.num_gpus > 0;
  const none = { prepare: '', afterStart: '', cleanup: '' };
  switch (p.runtime) {
    case 'none':
      return { ...none, run: inner.join(' ') };
    case 'pyxis': {
      const first = ['srun', '--ntasks=1', `--container-image=${shQuote(p.imageFile ?? enrootImage(spec.image))}`];
      const lines = [first];
      if (p.mounts) lines.push([`--container-mounts=${shQuote(p.mounts)}`]);
      lines.push(inner);
      return { ...none, run: continued(lines) };
    }
    case 'apptainer': {
      // Apptainer, or Singularity/SingularityCE where only that is installed (same `exec --nv --bind` flags).
      const prepare = [
        '# apptainer, or singularity where only that is installed (both take the same exec flags)',
        'CT=$(command -v apptainer || command -v singularity) || { echo "tao-infer: neither apptainer nor singularity is on the PATH of node $(hostname)" >&2; exit 127; }',
      ];
      if (pullsFromNgc(spec, p)) {
        // Registry login for the docker:// pull, from the environment (never argv): Apptainer docs "Docker and OCI /
        // Authentication via environment variables" (APPTAINER_DOCKER_USERNAME/_PASSWORD; SingularityCE reads
        // SINGULARITY_DOCKER_*); NGC docs: user '$oauthtoken', password the NGC API key.
        prepare.push(
          '# nvcr.io pull credentials: NGC_KEY from secrets.env (user $oauthtoken), passed in the environment only',
          'if [ -n "${NGC_KEY:-}" ]; then',
          "  export APPTAINER_DOCKER_USERNAME='$oauthtoken' APPTAINER_DOCKER_PASSWORD=\"$NGC_KEY\"",
          "  export SINGULARITY_DOCKER_USERNAME='$oauthtoken' SINGULARITY_DOCKER_PASSWORD=\"$NGC_KEY\"",
          'fi',
        );
        if (!spec.env.secretNames.includes('NGC_KEY')) prepare.push('unset NGC_KEY');
      }
      const first = ['"$CT"', 'exec'];
      if (gpu) first.push('--nv');
      const lines = [first];
      if (p.mounts) lines.push(['--bind', shQuote(p.mounts)]);
      lines.push([shQuote(p.imageFile ?? `docker://${spec.image}`)]);
      lines.push(inner);
      return { ...none, prepare: prepare.join('\n'), run: continued(lines) };
    }
    case 'docker': {
      const name = shQuote(spec.job_id);
      // `-p <container_port>` publishes to a free port of the node that Docker picks (docker run reference,
      // --publish: "if you omit the host port, Docker picks a random one"), so services can share a node.
      const lines: string[][] = [['docker', 'run', '--rm', '--name', name, '-p', String(spec.container_port)]];
      if (spec.shm_size) lines.push(['--shm-size', shQuote(spec.shm_size)]);
      if (gpu) lines.push(['--gpus', '"\\"device=${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES}}\\""']);
      // The container is a child of the Docker daemon, outside the job's processes: a SIGKILLed batch script
      // leaves it running. The label lets the EXIT trap, `stop` and a site epilog find it by Slurm job id.
      lines.push(['--label', `${SLURM_JOB_LABEL}="$SLURM_JOB_ID"`]);
      for (const [k, v] of Object.entries(spec.labels).sort(([a], [b]) => a.localeCompare(b))) lines.push(['--label', shQuote(`${k}=${v}`)]);
      const names = [...spec.env.secretNames, ...Object.keys(spec.env.plain)].sort();
      for (const n of names) lines.push(['-e', n]);
      for (const m of (p.mounts ?? '').split(',').filter(Boolean)) lines.push(['-v', shQuote(m)]);
      lines.push([shQuote(spec.image), ...inner]);
      const afterStart = [
        `# the node port Docker picked, for tao-infer to tunnel to (read back from ${JOB_FILES.port})`,
        'while kill -0 "$child" 2>/dev/null; do',
        `  port=$(docker port ${name} ${spec.container_port}/tcp 2>/dev/null | sed -n '1s/.*://p')`,
        '  if [ -n "$port" ]; then printf \'%s\\n\' "$port" > "$PORT_FILE"; break; fi',
        '  sleep 1',
        'done',
      ].join('\n');
      return { prepare: '', run: continued(lines), afterStart, cleanup: removeContainersCommand('"$SLURM_JOB_ID"') };
    }
  }
}

/**
 * Render the job script for `spec` (no secret values: secrets come from `secrets.env` at run time).
 * Non-secret `spec.env.plain` values are exported in the script.
 * @throws InvalidInputError for an env var name that is not a shell identifier.
 */
export function renderJobScript(spec: LaunchSpec, p: SlurmParams, template = readFileSync(packageFile('platforms/slurm/job.sbatch.tmpl'), 'utf8')): string {
  for (const n of [...spec.env.secretNames, ...Object.keys(spec.env.plain)])
    if (!ENV_NAME_RE.test(n)) throw new InvalidInputError('--env', `'${n}' is not a valid environment variable name`);
  const plain = Object.keys(spec.env.plain)
    .sort()
    .map((k) => `export ${k}=${shQuote(spec.env.plain[k]!)}`)
    .join('\n');
  const { prepare, run, afterStart, cleanup } = runCommand(spec, p);
  return fillTemplate(template, {
    JOB_ID: spec.job_id,
    NETWORK_ARCH: spec.network_arch.replace(CONTROL, ''),
    RUNTIME: p.runtime,
    SBATCH_LINES: sbatchLines(spec, p).join('\n'),
    JOB_DIR: remotePath(p.jobDir),
    SCRIPT_FILE: JOB_FILES.script,
    SECRETS_FILE: JOB_FILES.secrets,
    STATUS_FILE: JOB_FILES.status,
    PORT_FILE: JOB_FILES.port,
    LOG_FILE: JOB_FILES.log,
    SECRET_NAMES: spec.env.secretNames.length ? [...spec.env.secretNames].sort().join(' ') : 'none',
    PLAIN_ENV: plain,
    CLEANUP: cleanup,
    PREPARE: prepare,
    RUN: run,
    AFTER_START: afterStart,
  });
}

/** Content of `secrets.env`: `NAME='value'` lines, read by the job with `set -a; . file`. Travels on SSH stdin only. */
export function renderSecretsFile(names: string[], env: NodeJS.ProcessEnv): string {
  return names
    .filter((n) => ENV_NAME_RE.test(n) && env[n] !== undefined)
    .map((n) => `${n}=${shQuoteAlways(env[n]!)}\n`)
    .join('');
}

/** The remote command lines (POSIX sh, no secrets) — shared by launch and `--dry-run` so both show the same thing. */
export const remote = {
  prepareDir: (p: SlurmParams) => `umask 077 && mkdir -p ${remotePath(p.jobDir)}`,
  writeSecrets: (p: SlurmParams) => `umask 077 && cat > ${remotePath(p.jobDir, JOB_FILES.secrets)} && chmod 600 ${remotePath(p.jobDir, JOB_FILES.secrets)}`,
  writeScript: (p: SlurmParams) => `umask 077 && cat > ${remotePath(p.jobDir, JOB_FILES.script)}`,
  submit: (p: SlurmParams) => `cd ${remotePath(p.jobDir)} && sbatch --parsable ${JOB_FILES.script}`,
  squeue: (id: string) => `squeue -j ${shQuote(id)} -h -t all -o '%T|%N|%r'`,
  sacct: (id: string) => `sacct -j ${shQuote(id)} -X -n -P -o State,ExitCode,NodeList`,
  cancel: (id: string) => `scancel ${shQuote(id)}`,
  /** Jobs of the SSH user (recently ended ones too): id|state|node|comment|work dir|partition|account|submit time. */
  listMine: () => `squeue -h -t all -u "$(id -un)" -o '%i|%T|%N|%k|%Z|%P|%a|%V'`,
  removeSecrets: (jobDir: string) => `rm -f ${remotePath(jobDir, JOB_FILES.secrets)}`,
  servicePort: (jobDir: string) => `cat ${remotePath(jobDir, JOB_FILES.port)} 2>/dev/null`,
  removeContainers: (id: string) => removeContainersCommand(shQuote(id)),
  nodeAddr: (node: string) => `scontrol show node -o ${shQuote(node)}`,
  tail: (jobDir: string, n?: number) => `tail -n ${n === undefined ? '+1' : String(Math.max(0, Math.floor(n)))} ${remotePath(jobDir, JOB_FILES.log)}`,
};
