/**
 * Managing running services: stop, list with live state, logs, latest. Kept apart from start/request
 * so that `ls`, `stop` and `logs` never load the reference data, zod or yaml.
 */
import { JobNotFoundError } from './errors.js';
import { descriptorOf, holdsLocalPort, loadAdapter, PLATFORM_NAMES } from './platforms/index.js';
import { pickPort } from './registry/ports.js';
import { Registry, repairLatest } from './registry/store.js';
import { ENDED_STATES, type DiscoveredService, type JobState, type RegistryEntry } from './types.js';
import { mapLimit, withTimeout } from './util/pool.js';

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
 * Stop a service on its platform and remove it from the registry (contract §5: `latest` repaired).
 * Idempotent: a job whose platform object is already gone counts as stopped (`already_gone: true`); two
 * concurrent stops that both found the entry both succeed (the platform stop is idempotent and removing an
 * entry that is already removed is a no-op). A stop that starts after the entry was removed gets JobNotFoundError.
 * @throws JobNotFoundError, PlatformError (registry entry kept so the stop can be retried)
 */
export async function stopService(job_id: string, deps: ManageDeps = {}): Promise<StoppedEntry> {
  const { env, registry, log, warn } = ctxParts(deps);
  const entry = await registry.get(job_id);
  if (!entry) throw new JobNotFoundError(job_id);
  const adapter = await loadAdapter(entry.platform);
  const outcome = await adapter.stop(entry, { env, log, warn, signal: deps.signal });
  await registry.remove(job_id);
  return outcome.already_gone ? { ...entry, already_gone: true } : entry;
}

export interface ListedService extends RegistryEntry {
  live: JobState;
}

/**
 * All registry entries with their live state from the platform (adapters loaded only for the
 * platforms present). A platform that cannot be asked gives state `unknown` with the reason.
 */
export async function listServices(deps: ManageDeps = {}): Promise<{ services: ListedService[]; latest?: string }> {
  const { registry } = ctxParts(deps);
  const state = await registry.read();
  const entries = Object.values(state.entries).sort((a, b) => a.started_at.localeCompare(b.started_at));
  return { services: await liveStates(entries, deps), latest: state.latest };
}

/**
 * Live state of each entry, at most `statusConcurrency` status calls at once, each limited to
 * `statusTimeoutMs` (then `unknown`, "status timed out", and the call is aborted through its signal). A failing call gives `unknown` with its reason.
 * A service that ended by itself with exit 0 (e.g. its idle timeout) is `complete` with that reason.
 */
export async function liveStates(entries: RegistryEntry[], deps: ManageDeps = {}): Promise<ListedService[]> {
  const { env, log, warn } = ctxParts(deps);
  const ectx = { env, log, warn, signal: deps.signal };
  const timeoutMs = deps.statusTimeoutMs ?? STATUS_TIMEOUT_MS;
  return mapLimit(entries, deps.statusConcurrency ?? STATUS_CONCURRENCY, async (e): Promise<ListedService> => {
    try {
      const adapter = await loadAdapter(e.platform);
      // On timeout the call is aborted (adapters pass the signal to their child processes / requests).
      const ac = new AbortController();
      const signal = deps.signal ? AbortSignal.any([deps.signal, ac.signal]) : ac.signal;
      const live = await withTimeout(adapter.status(e, { ...ectx, signal }), timeoutMs, (): JobState => {
        ac.abort(new Error('status timed out'));
        return { state: 'unknown', reason: `status timed out after ${Math.round(timeoutMs / 1000)}s` };
      });
      if (e.state === 'starting' && (live.state === 'unknown' || live.state === 'gone')) return { ...e, live: { ...live, state: 'pending', native: 'starting' } };
      if (live.state === 'complete' && !live.reason) return { ...e, live: { ...live, reason: 'the service ended by itself with exit 0 (e.g. its idle timeout)' } };
      return { ...e, live };
    } catch (err) {
      return { ...e, live: { state: 'unknown', reason: (err as Error).message.split('\n')[0] } };
    }
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
  const listed = await liveStates(Object.values((await registry.read()).entries), deps);
  const out: PruneResult = { removed: [], kept: [], failed: [], dry_run: Boolean(opts.dryRun) };
  for (const s of listed) {
    if (!ENDED_STATES.includes(s.live.state)) {
      out.kept.push({ job_id: s.job_id, state: s.live.state });
      continue;
    }
    const item = { job_id: s.job_id, network_arch: s.network_arch, platform: s.platform, state: s.live.state, ...(s.live.reason ? { reason: s.live.reason } : {}) };
    if (opts.dryRun) {
      out.removed.push(item);
      continue;
    }
    const { live: _live, ...entry } = s;
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
          entry[d.localPortField] = await pickPort(s, { holds: holdsLocalPort, checkBound: true, bindAddress: '127.0.0.1' });
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

/** Stream logs of a service. @throws JobNotFoundError */
export async function* serviceLogs(job_id: string, opts: { follow?: boolean; tail?: number }, deps: ManageDeps = {}): AsyncIterable<string> {
  const { env, registry, log, warn } = ctxParts(deps);
  const entry = await registry.get(job_id);
  if (!entry) throw new JobNotFoundError(job_id);
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

