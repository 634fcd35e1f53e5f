/**
 * Which service receives a request (contract §7 routing, spec §6.0):
 * explicit job_id → must exist; a network_arch → one match used, several → the user chooses (never
 * auto-picked), none → error; neither → exactly one entry used, several → the user chooses (never
 * `latest`), none → start one first.
 */
import { AmbiguousTargetError, InvalidInputError, JobNotFoundError, NoServiceError, type Candidate } from '../errors.js';
import { checkActionable, type RegistryState } from '../registry/store.js';
import type { RegistryEntry } from '../types.js';
import { compareText } from '../util/order.js';

/** Asked when several services match; returns the chosen job_id. Absent when not interactive. */
export type ChooseService = (message: string, candidates: Candidate[]) => Promise<string>;

function candidate(e: RegistryEntry): Candidate {
  return { job_id: e.job_id, network_arch: e.network_arch, host_url: e.host_url, started_at: e.started_at };
}

/** Shortest job_id prefix accepted in place of a full job_id (like docker and git short ids). */
export const MIN_JOB_ID_PREFIX = 4;

/** Characters of a job_id shown in the `ls` table (the full id is in `--json` and with `--wide`). */
export const SHORT_JOB_ID = 8;

/**
 * The one resolver of a job_id given by a person or a script (`stop`, `logs`, `tunnel`, `request --job`):
 * an exact job_id, or a unique prefix of at least MIN_JOB_ID_PREFIX characters. Lookups go through a Map
 * built from the entries' own keys, so names such as `__proto__` or `constructor` match nothing inherited.
 * @param entries the registry entries by job_id (RegistryState.entries)
 * @param given what the user typed (surrounding blanks ignored)
 * @param flag how the id was given, for messages (`<job_id>` or `--job`)
 * @throws InvalidInputError (shorter than 4 characters and not an exact id), JobNotFoundError (no match),
 *   AmbiguousTargetError (several job_ids start with the prefix; candidates listed) — all exit 2
 */
export function resolveJobId(entries: Record<string, RegistryEntry>, given: string, flag = '<job_id>'): RegistryEntry {
  const id = given.trim();
  const byId = new Map<string, RegistryEntry>(Object.entries(entries));
  const exact = byId.get(id);
  if (exact) return exact;
  if (id.length < MIN_JOB_ID_PREFIX)
    throw new InvalidInputError(flag, `'${id}' is not a job_id in the registry, and a job_id prefix needs at least ${MIN_JOB_ID_PREFIX} characters`, {
      hint: "Give the full job_id or its first 4+ characters ('tao-infer ls' shows the first 8).",
    });
  const matches = [...byId.values()].filter((e) => e.job_id.startsWith(id)).sort((a, b) => compareText(a.started_at, b.started_at));
  if (matches.length === 1) return matches[0]!;
  if (!matches.length) throw new JobNotFoundError(id);
  throw new AmbiguousTargetError(`job_id prefix '${id}' matches ${matches.length} services; give more characters`, matches.map(candidate), flag);
}

/**
 * Resolve the target entry.
 * @throws JobNotFoundError, NoServiceError, AmbiguousTargetError (several match and no `choose`)
 */
export async function resolveTarget(
  state: RegistryState,
  want: { job_id?: string; network_arch?: string },
  choose?: ChooseService,
): Promise<RegistryEntry> {
  const all = Object.values(state.entries).sort((a, b) => compareText(a.started_at, b.started_at));
  if (want.job_id) {
    checkActionable(state, want.job_id); // an inconsistent key or a '-' id is refused before any prefix match
    const e = resolveJobId(state.entries, want.job_id, '--job');
    checkActionable(state, e.job_id);
    if (want.network_arch && e.network_arch !== want.network_arch)
      throw new NoServiceError(`service ${e.job_id} runs ${e.network_arch}, not ${want.network_arch}`, 'Drop --arch, or pass the job_id of a service of that arch.');
    return e;
  }
  const pool = want.network_arch ? all.filter((e) => e.network_arch === want.network_arch) : all;
  if (pool.length === 1) return pool[0]!;
  if (pool.length === 0) {
    if (want.network_arch)
      throw new NoServiceError(`no ${want.network_arch} service is running`, `Start one: tao-infer start --arch ${want.network_arch} --model <model_path>`);
    throw new NoServiceError('no inference service is running');
  }
  const message = want.network_arch
    ? `${pool.length} ${want.network_arch} services are running; choose one`
    : `${pool.length} services are running; choose one (latest is not picked silently)`;
  if (!choose) throw new AmbiguousTargetError(message, pool.map(candidate));
  const picked = await choose(message, pool.map(candidate));
  const e = Object.hasOwn(state.entries, picked) ? state.entries[picked] : undefined;
  if (!e) throw new JobNotFoundError(picked);
  return e;
}
