/**
 * One local forwarder abstraction for every platform that reaches its service through a process on this
 * machine (slurm SSH tunnel, kubernetes port-forward, brev ssh forward). A platform only *describes* its
 * forwarder (`ForwarderDescription`: an argv, or a module of ours run with this Node, plus where it
 * listens); this module starts it detached with its log, waits until it accepts connections, tells
 * whether a PID is still it, stops it and restarts it. Modelled on testcontainers-node's
 * `port-forwarder/port-forwarder.ts` (one concept, one file).
 *
 * Identity rule: a forwarder's command line names its own log file
 * (`<tmpdir>/tao-infer-<uid>/forwarders/<platform>-<job_id>.log`: `--log-file` for our modules, `ssh -E`
 * for ssh), so `isOurs(pid, job_id)` can check /proc/<pid>/cmdline and never signal a recycled PID or
 * another job's forwarder.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { EntryContext, JobState, RegistryEntry } from '../types.js';
import { isAlive, killPid, spawnDetached, waitForPort } from '../util/detached.js';
import { findProjectRoot } from '../util/root.js';
import { ForwarderError } from './error.js';
import { forwarderLogPath, isForwarderLogOf, logOffset, logTailSince } from './log.js';

/** How a forwarder is run: an executable with its argv, or a module of ours (run with this Node) and its arguments. */
export type ForwarderRun = { command: string; args: string[] } | { module: URL; args: string[] };

/** What a platform says about the forwarder of one job. Never holds a secret (argv is visible in the process table). */
export interface ForwarderDescription {
  platform: string;
  job_id: string;
  /** Its name in messages, e.g. `SSH tunnel`, `port-forward process`, `ssh forward`. */
  kind: string;
  run: ForwarderRun;
  /** Environment of the process (secrets removed by the platform, see `forwarderEnv`). */
  env: NodeJS.ProcessEnv;
  /** From `forwarderLogFile(platform, job_id)`; an argv forwarder must name it in its args. */
  logFile: string;
  /** Where it accepts connections (loopback). */
  listen: { host: string; port: number };
  /** Where traffic goes, for messages, e.g. `node1:8080 through login.example`. */
  target: string;
  /** The fix shown when it does not come up. */
  hint: string;
  /** How long it may take to accept connections. Default 30 s. */
  readyTimeoutMs?: number;
  /** Registry fields to store together with the new PID (e.g. a new node or pod name). */
  fields?: Partial<RegistryEntry>;
}

/** What a platform adapter declares when its services have a local forwarder (routed by `src/platforms/routing.ts`). */
export interface ForwarderSupport {
  /** Name in messages (`SSH tunnel`, `port-forward process`, `ssh forward`). */
  readonly kind: string;
  /**
   * The description to start the forwarder of an existing entry again (`tao-infer tunnel`), looked up on
   * the platform (the job's current node or pod).
   * @throws a UserError when the entry has no forwarder, a PlatformError when the job is not running.
   */
  describe(entry: RegistryEntry, ctx: EntryContext): Promise<ForwarderDescription>;
}

const DEFAULT_READY_MS = 30_000;

/**
 * The file to run for a module forwarder: the module itself when it is a built `.js`, else its compiled
 * twin under `<root>/dist/` (tests run the TypeScript sources, forwarders always run the build).
 * @throws ForwarderError when neither exists (tao-infer not built).
 */
export function moduleFile(d: Pick<ForwarderDescription, 'platform' | 'job_id'>, module: URL): string {
  const here = fileURLToPath(module);
  if (existsSync(here)) return here;
  const root = findProjectRoot();
  const built = root ? join(root, 'dist', relative(root, here)) : undefined;
  if (built && !relative(root!, here).startsWith(`..${sep}`) && existsSync(built)) return built;
  throw new ForwarderError(d.platform, d.job_id, `the forwarder program ${here} is missing`, undefined, [], { hint: 'Rebuild tao-infer (npm run build).' });
}

function argvOf(d: ForwarderDescription): { command: string; args: string[] } {
  if ('module' in d.run) return { command: process.execPath, args: [moduleFile(d, d.run.module), ...d.run.args, '--log-file', d.logFile] };
  if (!d.run.args.includes(d.logFile)) throw new Error(`forwarder argv of ${d.platform} must name its log file ${d.logFile}`);
  return { command: d.run.command, args: d.run.args };
}

/**
 * True when `pid` is alive and, where /proc exists, its command line names the forwarder log of `jobId`;
 * without /proc, alive is enough.
 */
export function isOurs(pid: number | undefined, jobId: string): boolean {
  if (!pid || !isAlive(pid)) return false;
  if (!existsSync('/proc/self/cmdline')) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .some((a) => isForwarderLogOf(a, jobId));
  } catch {
    return false;
  }
}

/**
 * Start the forwarder detached (own session, output appended to its log) and resolve its PID once it is
 * alive and accepts TCP connections on `listen`. `onPid` runs right after the spawn (record the PID before
 * waiting, so an interrupted start can still end it).
 * @throws ForwarderError with the new lines of its log when it exits or does not listen in time; the abort reason
 *   (e.g. InterruptedError) when `signal` aborts. The process is ended first in every case.
 */
