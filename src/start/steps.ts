/**
 * start, steps 2–5 after prepare (spec §4, contract §5–§6): reserve → launch → await ready, and roll back when
 * one of them fails. The entry exists before anything is launched and is removed when the start fails (unless
 * --keep-on-failure), so no service ever runs unrecorded. Each step is one function over a `StartRun`.
 */
import { ServiceFailedError, TaoInferError } from '../errors.js';
import { LABELS } from '../labels.js';
import { authHeaders, type Reporter } from '../deps.js';
import { portField, probeCandidates, reservePort, type PortRange } from '../registry/ports.js';
import type { Registry, RegistryState } from '../registry/store.js';
import type { References } from '../references.js';
import { waitForReadiness } from '../service/readiness.js';
import type { AdapterContext, EntryContext, LaunchSpec, Launched, PlatformAdapter, PlatformName, RegistryEntry } from '../types.js';
import type { StartInput } from './prepare.js';

/** Docker's words for a host port that another program bound first. */
const PORT_TAKEN = /port is already allocated|address already in use/i;

/** Longest time the rollback of a failed or interrupted start may take to remove the service, ms. */
export const ROLLBACK_TIMEOUT_MS = 60_000;

/** One start in progress: what prepare produced and what the steps share. */
export interface StartRun {
  input: StartInput;
  spec: LaunchSpec;
  platform: PlatformName;
  adapter: PlatformAdapter;
  registry: Registry;
  env: NodeJS.ProcessEnv;
  log: (m: string) => void;
  warn: (m: string) => void;
  reporter?: Reporter;
  /** The start's signal (the CLI: first Ctrl-C/SIGTERM). Never used by the rollback. */
  signal?: AbortSignal;
  /** Aborts the rollback (the CLI: a second Ctrl-C). */
  rollbackSignal?: AbortSignal;
  /** Port allocation range (src/registry/ports.ts). */
  range: PortRange;
  /** Readiness timeout, seconds (also bounds the launch). */
  timeoutS: number;
  readiness: References['request']['readiness'];
  /** ISO time the entry was recorded (set by `reserve`). */
  started_at: string;
  /** Bind probes of the likely host ports, made during preflight (`probeHostPorts`), for the pick under the lock. */
  probed?: ReadonlyMap<number, boolean>;
}

const entryCtx = (run: StartRun): EntryContext => ({ env: run.env, log: run.log, warn: run.warn, signal: run.signal });

/**
 * The host port a platform reserves before launch (`reservesHostPort`, contract §5): a port of this machine, bound
 * on `--bind`, `--port` when given. Call inside `Registry.mutate`.
 */
export function reserveHostPort(run: StartRun, s: RegistryState, exclude?: Set<number>): Promise<number> {
  return reservePort(s, { scope: { kind: 'local' }, job_id: run.spec.job_id, bindAddress: run.spec.bind_address, explicit: run.input.port, range: run.range, exclude, probed: exclude ? undefined : run.probed });
}

/**
 * Probe the host ports `reserve` will most likely pick for `spec`, before it takes the lock (the caller runs it
 * while the adapter loads and the platform answers its preflight, so the lock is held shorter), for platforms
 * that reserve a host port without `--port`. Resolves the probes for `StartRun.probed`; never rejects (without
 * probes the pick probes under the lock as before).
 */
export async function probeHostPorts(registry: Registry, spec: LaunchSpec, range: PortRange): Promise<ReadonlyMap<number, boolean> | undefined> {
  try {
    return await probeCandidates(await registry.read(), { scope: { kind: 'local' }, job_id: spec.job_id, bindAddress: spec.bind_address, range });
  } catch {
    return undefined;
  }
}

/** Refuse a taken `--port` before any platform call (a check; the port is picked once, under the lock, when recorded). */
export async function checkPortBeforeLaunch(run: StartRun): Promise<void> {
  if (run.input.port === undefined) return;
  const bindAddress = run.adapter.reservesHostPort ? run.spec.bind_address : '127.0.0.1';
  await reservePort(await run.registry.read(), { scope: { kind: 'local' }, explicit: run.input.port, bindAddress, range: run.range });
}

/** What the adapter may do to the registry during preflight and launch: record fields, allocate ports (port policy). */
export function adapterContext(run: StartRun): AdapterContext {
  const { registry, spec } = run;
  return {
    env: run.env,
    log: run.log,
    warn: run.warn,
    signal: run.signal,
    ...(run.reporter?.progressLine ? { progressLine: run.reporter.progressLine } : {}),
    record: async (fields) => {
      await registry.update(spec.job_id, fields);
    },
    allocatePort: (scope) =>
      registry.mutate(async (s) => {
        // --port names the port this host connects to; a platform that reserves its host port used it there.
        const port = await reservePort(s, { scope, job_id: spec.job_id, explicit: run.adapter.reservesHostPort ? undefined : run.input.port, range: run.range });
        const e = Object.hasOwn(s.entries, spec.job_id) ? s.entries[spec.job_id] : undefined;
        if (e) e[portField(run.platform, scope)] = port;
        return port;
      }),
  };
}

