/**
 * Slurm job script rendering and the remote commands the adapter runs (contract §8 slurm).
 *
 * The script comes from the template `platforms/slurm/job.sbatch.tmpl` with `{{NAME}}` placeholders;
 * every value placed in shell context is quoted with `shQuote`, every value placed on an `#SBATCH`
 * line is first validated against a strict pattern (sbatch does not parse shell quoting there).
 * Secret values never appear here: the script sources `secrets.env` from the job directory.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError } from '../../errors.js';
import { LABELS } from '../../labels.js';
import type { LaunchSpec } from '../../types.js';
import { shQuote, shQuoteAlways } from '../../util/shell.js';
import { CONTROL, ENV_NAME_RE, type SlurmParams } from './params.js';

export { resolveSlurmParams, resolveSshTarget, slurmTime, slurmTimeSeconds, type SlurmParams } from './params.js';

/** File names inside the job directory. */
export const JOB_FILES = { script: 'job.sbatch', log: 'job.log', secrets: 'secrets.env', status: 'exit_status', port: 'service_port' } as const;

/** Docker label naming the Slurm job a docker-runtime container belongs to (set from `$SLURM_JOB_ID` in the job). */
export const SLURM_JOB_LABEL = 'tao-infer.slurm_job_id';

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
