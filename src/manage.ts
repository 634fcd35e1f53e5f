/**
 * Managing running services: stop, list with live state, logs, latest. Kept apart from start/request
 * so that `ls`, `stop` and `logs` never load the reference data, zod or yaml.
 */
import { loadAdapter } from './platforms/index.js';
import { isStaleStarting } from './registry/ports.js';
import { Registry, checkActionable, repairLatest } from './registry/store.js';
import { resolveJobId } from './service/routing.js';
import type { JobState, JobStateName, RegistryEntry } from './types.js';

/** Registry, environment and reporting used by these functions. All optional. */
export interface ManageDeps {
  registry?: Registry;
  env?: NodeJS.ProcessEnv;
  reporter?: { log?: (msg: string) => void; warn?: (msg: string) => void };
  signal?: AbortSignal;
}

function ctxParts(deps: ManageDeps) {
  const env = deps.env ?? process.env;
  const registry = deps.registry ?? new Registry();
  const log = (m: string) => deps.reporter?.log?.(m);
  const warn = (m: string) => deps.reporter?.warn?.(m);
  return { env, registry, log, warn };
}

/**
 * The registry entry for a job_id or a unique prefix of at least 4 characters (src/service/routing.ts resolveJobId),
 * refused when it must not be acted on (an inconsistent key, an id starting with '-'; src/registry/store.ts checkActionable).
 * @throws InvalidInputError, JobNotFoundError, AmbiguousTargetError (exit 2)
 */
export async function findService(job_id: string, deps: ManageDeps = {}): Promise<RegistryEntry> {
  const state = await ctxParts(deps).registry.read();
  checkActionable(state, job_id);
  const entry = resolveJobId(state.entries, job_id);
  checkActionable(state, entry.job_id);
  return entry;
}

/**
 * Stop a service on its platform and remove it from the registry (contract §5: `latest` repaired).
 * A job already gone on the platform counts as stopped, and so does one whose entry another `stop` removed
 * while this one was stopping it (two concurrent stops of one job both succeed). `job_id` may be a unique prefix
 * (≥ 4 characters).
 * @throws JobNotFoundError, AmbiguousTargetError, InvalidInputError (inconsistent or unsafe entry), PlatformError (registry entry kept so the stop can be retried)
 */
export async function stopService(job_id: string, deps: ManageDeps = {}): Promise<RegistryEntry> {
  const { env, registry, log, warn } = ctxParts(deps);
  const entry = await findService(job_id, { ...deps, registry });
  const adapter = await loadAdapter(entry.platform);
  try {
    await adapter.stop(entry, { env, log, warn, signal: deps.signal });
  } catch (e) {
    // Another stop finished first: its platform call succeeded and it removed the entry. The job is gone.
    if (!(await registry.get(entry.job_id))) return entry;
    throw e;
  }
  await registry.remove(entry.job_id);
  return entry;
}

/** RegistryEntry without its index signature (so Omit keeps the named keys). */
type KnownEntryKeys = { [K in keyof RegistryEntry as string extends K ? never : K]: RegistryEntry[K] };

/** A live state as `ls --json` prints it: snake_case keys (JobState with `exit_code`). */
export interface LiveState {
  state: JobStateName;
  native?: string;
  reason?: string;
  exit_code?: number;
  node?: string;
  /** Which environment default stood in for platform data the entry lacks (skill-written entries). */
  note?: string;
}

/**
 * One service as `ls` lists it: the registry entry, with `state` in the live vocabulary (`pending`, `running`,
 * `complete`, `error`, `canceled`, `unknown`; the same words as `start --json`) instead of the registry's
 * `starting`/`started` marker, and `live` with the platform's detail.
 */
export interface ListedService extends Omit<KnownEntryKeys, 'state'> {
  [key: string]: unknown;
  state: JobStateName;
  live: LiveState;
}

/** JobState → its `ls --json` form (snake_case). */
export function liveState(st: JobState): LiveState {
  const { exitCode, ...rest } = st;
  return exitCode === undefined ? { ...rest } : { ...rest, exit_code: exitCode };
}

/**
 * All registry entries with their live state from the platform (adapters loaded only for the
 * platforms present). A platform that cannot be asked gives state `unknown` with the reason.
 */