/** The entry as recorded before launch: state `starting`, the reserved host port, the starter's pid and deadline. */
export function baseEntry(run: StartRun): RegistryEntry {
  const { spec } = run;
  return {
    job_id: spec.job_id,
    platform: run.platform,
    network_arch: spec.network_arch,
    host_url: '',
    ...(spec.host_port !== undefined && run.adapter.reservesHostPort ? { host_port: spec.host_port } : {}),
    started_at: run.started_at,
    state: 'starting',
    image: spec.image,
    model_path: run.input.model_path.trim(),
    num_gpus: spec.num_gpus,
    ...(spec.expires_at ? { expires_at: spec.expires_at } : {}),
    ...(spec.idle_timeout_minutes !== undefined ? { idle_timeout_minutes: spec.idle_timeout_minutes } : {}),
    // With these, an entry left `starting` by a killed start is recognised as stale (registry/ports.ts).
    starter_pid: process.pid,
    launch_deadline: new Date(Date.parse(run.started_at) + run.timeoutS * 1000).toISOString(),
  };
}

/** Step reserve: record the entry (state `starting`, host port picked) in one locked write, before any launch. */
export async function reserve(run: StartRun): Promise<void> {
  run.started_at = new Date().toISOString();
  run.spec.labels[LABELS.startedAt] = run.started_at;
  await run.registry.mutate(async (s) => {
    if (run.adapter.reservesHostPort) run.spec.host_port = await reserveHostPort(run, s);
    s.entries[run.spec.job_id] = baseEntry(run);
    s.latest = run.spec.job_id;
  });
}

/**
 * Merge fields into our entry; when a foreign writer (e.g. the published skill's unlocked read-modify-write)
 * dropped it while we launched, record it again: something may be running, so it must be in the registry.
 */
function recordLaunched(run: StartRun, fields: Partial<RegistryEntry>): Promise<RegistryEntry> {
  const id = run.spec.job_id;
  return run.registry.mutate((s) => {
    const had = Object.hasOwn(s.entries, id) ? s.entries[id] : undefined;
    if (!had) run.warn(`the registry entry of ${id} vanished during launch (another program rewrote the registry); recorded it again`);
    const next = { ...(had ?? baseEntry(run)), ...fields } as RegistryEntry;
    for (const [k, v] of Object.entries(fields)) if (v === undefined) delete next[k];
    s.entries[id] = next;
    if (!had && !s.latest) s.latest = id;
    return next;
  });
}

/**
 * Step launch: the adapter launches and returns the address; the entry becomes `started` with what it returned.
 * A reserved host port taken between our probe and docker's bind is retried once on the next free port.
 * @throws what the adapter throws (the caller rolls back)
 */
export async function launch(run: StartRun): Promise<RegistryEntry> {
  const { spec, adapter } = run;
  const ctx = { ...adapterContext(run), deadline: Date.now() + run.timeoutS * 1000 };
  let launched: Launched;
  try {
    launched = await adapter.launch(spec, ctx);
  } catch (e) {
    // A host port taken by a foreign writer's container or another program: remove what the failed run left,
    // take the next free port under the lock and launch once more.
    if (!(adapter.reservesHostPort && run.input.port === undefined && spec.host_port !== undefined && PORT_TAKEN.test(String((e as Error).message)))) throw e;
    const taken = spec.host_port;
    run.warn(`host port ${taken} was taken by another program just before the launch; retrying once with another port`);
    await adapter.stop(baseEntry(run), entryCtx(run)).catch(() => undefined);
    await run.registry.mutate(async (s) => {
      spec.host_port = await reserveHostPort(run, s, new Set([taken]));
      const mine = Object.hasOwn(s.entries, spec.job_id) ? s.entries[spec.job_id] : undefined;
      s.entries[spec.job_id] = { ...(mine ?? baseEntry(run)), host_port: spec.host_port };
    });
    launched = await adapter.launch(spec, ctx);
  }
  const fields = Object.fromEntries(Object.entries(launched).filter(([, v]) => v !== undefined)) as Partial<RegistryEntry>;
  return recordLaunched(run, { ...fields, state: 'started' });
}

