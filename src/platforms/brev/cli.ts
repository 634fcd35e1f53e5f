/**
 * The brev CLI as tao-infer uses it (contract §8 brev, §8a): `brev ls --json`, `brev exec`, `brev delete`,
 * and `stop --delete-instance`. Loaded by the adapter and, for `stop --delete-instance` only, by the descriptor.
 */
import type { AfterStopContext } from '../descriptor.js';
import { CommandFailedError, PlatformUnavailableError } from '../../errors.js';
import type { EntryContext, JobState, RegistryEntry } from '../../types.js';
import { runCapture, tailLines, type RunResult } from '../../util/run.js';
import { checkName, parseRemote, wrapRemote, type RemoteResult } from './remote.js';

export const INSTALL_HINT = 'Install the Brev CLI (https://docs.nvidia.com/brev/latest/cli/getting-started) and run `brev login`.';
export const LOGIN_HINT =
  "Run 'brev login' (browser), or 'brev login --token \"$BREV_API_TOKEN\"' in your own shell, then retry. " +
  'tao-infer does not run the token login itself: it would put the token on a command line.';

/** One row of `brev ls --json` (`workspaces[]`). */
export interface BrevInstance {
  name: string;
  id: string;
  status: string;
  build_status?: string;
  shell_status?: string;
  health_status?: string;
  instance_type?: string;
  instance_kind?: string;
  gpu?: string;
}

export function loggedOut(r: RunResult): boolean {
  return /currently logged out|credentials file not found|declined to login|run `?brev login`?/i.test(`${r.stdout}\n${r.stderr}`);
}

export function lastLine(text: string): string {
  return tailLines(text, 1)[0]?.trim() ?? '';
}

/**
 * The instances of the logged-in Brev account (`brev ls --json`), for `--instance` prompt choices.
 * @throws PlatformUnavailableError when brev is missing, logged out or fails
 */
export async function listInstances(env: NodeJS.ProcessEnv = process.env): Promise<BrevInstance[]> {
  const r = await runCapture('brev', ['ls', '--json'], { env, platform: 'brev', installHint: INSTALL_HINT, timeoutMs: 120_000 });
  if (loggedOut(r)) throw new PlatformUnavailableError('brev', 'the brev CLI is not logged in', { hint: LOGIN_HINT });
  if (r.exitCode !== 0) throw new PlatformUnavailableError('brev', `'brev ls --json' failed: ${lastLine(r.stderr || r.stdout)}`, { hint: INSTALL_HINT });
  const start = r.stdout.indexOf('{');
  const end = r.stdout.lastIndexOf('}');
  let doc: { workspaces?: BrevInstance[] | null };
  try {
    doc = JSON.parse(r.stdout.slice(start, end + 1));
  } catch {
    throw new PlatformUnavailableError('brev', `'brev ls --json' printed something that is not JSON: ${r.stdout.slice(0, 200)}`, {
      hint: 'Update the Brev CLI (brev ls --json needs a recent version).',
    });
  }
  return (doc.workspaces ?? []).filter((w) => w && typeof w.name === 'string');
}

/**
 * The row of `brev ls --json` for an instance given by name or id (a name match wins: names are the ssh aliases).
 * @returns undefined when the account has no such instance
 */
export function findInstance(all: BrevInstance[], ref: string): BrevInstance | undefined {
  return all.find((w) => w.name === ref) ?? all.find((w) => w.id === ref);
}

/**
 * Can tao-infer run `brev exec` / ssh on this instance? Only when `brev ls --json` shows it RUNNING, or
 * UNHEALTHY, which `ls` prints for a RUNNING instance whose health check fails (brev-cli pkg/cmd/ls/ls.go
 * getWorkspaceDisplayStatus). Any other instance must not be exec'd into: `brev exec` STARTS a STOPPED
 * instance and waits up to 10 min for it (pkg/cmd/exec/exec.go runExecCommand), i.e. powers a GPU VM on.
 */
export function reachable(w: BrevInstance | undefined): boolean {
  return w !== undefined && (w.status === 'RUNNING' || w.status === 'UNHEALTHY');
}

/**
 * Live state of a service whose instance cannot be exec'd into (see `reachable`), without touching the instance:
 *  - absent from `brev ls`: `unknown`, native `instance-gone`;
 *  - STARTING / DEPLOYING: `pending`, native the Brev status;
 *  - STOPPED, STOPPING, FAILURE, DELETING...: `unknown`, native the Brev status, reason naming it. `unknown` because
 *    the container's own state cannot be read without starting the VM; the state words stay those of every platform.
 * @returns undefined when the instance is reachable
 */
