/**
 * Which service receives a request (contract §7 routing, spec §6.0):
 * explicit job_id → must exist; a network_arch → one match used, several → the user chooses (never
 * auto-picked), none → error; neither → exactly one entry used, several → the user chooses (never
 * `latest`), none → start one first.
 */
import { AmbiguousTargetError, JobNotFoundError, NoServiceError, type Candidate } from '../errors.js';
import { checkActionable, type RegistryState } from '../registry/store.js';
import type { RegistryEntry } from '../types.js';

/** Asked when several services match; returns the chosen job_id. Absent when not interactive. */
export type ChooseService = (message: string, candidates: Candidate[]) => Promise<string>;

function candidate(e: RegistryEntry): Candidate {
  return { job_id: e.job_id, network_arch: e.network_arch, host_url: e.host_url, started_at: e.started_at };
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
  const all = Object.values(state.entries).sort((a, b) => a.started_at.localeCompare(b.started_at));
  if (want.job_id) {
    checkActionable(state, want.job_id);
    const e = Object.hasOwn(state.entries, want.job_id) ? state.entries[want.job_id] : undefined;
    if (!e) throw new JobNotFoundError(want.job_id);
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
