/**
 * Pure helpers for running shell scripts on a Brev instance through `brev exec <instance> "<command>"`
 * (contract §8 brev) and for the ssh commands tao-infer runs against Brev's managed host aliases.
 *
 * Two facts of the real brev CLI (github.com/brevdev/brev-cli, pkg/cmd/exec/exec.go) shape this module:
 *  - `brev exec` does not pass stdin to the command (it reads more instance NAMES from a piped stdin), so
 *    secrets cannot travel through it. They go through `ssh <instance>` stdin instead (see `secretUploadCommand`).
 *  - a command that exits non-zero looks like a failed SSH connection to brev, which then waits for the
 *    instance and runs the command a second time; when stdout is piped it prints the instance name after the
 *    output. So every script is wrapped to always exit 0 and to print its real exit code on a marker line
 *    (`wrapRemote`), and `parseRemote` reads the output up to that marker.
 */
import { InvalidInputError } from '../../errors.js';
import type { LaunchSpec } from '../../types.js';
import { formatArgv, shQuote, shQuoteAlways } from '../../util/shell.js';
import { dockerRunArgs } from '../docker-cli.js';

/** Marker line printed after every remote script: `__tao_infer_rc=<exit code>`. */
export const RC_MARK = '__tao_infer_rc=';

/** Directory (on the instance, under the login user's home) holding per-job secret env files, mode 700. */
export const REMOTE_DIR = '$HOME/.tao-infer';

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Check a name that ends up in a command line (instance, job_id, docker network).
 * @throws InvalidInputError naming `field`
 */
export function checkName(field: string, value: unknown): string {
  if (typeof value !== 'string' || !SAFE_NAME.test(value))
    throw new InvalidInputError(field, `${field} must be a name made of letters, digits, '.', '_' or '-' (got ${JSON.stringify(value)})`);
  return value;
}

/**
 * The one command string given to `brev exec`: runs `script` (POSIX sh syntax) in a subshell of the instance's
 * login shell, so `exit` ends only the script, then prints RC_MARK + its exit code and exits 0.
 */
export function wrapRemote(script: string): string {
  return `(\n${script}\n); echo "${RC_MARK}$?"`;
}

export interface RemoteResult {
  /** Exit code of the wrapped script. */
  rc: number;
  /** The script's stdout (without the marker and whatever brev printed after it, e.g. the instance name). */
  out: string;
}

/** Find the marker in the stdout of `brev exec`; undefined when the script never ran to the end (brev/ssh failure). */
export function parseRemote(stdout: string): RemoteResult | undefined {
  const re = new RegExp(`${RC_MARK}(\\d+)\\r?\\n?`, 'g');
  let m: RegExpExecArray | null;
  let last: RegExpExecArray | undefined;
  while ((m = re.exec(stdout))) last = m;
  if (!last) return undefined;
  return { rc: Number(last[1]), out: stdout.slice(0, last.index) };
}

/** Shell expression (double-quoted) of the secret env file of a job on the instance. */
export function remoteEnvFile(job_id: string): string {
  return `"${REMOTE_DIR}/${checkName('job_id', job_id)}.env"`;
}

/**
 * Remote command for `ssh <instance> <cmd>` that stores stdin into the job's env file, created mode 600
 * (umask 077) in a mode-700 directory. The command line holds no secret: the values arrive on stdin.
 */
export function secretUploadCommand(job_id: string): string {
  return `umask 077 && mkdir -p "${REMOTE_DIR}" && cat > ${remoteEnvFile(job_id)}`;
}

/**
 * Content of the env file: `NAME='value'` lines read by `set -a; . file` on the instance, so the values
 * reach the docker client's environment and `docker run -e NAME` passes them on (same as local-docker).
 * @throws InvalidInputError when a listed secret is not set in `env`
 */
export function secretEnvFile(names: string[], env: NodeJS.ProcessEnv): string {
  return names
    .map((n) => {
      const v = env[n];
      if (v === undefined) throw new InvalidInputError(n, `secret ${n} is listed but not set in the environment`);
      return `${checkEnvName(n)}=${shQuoteAlways(v)}\n`;
    })
    .join('');
}