export function unreachableState(w: BrevInstance | undefined, ref: string): JobState | undefined {
  if (!w) return { state: 'unknown', native: 'instance-gone', reason: `Brev instance ${ref} no longer exists (brev ls)` };
  if (reachable(w)) return undefined;
  if (w.status === 'STARTING' || w.status === 'DEPLOYING')
    return { state: 'pending', native: w.status, reason: `Brev instance ${w.name} is ${w.status}` };
  return {
    state: 'unknown',
    native: w.status,
    reason:
      `Brev instance ${w.name} is ${w.status}: tao-infer does not exec into it ('brev exec' would start the VM and bill for it); ` +
      `'brev start ${w.name}' resumes it`,
  };
}

/** Appends "Brev reports the instance UNHEALTHY" to a state read from a RUNNING-but-unhealthy instance. */
export function withHealth(st: JobState, w: BrevInstance): JobState {
  if (w.status !== 'UNHEALTHY') return st;
  const note = `Brev reports instance ${w.name} UNHEALTHY (health_status ${w.health_status ?? 'UNHEALTHY'})`;
  return { ...st, reason: st.reason ? `${st.reason}; ${note}` : note };
}

/**
 * Delete a Brev instance (`brev delete <instance>`), for `tao-infer stop --delete-instance` on ephemeral instances.
 * An instance that no longer exists counts as deleted.
 * @throws PlatformError when brev refuses
 */
export async function deleteInstance(instance: string, ctx: Pick<EntryContext, 'env' | 'log'>): Promise<void> {
  checkName('--instance', instance);
  const present = (await listInstances(ctx.env)).some((w) => w.name === instance || w.id === instance);
  if (!present) {
    ctx.log(`Brev instance ${instance} is already gone.`);
    return;
  }
  const r = await runCapture('brev', ['delete', instance], { env: ctx.env, platform: 'brev', installHint: INSTALL_HINT, timeoutMs: 300_000 });
  if (r.exitCode !== 0) throw new CommandFailedError(['brev', 'delete', instance], r.exitCode, tailLines(r.stderr || r.stdout, 12).join('\n'));
  ctx.log(`Deleting Brev instance ${instance} (brev delete).`);
}

/** Hints for the failures users meet when docker runs on a Brev instance. */
export function brevDockerHint(stderr: string, instance: string): string | undefined {
  if (/could not select device driver .*gpu/i.test(stderr)) return `The instance ${instance} has no NVIDIA container runtime: pick a GPU instance (brev ls shows the GPU column).`;
  if (/unauthorized|authentication required|denied: requested access/i.test(stderr))
    return `Log the instance in to the registry once, e.g. 'brev shell ${instance}' then: echo "$NGC_KEY" | docker login nvcr.io -u '$oauthtoken' --password-stdin`;
  if (/address already in use|port is already allocated/i.test(stderr)) return 'The instance port is taken by another program: stop it, or pass --port.';
  if (/Conflict\. The container name/i.test(stderr)) return `A container with this job_id already exists on ${instance}.`;
  if (/docker: (command )?not found|docker: not found/i.test(stderr)) return `Docker is not installed on ${instance}: use a Brev VM instance (Docker and the NVIDIA toolkit preinstalled).`;
  if (/Cannot connect to the Docker daemon|permission denied.*docker\.sock/i.test(stderr)) return `The docker daemon on ${instance} is not reachable for the login user.`;
  return undefined;
}

export interface ExecOutcome extends RunResult {
  /** Undefined when the script did not run to its end (brev or ssh failed). */
  remote?: RemoteResult;
}

/** `brev exec <instance> "<wrapped script>"` with stdin closed (a piped stdin would be read as instance names). */
export async function brevExec(instance: string, script: string, env: NodeJS.ProcessEnv, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ExecOutcome> {
  const r = await runCapture('brev', ['exec', instance, wrapRemote(script)], {
    env,
    platform: 'brev',
    installHint: INSTALL_HINT,
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
  });
  return { ...r, remote: parseRemote(r.stdout) };
}

export function instanceOf(entry: RegistryEntry): string | undefined {
  const i = entry.platform_data?.instance;
  return typeof i === 'string' && i ? i : undefined;
}

/**
 * `tao-infer stop --delete-instance`: delete (`brev delete`) the instances of the stopped brev services that
 * no remaining service uses; warns about the others.
 * @returns `{ deleted_instances }` for stop's JSON output
 * @throws PlatformError when brev refuses a deletion
 */
export async function deleteUnusedInstances(ctx: AfterStopContext): Promise<Record<string, unknown>> {
  const deleted: string[] = [];
  if (!ctx.options.deleteInstance) return {};
  const instances = new Set(ctx.stopped.map(instanceOf).filter((i): i is string => i !== undefined));
  for (const instance of instances) {
    const users = ctx.remaining.filter((x) => x.platform === 'brev' && instanceOf(x) === instance);
    if (users.length) {
      ctx.warn(`not deleting Brev instance ${instance}: still used by ${users.map((x) => x.job_id).join(', ')}`);
      continue;
    }
    await deleteInstance(instance, ctx);
    deleted.push(instance);
  }
  return { deleted_instances: deleted };
}
