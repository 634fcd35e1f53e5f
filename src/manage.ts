/**
 * Managing running services: stop, list with live state, logs, latest. Kept apart from start/request
 * so that `ls`, `stop` and `logs` never load the reference data, zod or yaml.
 */
import { loadAdapter } from './platforms/index.js';
import { Registry, repairLatest } from './registry/store.js';
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
 * The registry entry for a job_id or a unique prefix of at least 4 characters (src/service/routing.ts resolveJobId).
 * @throws InvalidInputError, JobNotFoundError, AmbiguousTargetError (exit 2)
 */
export async function findService(job_id: string, deps: ManageDeps = {}): Promise<RegistryEntry> {
  return resolveJobId((await ctxParts(deps).registry.read()).entries, job_id);
}

/**
 * Stop a service on its platform and remove it from the registry (contract §5: `latest` repaired).
 * A job already gone on the platform counts as stopped. `job_id` may be a unique prefix (≥ 4 characters).
 * @throws JobNotFoundError, AmbiguousTargetError, PlatformError (registry entry kept so the stop can be retried)
 */
export async function stopService(job_id: string, deps: ManageDeps = {}): Promise<RegistryEntry> {
  const { env, registry, log, warn } = ctxParts(deps);
  const entry = await findService(job_id, { ...deps, registry });
  const adapter = await loadAdapter(entry.platform);
  await adapter.stop(entry, { env, log, warn, signal: deps.signal });
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
  const listed = (e: RegistryEntry, st: JobState): ListedService => {
    const live = liveState(st);
    return { ...e, state: live.state, live };
  };
  const services = await Promise.all(
    entries.map(async (e): Promise<ListedService> => {
      try {
        const adapter = await loadAdapter(e.platform);
        const live = await Promise.race([
          adapter.status(e, ectx),
          new Promise<JobState>((r) => setTimeout(() => r({ state: 'unknown', reason: 'status timed out' }), 20_000).unref()),
        ]);
        return listed(e, e.state === 'starting' && live.state === 'unknown' ? { ...live, state: 'pending', native: 'starting' } : live);
      } catch (err) {
        return listed(e, { state: 'unknown', reason: (err as Error).message.split('\n')[0] });
      }
    }),
  );
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