/** Last `n` log lines of a service; [] when logs cannot be read. */
export async function logTail(adapter: PlatformAdapter, entry: RegistryEntry, ctx: EntryContext, n = 20): Promise<string[]> {
  try {
    let text = '';
    for await (const chunk of adapter.logs(entry, { tail: n }, ctx)) text += chunk;
    return text.split(/\r?\n/).filter((l, i, a) => l !== '' || i < a.length - 1).slice(-n);
  } catch {
    return [];
  }
}

/**
 * Step await ready: poll readiness (contract §6) while watching the job; a job that ended fails at once with its log tail.
 * @throws ServiceNotReadyError subclasses (timeout, ServiceFailedError), InterruptedError on the start's signal
 */
export async function awaitReady(run: StartRun, entry: RegistryEntry): Promise<void> {
  const { adapter, platform } = run;
  const ectx = entryCtx(run);
  await waitForReadiness({
    job_id: entry.job_id,
    host_url: entry.host_url,
    readiness: run.readiness,
    timeoutS: run.timeoutS,
    headers: authHeaders(entry, run.env),
    authEnv: entry.auth_env,
    onProgress: run.reporter?.progress,
    signal: run.signal,
    logTail: () => logTail(adapter, entry, ectx),
    checkAlive: async () => {
      const st = await adapter.status(entry, ectx);
      if (st.state === 'error' || st.state === 'complete' || st.state === 'canceled') {
        const tail = await logTail(adapter, entry, ectx);
        throw new ServiceFailedError(
          entry.job_id,
          `the ${platform} job ${st.native ?? st.state}${st.exitCode !== undefined ? ` with exit code ${st.exitCode}` : ''}${st.reason ? ` (${st.reason})` : ''} before it was ready`,
          st.state,
          tail,
          st.exitCode,
        );
      }
    },
  });
}

/**
 * Step roll back, after launch or readiness failed (also on an interrupt): stop the service and remove its entry,
 * or with --keep-on-failure keep both and say how to remove them. The stop runs with its own signal, bounded by
 * ROLLBACK_TIMEOUT_MS and aborted by `rollbackSignal`, never the start's (already aborted by an interrupt). When
 * the stop fails the entry is kept so `tao-infer stop` can retry. When `cause` says the platform created nothing
 * (TaoInferError.nothingLaunched), only the entry is removed. Never throws: the start's own error is what counts.
 */
export async function rollBack(run: StartRun, why: string, cause?: unknown): Promise<void> {
  const { spec, platform } = run;
  try {
    if (run.input.keep_on_failure) {
      run.warn(`${why}; kept for inspection (--keep-on-failure). Remove it with: tao-infer stop ${spec.job_id}`);
      return;
    }
    if (!(cause instanceof TaoInferError && cause.nothingLaunched)) {
      const entry = (await run.registry.get(spec.job_id)) ?? ({ job_id: spec.job_id, platform, network_arch: spec.network_arch, host_url: '', started_at: run.started_at } as RegistryEntry);
      const signal = AbortSignal.any([AbortSignal.timeout(ROLLBACK_TIMEOUT_MS), ...(run.rollbackSignal ? [run.rollbackSignal] : [])]);
      try {
        await run.adapter.stop(entry, { env: run.env, log: run.log, warn: run.warn, signal });
      } catch (e) {
        run.warn(`could not remove the failed service on ${platform}: ${(e as Error).message}. The registry entry is kept so 'tao-infer stop ${spec.job_id}' can retry.`);
        return;
      }
    }
    await run.registry.remove(spec.job_id);
  } catch (e) {
    run.warn(`could not roll back ${spec.job_id}: ${(e as Error).message}. Check 'tao-infer ls' and remove it with 'tao-infer stop ${spec.job_id}'.`);
  }
}

/**
 * reserve → launch → await ready, rolling back when launch or readiness fails (and rethrowing that error).
 * With `no_wait`, returns once launched.
 */
export async function runStart(run: StartRun): Promise<{ entry: RegistryEntry; ready: boolean }> {
  await reserve(run);
  let entry: RegistryEntry;
  try {
    entry = await launch(run);
  } catch (e) {
    await rollBack(run, 'launch failed', e);
    throw e;
  }
  run.log(`Inference service started.\n  Job ID : ${entry.job_id}\n  Arch   : ${entry.network_arch}\n  URL    : ${entry.host_url}/v1/chat/completions`);
  if (run.input.no_wait) return { entry, ready: false };
  try {
    await awaitReady(run, entry);
  } catch (e) {
    // Any failure while waiting (also an interrupt) removes the service unless --keep-on-failure.
    await rollBack(run, e instanceof Error ? e.message.split('\n')[0]! : 'start failed');
    throw e;
  }
  return { entry, ready: true };
}