export async function listServices(deps: ManageDeps = {}): Promise<{ services: ListedService[]; latest?: string }> {
  const { env, registry, log, warn } = ctxParts(deps);
  const state = await registry.read();
  const entries = Object.values(state.entries).sort((a, b) => a.started_at.localeCompare(b.started_at));
  const ectx = { env, log, warn, signal: deps.signal };
  // Inconsistent entries (key ≠ job_id) are shown under their key and never asked about on a platform.
  for (const [key, other] of Object.entries(state.inconsistent ?? {})) {
    const raw = state.other[key] as RegistryEntry;
    entries.push({ ...raw, job_id: key, registry_job_id_field: other } as RegistryEntry);
  }
  /** The state an entry has without asking its platform (inconsistent, unsafe id, stale start), if any. */
  const localState = (e: RegistryEntry): JobState | undefined => {
    if (typeof e.registry_job_id_field === 'string')
      return { state: 'unknown', native: 'inconsistent', reason: `registry key '${e.job_id}' holds job_id '${e.registry_job_id_field}'; not acted on` };
    try {
      checkActionable(state, e.job_id);
    } catch (err) {
      return { state: 'unknown', native: 'unsafe-id', reason: (err as Error).message };
    }
    if (isStaleStarting(e))
      return { state: 'unknown', native: 'stale', reason: `its start (pid ${e.starter_pid}) ended before the launch finished; its port is free again. Remove it with 'tao-infer stop ${e.job_id}'` };
    return undefined;
  };
  const unknown = (err: unknown): JobState => ({ state: 'unknown', reason: (err as Error).message.split('\n')[0] });
  const timedOut = <T>(p: Promise<T>, fallback: T) =>
    Promise.race([p, new Promise<T>((r) => setTimeout(() => r(fallback), 20_000).unref())]);
  const TIMED_OUT: JobState = { state: 'unknown', reason: 'status timed out' };
  const live = new Map<RegistryEntry, JobState>();
  const byPlatform = new Map<string, RegistryEntry[]>();
  for (const e of entries) {
    const l = localState(e);
    if (l) live.set(e, l);
    else byPlatform.set(e.platform, [...(byPlatform.get(e.platform) ?? []), e]);
  }
  await Promise.all(
    [...byPlatform].map(async ([platform, list]) => {
      try {
        const adapter = await loadAdapter(platform);
        // One call for all entries of the platform when it can (local-docker: one docker inspect), else one each.
        const states = adapter.statusMany
          ? await timedOut(adapter.statusMany(list, ectx), list.map(() => TIMED_OUT))
          : await Promise.all(list.map((e) => timedOut(adapter.status(e, ectx), TIMED_OUT).catch(unknown)));
        list.forEach((e, i) => live.set(e, states[i] ?? unknown(new Error('no state returned'))));
      } catch (err) {
        for (const e of list) live.set(e, unknown(err));
      }
    }),
  );
  const services = entries.map((e): ListedService => {
    const l = live.get(e)!;
    const st = e.state === 'starting' && l.state === 'unknown' && !l.native ? { ...l, state: 'pending' as const, native: 'starting' } : l;
    const ls = liveState(st);
    return { ...e, state: ls.state, live: ls };
  });
  return { services, latest: state.latest };
}

/** Stream logs of a service (`job_id` or a unique prefix of ≥ 4 characters). @throws JobNotFoundError, AmbiguousTargetError */
export async function* serviceLogs(job_id: string, opts: { follow?: boolean; tail?: number }, deps: ManageDeps = {}): AsyncIterable<string> {
  const { env, registry, log, warn } = ctxParts(deps);
  const entry = await findService(job_id, { ...deps, registry });
  const adapter = await loadAdapter(entry.platform);
  yield* adapter.logs(entry, { ...opts, signal: deps.signal }, { env, log, warn, signal: deps.signal });
}

/** Pick a registry entry for stop: explicit id, else `latest` (confirmation is the caller's). */
export async function latestJobId(deps: ManageDeps = {}): Promise<string | undefined> {
  const { registry } = ctxParts(deps);
  const s = await registry.read();
  repairLatest(s);
  return s.latest;
}

