/**
 * Managing running services: stop, list with live state, logs, latest. Kept apart from start/request
 * so that `ls`, `stop` and `logs` never load the reference data, zod or yaml.
 */
import { descriptorOf, loadAdapter, PLATFORM_NAMES } from './platforms/index.js';
import { isStaleStarting, portRange, reservePort } from './registry/ports.js';
import { Registry, checkActionable, repairLatest, type RegistryState } from './registry/store.js';
import { resolveJobId } from './service/routing.js';
import { ENDED_STATES, type DiscoveredService, type JobState, type JobStateName, type PlatformAdapter, type RegistryEntry, type StopOutcome } from './types.js';
import { mapLimit, withTimeout } from './util/pool.js';
import { compareText } from './util/order.js';

/** Status calls `ls` runs at once. */
export const STATUS_CONCURRENCY = 16;
/** Per-call limit of one status call (ms); the entry shows `unknown` ("status timed out") after it. */
export const STATUS_TIMEOUT_MS = 15_000;
/** Per-platform limit of one discover call (ms). */
export const DISCOVER_TIMEOUT_MS = 60_000;

/** Registry, environment and reporting used by these functions. All optional. */
export interface ManageDeps {
  registry?: Registry;
  env?: NodeJS.ProcessEnv;
  reporter?: { log?: (msg: string) => void; warn?: (msg: string) => void };
  signal?: AbortSignal;
  /** Status calls in flight at once (default STATUS_CONCURRENCY). */
  statusConcurrency?: number;
  /** Per status call limit in ms (default STATUS_TIMEOUT_MS). */
  statusTimeoutMs?: number;
  /** Use an adapter's one-call `statusMany` where it has one (default true); false asks each entry on its own. */
  batchStatus?: boolean;
}

function ctxParts(deps: ManageDeps) {
  const env = deps.env ?? process.env;
  const registry = deps.registry ?? new Registry();
  const log = (m: string) => deps.reporter?.log?.(m);
  const warn = (m: string) => deps.reporter?.warn?.(m);
  return { env, registry, log, warn };
}

/** A stopped entry and what its platform said. */
export type StoppedEntry = RegistryEntry & { already_gone?: boolean };

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
export async function stopService(job_id: string, deps: ManageDeps = {}): Promise<StoppedEntry> {
  const { env, registry, log, warn } = ctxParts(deps);
  const entry = await findService(job_id, { ...deps, registry });
  const adapter = await loadAdapter(entry.platform);
  let outcome: StopOutcome;
  try {
    outcome = await adapter.stop(entry, { env, log, warn, signal: deps.signal });
  } catch (e) {
    // Another stop finished first: its platform call succeeded and it removed the entry. The job is gone.
    if (!(await registry.get(entry.job_id))) return { ...entry, already_gone: true };
    throw e;
  }
  await registry.remove(entry.job_id);
  return outcome.already_gone ? { ...entry, already_gone: true } : entry;
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
  const { registry } = ctxParts(deps);
  const state = await registry.read();
  const entries = Object.values(state.entries).sort((a, b) => compareText(a.started_at, b.started_at));
  // Inconsistent entries (key ≠ job_id) are shown under their key and never asked about on a platform.
  for (const [key, other] of Object.entries(state.inconsistent ?? {})) {
    const raw = state.other[key] as RegistryEntry;
    entries.push({ ...raw, job_id: key, registry_job_id_field: other } as RegistryEntry);
  }
  return { services: await liveStates(entries, deps, state), latest: state.latest };
}

/**
 * Live state of each entry, at most `statusConcurrency` status calls at once, each limited to
 * `statusTimeoutMs` (then `unknown`, "status timed out", and the call is aborted through its signal). A failing call gives `unknown` with its reason.
 * A service that ended by itself with exit 0 (e.g. its idle timeout) is `complete` with that reason.
 */