function checkEnvName(n: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n)) throw new InvalidInputError('--env', `'${n}' is not a valid environment variable name`);
  return n;
}

/**
 * The launch script run on the instance: ensure the docker network, load the secret env file (then delete it),
 * export the plain env values, and run exactly local-docker's `docker run` argv (`dockerRunArgs`).
 * Holds secret NAMES only. `spec.host_port` must be set.
 */
export function launchScript(spec: LaunchSpec, network: string): string {
  const net = checkName('network', network);
  const lines: string[] = [];
  lines.push(`docker network inspect ${net} >/dev/null 2>&1 || docker network create ${net} >/dev/null 2>&1 || docker network inspect ${net} >/dev/null || exit 1`);
  if (spec.env.secretNames.length) {
    const f = remoteEnvFile(spec.job_id);
    lines.push(`if [ ! -f ${f} ]; then echo "tao-infer: the secret env file ${REMOTE_DIR}/${spec.job_id}.env is missing on this instance" >&2; exit 1; fi`);
    lines.push(`set -a; . ${f}; set +a; rm -f ${f}`);
  }
  for (const [k, v] of Object.entries(spec.env.plain)) lines.push(`export ${checkEnvName(k)}=${shQuote(v)}`);
  lines.push(formatArgv(['docker', ...dockerRunArgs(spec, { network: net })]));
  return lines.join('\n');
}

/** Script for status: the container's State as JSON (`docker inspect`). */
export function inspectScript(job_id: string): string {
  return `docker inspect --format '{{json .State}}' ${checkName('job_id', job_id)}`;
}

/** Script for logs: `docker logs [--tail N] [-f] <job_id> 2>&1`. */
export function logsScript(job_id: string, opts: { tail?: number; follow?: boolean }): string {
  const args = ['docker', 'logs'];
  if (opts.tail !== undefined) args.push('--tail', String(Math.max(0, Math.floor(opts.tail))));
  if (opts.follow) args.push('-f');
  args.push(checkName('job_id', job_id));
  return `${formatArgv(args)} 2>&1`;
}

/** Script for stop: remove the container (absent is fine) and any leftover secret env file. */
export function stopScript(job_id: string): string {
  const id = checkName('job_id', job_id);
  return [
    `rm -f ${remoteEnvFile(id)}`,
    `out=$(docker rm -f ${id} 2>&1); rc=$?`,
    `if [ $rc -ne 0 ]; then case "$out" in *"No such container"*) exit 0;; esac; echo "$out" >&2; exit $rc; fi`,
  ].join('\n');
}

/**
 * ssh argv prefix for Brev's host aliases: optional `-F <config>`, batch mode (never prompts), no multiplexing.
 * brev's ssh config sets `ControlMaster auto`, `ControlPath ~/.ssh/brev-control-%C`, `ControlPersist 10m`
 * (brev-cli pkg/ssh/sshconfigurer.go): through a master, a `-L` forward is owned by the master process, so ending
 * the recorded PID would not free the port, and a secret upload would leave a master running for 10 min.
 */
export function sshBase(sshConfig: string | undefined): string[] {
  return ['ssh', ...(sshConfig ? ['-F', sshConfig] : []), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', '-o', 'ControlMaster=no', '-o', 'ControlPath=none'];
}

/** argv of the detached local forward `127.0.0.1:<local> → <instance>:<target>:<host_port>`. */
export function forwardArgv(instance: string, local: number, host_port: number, target: string, sshConfig: string | undefined, logFile?: string): string[] {
  return [
    ...sshBase(sshConfig),
    // -E: ssh's own messages go to the forwarder log, and the log path names the forwarder (src/forwarder isOurs).
    ...(logFile ? ['-E', logFile] : []),
    '-o',
    'ExitOnForwardFailure=yes',
    '-o',
    'ServerAliveInterval=30',
    '-o',
    'ServerAliveCountMax=3',
    '-N',
    '-T',
    '-L',
    `127.0.0.1:${local}:${target}:${host_port}`,
    checkName('--instance', instance),
  ];
}
