/**
 * The gateway's members and how a `model` name picks one (issue 12, points 1–3).
 *
 * Members are the registry entries that have a host_url and are not `starting` (contract §5), each with
 * a health state from the background prober and passive ejection: `ready`, `loading` (202 / 503
 * model_not_ready), `unknown` (not probed yet), `down` (connection refused or reset) and `failed`
 * (503 initialization_error / model_load_error). `down` and `failed` members are never picked and not listed.
 *
 * A model name is, in this order: a job_id, a network_arch (the pool of its members), or a unique job_id
 * prefix of at least 4 characters. In a pool the `ready` members come first (else `loading`/`unknown`
 * ones), the one with the fewest requests in flight wins, ties broken round-robin.
 */
import type { RegistryState } from '../registry/store.js';
import { MIN_JOB_ID_PREFIX } from '../service/routing.js';
import type { RegistryEntry } from '../types.js';

export type Health = 'unknown' | 'ready' | 'loading' | 'down' | 'failed';

export interface Member {
  job_id: string;
  entry: RegistryEntry;
  health: Health;
  /** Last readiness or failure detail (error.type, connection error code). */
  detail?: string;
  inFlight: number;
}

export type Target = { kind: 'job'; member: Member } | { kind: 'arch'; network_arch: string };

export type Resolution = Target | { kind: 'ambiguous'; candidates: string[] } | { kind: 'none' };


/** Whether a member may receive requests (down and failed members may not). */
export const routable = (m: Member): boolean => m.health !== 'down' && m.health !== 'failed';

export class Pool {
  readonly members = new Map<string, Member>();
  private readonly rr = new Map<string, number>();

  /**
   * Replace the member set with the registry's entries. Known members keep their health and in-flight
   * count unless their host_url changed. Returns the job_ids added (to probe at once) and removed.
   */
  sync(state: RegistryState): { added: string[]; removed: string[] } {
    const added: string[] = [];
    const removed: string[] = [];
    const next = new Set<string>();
    for (const e of Object.values(state.entries)) {
      if (!e.host_url || e.state === 'starting') continue;
      next.add(e.job_id);
      const m = this.members.get(e.job_id);
      if (!m) {
        this.members.set(e.job_id, { job_id: e.job_id, entry: e, health: 'unknown', inFlight: 0 });
        added.push(e.job_id);
      } else {
        if (m.entry.host_url !== e.host_url || m.entry.auth_env !== e.auth_env) {
          m.health = 'unknown';
          delete m.detail;
          added.push(e.job_id);
        }
        m.entry = e;
      }
    }
    for (const id of [...this.members.keys()])
      if (!next.has(id)) {
        this.members.delete(id);
        removed.push(id);
      }
    return { added, removed };
  }

  /** network_arch values with at least one member. */
  archs(): string[] {
    return [...new Set([...this.members.values()].map((m) => m.entry.network_arch))].sort();
  }

  /** Resolve a request's model name (job_id, network_arch or unique job_id prefix). */
  resolve(model: string): Resolution {
    const exact = this.members.get(model);
    if (exact) return { kind: 'job', member: exact };
    if ([...this.members.values()].some((m) => m.entry.network_arch === model)) return { kind: 'arch', network_arch: model };
    if (model.length < MIN_JOB_ID_PREFIX) return { kind: 'none' };
    const hits = [...this.members.keys()].filter((id) => id.startsWith(model));
    if (hits.length === 1) return { kind: 'job', member: this.members.get(hits[0]!)! };
    if (hits.length > 1) return { kind: 'ambiguous', candidates: hits.sort() };
    return { kind: 'none' };
  }

  /**
   * Pick a member for a target, skipping `exclude`. A job target gives its member unless excluded or
   * failed. Undefined when nothing is left.
   */
  pick(target: Target, exclude: ReadonlySet<string>): Member | undefined {
    if (target.kind === 'job') {
      const m = this.members.get(target.member.job_id) ?? target.member;
      return exclude.has(m.job_id) || m.health === 'failed' ? undefined : m;
    }
    const all = [...this.members.values()]
      .filter((m) => m.entry.network_arch === target.network_arch && routable(m) && !exclude.has(m.job_id))
      .sort((a, b) => (a.job_id < b.job_id ? -1 : 1));
    const ready = all.filter((m) => m.health === 'ready');
    const tier = ready.length ? ready : all;
    if (!tier.length) return undefined;
    const least = Math.min(...tier.map((m) => m.inFlight));
    const start = this.rr.get(target.network_arch) ?? 0;
    this.rr.set(target.network_arch, start + 1);
    for (let i = 0; i < tier.length; i++) {
      const m = tier[(start + i) % tier.length]!;
      if (m.inFlight === least) return m;
    }
    return undefined;
  }

  /** Members of a target whatever their health (for error messages). */
  membersOf(target: Target): Member[] {
    if (target.kind === 'job') return [target.member];
    return [...this.members.values()].filter((m) => m.entry.network_arch === target.network_arch);
  }
}