export async function liveStates(entries: RegistryEntry[], deps: ManageDeps = {}, state?: RegistryState): Promise<ListedService[]> {
  const { env, log, warn } = ctxParts(deps);
  const ectx = { env, log, warn, signal: deps.signal };
  const timeoutMs = deps.statusTimeoutMs ?? STATUS_TIMEOUT_MS;
  const unknown = (err: unknown): JobState => ({ state: 'unknown', reason: (err as Error).message.split('\n')[0] });
  const timedOutState = (): JobState => ({ state: 'unknown', reason: `status timed out after ${Math.round(timeoutMs / 1000)}s` });
  /** One status call, aborted (through its signal) after timeoutMs, when it resolves `onTimeout()`. */
  const timed = <T>(call: (signal: AbortSignal) => Promise<T>, onTimeout: () => T): Promise<T> => {
    const ac = new AbortController();
    const signal = deps.signal ? AbortSignal.any([deps.signal, ac.signal]) : ac.signal;
    return withTimeout(call(signal), timeoutMs, () => {
      ac.abort(new Error('status timed out'));
      return onTimeout();
    });
  };
  /** The state an entry has without asking its platform (inconsistent, unsafe id, stale start), if any. */
  const localState = (e: RegistryEntry): JobState | undefined => {
    if (typeof e.registry_job_id_field === 'string')
      return { state: 'unknown', native: 'inconsistent', reason: `registry key '${e.job_id}' holds job_id '${e.registry_job_id_field}'; not acted on` };
    if (state) {
      try {
        checkActionable(state, e.job_id);
      } catch (err) {
        return { state: 'unknown', native: 'unsafe-id', reason: (err as Error).message };
      }
    }
    if (isStaleStarting(e))
      return { state: 'unknown', native: 'stale', reason: `its start (pid ${e.starter_pid}) ended before the launch finished; its port is free again. Remove it with 'tao-infer stop ${e.job_id}'` };
    return undefined;
  };
  const live = new Map<RegistryEntry, JobState>();
  const fromPlatform = new Set<RegistryEntry>();
  const byPlatform = new Map<string, RegistryEntry[]>();
  for (const e of entries) {
    const l = localState(e);
    if (l) live.set(e, l);
    else byPlatform.set(e.platform, [...(byPlatform.get(e.platform) ?? []), e]);
  }
  const single: Array<{ e: RegistryEntry; adapter: PlatformAdapter }> = [];
  await Promise.all(
    [...byPlatform].map(async ([platform, list]) => {
      let adapter: PlatformAdapter;
      try {
        adapter = await loadAdapter(platform);
      } catch (err) {
        for (const e of list) live.set(e, unknown(err));
        return;
      }
      if (!adapter.statusMany || deps.batchStatus === false) {
        for (const e of list) single.push({ e, adapter });
        return;
      }
      // One call for all entries of the platform (local-docker: one docker inspect).
      try {
        const states = await timed((signal) => adapter.statusMany!(list, { ...ectx, signal }), () => list.map(timedOutState));
        list.forEach((e, i) => (live.set(e, states[i] ?? unknown(new Error('no state returned'))), fromPlatform.add(e)));
      } catch (err) {
        for (const e of list) live.set(e, unknown(err));
      }
    }),
  );
  await mapLimit(single, deps.statusConcurrency ?? STATUS_CONCURRENCY, async ({ e, adapter }) => {
    try {
      live.set(e, await timed((signal) => adapter.status(e, { ...ectx, signal }), timedOutState));
      fromPlatform.add(e);
    } catch (err) {
      live.set(e, unknown(err));
    }
  });
  return entries.map((e): ListedService => {
    let l = live.get(e)!;
    if (fromPlatform.has(e) && e.state === 'starting' && (l.state === 'unknown' || l.state === 'gone')) l = { ...l, state: 'pending', native: 'starting' };
    if (l.state === 'complete' && !l.reason) l = { ...l, reason: 'the service ended by itself with exit 0 (e.g. its idle timeout)' };
    const ls = liveState(l);
    return { ...e, state: ls.state, live: ls };
  });
}

/** What `prune` did. */
export interface PruneResult {
  /** Entries removed (or, with dry_run, that would be), with the live state that made them removable. */
  removed: Array<{ job_id: string; network_arch: string; platform: string; state: string; reason?: string }>;
  /** Entries kept because they run, pend or could not be asked (`unknown`). */
  kept: Array<{ job_id: string; state: string }>;
  /** Removable entries whose platform cleanup failed (kept in the registry). */
  failed: Array<{ job_id: string; error: string }>;
  dry_run: boolean;
}

/**
 * Remove registry entries whose live state is `gone` or ended (`complete`, `error`, `canceled`): the
 * platform object is removed too (the routed `stop`: docker rm, k8s delete, ...; so `discover` does not
 * bring it back) and its local forwarder ended. Entries in `unknown` are never removed. With `dryRun`,
 * only lists. Never throws for one entry: failures are reported in `failed`.
 */
