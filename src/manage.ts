/**
 * Managing running services: stop, list with live state, logs, latest. Kept apart from start/request
 * so that `ls`, `stop` and `logs` never load the reference data, zod or yaml.
 */
import { JobNotFoundError } from './errors.js';
import { loadAdapter } from './platforms/index.js';
import { isStaleStarting } from './registry/ports.js';
import { Registry, checkActionable, repairLatest } from './registry/store.js';
import type { JobState, RegistryEntry } from './types.js';

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

/** The entry under registry key `job_id`, refused when it must not be acted on. @throws JobNotFoundError, InvalidInputError */
async function actionableEntry(registry: Registry, job_id: string): Promise<RegistryEntry> {
  const state = await registry.read();
  checkActionable(state, job_id);
  const entry = Object.hasOwn(state.entries, job_id) ? state.entries[job_id] : undefined;
  if (!entry) throw new JobNotFoundError(job_id);
  return entry;
}

/**
 * Stop a service on its platform and remove it from the registry (contract §5: `latest` repaired).
 * A job already gone on the platform counts as stopped, and so does one whose entry another `stop` removed
 * while this one was stopping it (two concurrent stops of one job both succeed).
 * @throws JobNotFoundError, InvalidInputError (inconsistent or unsafe entry), PlatformError (registry entry kept so the stop can be retried)
 */
export async function stopService(job_id: string, deps: ManageDeps = {}): Promise<RegistryEntry> {
  const { env, registry, log, warn } = ctxParts(deps);
  const entry = await actionableEntry(registry, job_id);
  const adapter = await loadAdapter(entry.platform);
  try {
    await adapter.stop(entry, { env, log, warn, signal: deps.signal });
  } catch (e) {
    // Another stop finished first: its platform call succeeded and it removed the entry. The job is gone.
    if (!(await registry.get(job_id))) return entry;
    throw e;
  }
  await registry.remove(job_id);
  return entry;
}

export interface ListedService extends RegistryEntry {
  live: JobState;
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
    return { ...e, live: e.state === 'starting' && l.state === 'unknown' && !l.native ? { ...l, state: 'pending', native: 'starting' } : l };
  });
  return { services, latest: state.latest };
}

/** Stream logs of a service. @throws JobNotFoundError */
export async function* serviceLogs(job_id: string, opts: { follow?: boolean; tail?: number }, deps: ManageDeps = {}): AsyncIterable<string> {
  const { env, registry, log, warn } = ctxParts(deps);
  const entry = await actionableEntry(registry, job_id);
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