export async function startForwarder(d: ForwarderDescription, opts: { onPid?: (pid: number) => Promise<void>; signal?: AbortSignal } = {}): Promise<number> {
  const { command, args } = argvOf(d);
  const offset = logOffset(d.logFile);
  const pid = spawnDetached({ command, args, env: d.env, logFile: d.logFile });
  let failure = 'did not accept connections in time';
  // Every way out but success ends the process (catch below), so an interrupted or failed start leaves none.
  try {
    await opts.onPid?.(pid);
    const until = Date.now() + (d.readyTimeoutMs ?? DEFAULT_READY_MS);
    while (Date.now() < until && !opts.signal?.aborted) {
      if (!isAlive(pid)) {
        failure = 'exited';
        break;
      }
      if ((await waitForPort(d.listen.host, d.listen.port, 300)) && isAlive(pid)) return pid;
    }
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');
  } catch (e) {
    await killPid(pid);
    throw e;
  }
  await killPid(pid);
  await sleep(50);
  throw new ForwarderError(
    d.platform,
    d.job_id,
    `the ${d.kind} ${d.listen.host}:${d.listen.port} → ${d.target} ${failure}`,
    d.logFile,
    logTailSince(d.logFile, offset, 10),
    { hint: `${d.hint} Forwarder log: ${d.logFile}` },
  );
}

/** Port the forwarder of an entry listens on: `local_port` when it differs from `host_port`, else `host_port`. */
export function listenPortOf(entry: RegistryEntry): number | undefined {
  return typeof entry.local_port === 'number' ? entry.local_port : typeof entry.host_port === 'number' ? entry.host_port : undefined;
}

/**
 * End the forwarder of an entry (by its recorded PID, only when it is ours) and remove its log once it is
 * gone: the conventional path, and any forwarder log of this job recorded in `platform_data` (entries
 * written by earlier versions). A PID that is alive but no longer ours is left alone with a warning. Never throws.
 */
export async function stopForwarder(entry: RegistryEntry, ctx: Pick<EntryContext, 'warn'>): Promise<void> {
  const pid = entry.forwarder_pid;
  if (isOurs(pid, entry.job_id)) await killPid(pid);
  else if (typeof pid === 'number' && isAlive(pid)) ctx.warn(`process ${pid} is no longer the forwarder of ${entry.job_id}; left alone`);
  if (isOurs(pid, entry.job_id)) return;
  const recorded = Object.values(entry.platform_data ?? {}).filter(
    (v): v is string => typeof v === 'string' && v.includes(`${sep}forwarders${sep}`) && v.endsWith(`-${entry.job_id}.log`),
  );
  for (const f of new Set([forwarderLogPath(entry.platform, entry.job_id), ...recorded])) rmSync(f, { force: true });
}

/**
 * The live state with a note when the entry's forwarder is down while the job runs (requests would fail),
 * naming the command that brings it back.
 */
export function withForwarderNote(st: JobState, entry: RegistryEntry, kind: string): JobState {
  if (st.state !== 'running' || entry.forwarder_pid === undefined || isOurs(entry.forwarder_pid, entry.job_id)) return st;
  const note = `the local ${kind} (pid ${entry.forwarder_pid}) is not running; requests to ${entry.host_url} fail until 'tao-infer tunnel ${entry.job_id}'`;
  return { ...st, reason: st.reason ? `${st.reason}; ${note}` : note };
}

/**
 * `tao-infer tunnel`: make sure the forwarder of an entry runs; start it again on the same port (so
 * host_url stays valid) when it is gone. Resolves `{}` when it is alive and accepting connections, else
 * the registry fields to store (`forwarder_pid` and what the description adds).
 * @throws what `support.describe` throws; ForwarderError when the port is taken by another program or it does not come up.
 */
export async function restartForwarder(entry: RegistryEntry, support: ForwarderSupport, ctx: EntryContext): Promise<Partial<RegistryEntry>> {
  const port = listenPortOf(entry);
  if (port !== undefined && isOurs(entry.forwarder_pid, entry.job_id) && (await waitForPort('127.0.0.1', port, 2000))) return {};
  const d = await support.describe(entry, ctx);
  if (isOurs(entry.forwarder_pid, entry.job_id)) await killPid(entry.forwarder_pid);
  if (await waitForPort(d.listen.host, d.listen.port, 500))
    throw new ForwarderError(d.platform, d.job_id, `local port ${d.listen.port} of ${d.job_id} is in use by another process`, undefined, [], {
      hint: `Free port ${d.listen.port} (find it with 'ss -ltnp | grep :${d.listen.port}') and run 'tao-infer tunnel ${d.job_id}' again.`,
    });
  const pid = await startForwarder(d, { signal: ctx.signal });
  ctx.log(`${d.kind} restarted: ${d.listen.host}:${d.listen.port} → ${d.target} (pid ${pid})`);
  return { ...d.fields, forwarder_pid: pid };
}

/**
 * Environment for a forwarder: only what SSH needs, never the caller's secrets. `extra` names are kept too.
 * (The kubernetes port-forward keeps more: see its adapter.)
 */
export function forwarderEnv(env: NodeJS.ProcessEnv, extra: string[] = []): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const k of ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'SSH_AUTH_SOCK', 'TMPDIR', ...extra]) if (env[k] !== undefined) out[k] = env[k];
  return out;
}