export async function pruneServices(opts: { dryRun?: boolean } = {}, deps: ManageDeps = {}): Promise<PruneResult> {
  const { env, registry, log, warn } = ctxParts(deps);
  const state = await registry.read();
  const entries = Object.values(state.entries);
  const listed = await liveStates(entries, deps, state);
  const out: PruneResult = { removed: [], kept: [], failed: [], dry_run: Boolean(opts.dryRun) };
  for (const [i, s] of listed.entries()) {
    const entry = entries[i]!;
    // --max-duration on a platform without a run-time limit: the expiry is enforced here (descriptor maxDuration).
    const expired =
      typeof entry.expires_at === 'string' && Date.parse(entry.expires_at) <= Date.now() && (PLATFORM_NAMES as readonly string[]).includes(entry.platform) && descriptorOf(entry.platform).maxDuration.enforcedBy === 'prune' && s.live.state !== 'unknown';
    if (expired) s.live = { ...s.live, reason: `expired at ${entry.expires_at} (--max-duration)` };
    if (!expired && !ENDED_STATES.includes(s.live.state)) {
      out.kept.push({ job_id: s.job_id, state: s.live.state });
      continue;
    }
    const item = { job_id: s.job_id, network_arch: s.network_arch, platform: s.platform, state: s.live.state, ...(s.live.reason ? { reason: s.live.reason } : {}) };
    if (opts.dryRun) {
      out.removed.push(item);
      continue;
    }
    try {
      await (await loadAdapter(entry.platform)).stop(entry, { env, log, warn, signal: deps.signal });
      await registry.remove(entry.job_id);
      out.removed.push(item);
    } catch (err) {
      out.failed.push({ job_id: entry.job_id, error: (err as Error).message.split('\n')[0]! });
    }
  }
  return out;
}

/** What `discover` found. */
export interface DiscoverResult {
  /** Entries added to the registry (forwarders started where the platform needs one). */
  added: Array<RegistryEntry & { live: JobState }>;
  /** Services found that the registry already had (the registry entry is kept as it is). */
  already_known: Array<{ job_id: string; platform: string }>;
  /** Platforms that could not be asked, and found services whose forwarder could not be started. */
  not_reachable: Array<{ platform: string; job_id?: string; reason: string }>;
}

/**
 * Find the services tao-infer launched on `platforms` (default: every platform that can discover),
 * each asked with its options (`options[platform]`), and merge them into the registry under its lock:
 * an entry already present is never overwritten. Added entries that are reached through a local
 * forwarder get a local port (contract §5 port rule) and their forwarder started, so `host_url` works.
 * A platform that cannot be asked (no credentials, no daemon, timeout) is listed in `not_reachable`.
 */
export async function discoverServices(
  opts: { platforms?: string[]; options?: Record<string, Record<string, unknown>> } = {},
  deps: ManageDeps = {},
): Promise<DiscoverResult> {
  const { env, registry, log, warn } = ctxParts(deps);
  const range = portRange(env);
  const names = opts.platforms?.length ? [...new Set(opts.platforms.map((p) => descriptorOf(p).name))] : [...PLATFORM_NAMES];
  const result: DiscoverResult = { added: [], already_known: [], not_reachable: [] };
  const found: Array<{ platform: string; items: DiscoveredService[] }> = [];
  await Promise.all(
    names.map(async (platform) => {
      const adapter = await loadAdapter(platform);
      if (!adapter.discover) {
        result.not_reachable.push({ platform, reason: `${platform} cannot list its services` });
        return;
      }
      try {
        const ctx = { env, log, warn, signal: deps.signal, options: opts.options?.[platform] ?? {} };
        const items = await withTimeout(adapter.discover(ctx), DISCOVER_TIMEOUT_MS, () => {
          throw new Error(`no answer within ${DISCOVER_TIMEOUT_MS / 1000}s`);
        });
        found.push({ platform, items });
      } catch (err) {
        // Platform errors often start with the platform's name already.
        result.not_reachable.push({ platform, reason: (err as Error).message.split('\n')[0]!.replace(new RegExp(`^${platform}: `), '') });
      }
    }),
  );
  const added: DiscoveredService[] = [];
  await registry.mutate(async (s) => {
    for (const { platform, items } of found) {
      for (const d of items) {
        if (s.entries[d.entry.job_id]) {
          result.already_known.push({ job_id: d.entry.job_id, platform });
          continue;
        }
        const entry: RegistryEntry = { ...d.entry };
        delete entry.forwarder_pid;
        if (d.localPortField && d.live.state === 'running') {
          entry[d.localPortField] = await reservePort(s, { scope: { kind: 'local' }, job_id: entry.job_id, range });
          entry.host_url = `http://localhost:${entry[d.localPortField]}`;
        }
        s.entries[entry.job_id] = entry;
        if (!s.latest || (s.entries[s.latest]?.started_at ?? '') < entry.started_at) s.latest = entry.job_id;
        added.push({ ...d, entry });
      }
    }
  });
  for (const d of added) {
    let entry = d.entry;
    if (d.localPortField && d.live.state === 'running') {
      try {
        const adapter = await loadAdapter(entry.platform);
        const fields = await adapter.restartForwarder(entry, { env, log, warn, signal: deps.signal });
        entry = (await registry.update(entry.job_id, fields)) ?? { ...entry, ...fields };
      } catch (err) {
        result.not_reachable.push({ platform: entry.platform, job_id: entry.job_id, reason: `forwarder not started: ${(err as Error).message.split('\n')[0]}` });
      }
    }
    result.added.push({ ...entry, live: d.live });
  }
  return result;
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

