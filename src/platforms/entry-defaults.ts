/**
 * Environment defaults for registry entries that lack tao-infer's platform data (contract §5: entries written
 * by NVIDIA's published skill carry only job_id, platform, platform_job_id, network_arch, host_url, host_port,
 * slurm_node, started_at). Each platform descriptor declares, per `platform_data` key, the documented env
 * vars to fall back to (`entryDefaults`); the routing (src/platforms/routing.ts) applies them once, before
 * status/logs/stop/tunnel, and says which default was used.
 */
import type { RegistryEntry } from '../types.js';

/** One `platform_data` key an entry may lack, and where its value comes from then. */
export interface EntryDefault {
  /** The key in `RegistryEntry.platform_data` (e.g. slurm `ssh_host`, brev `instance`). */
  key: string;
  /** Env vars consulted in order; the first non-empty one is used. */
  env: string[];
  /** Used when none of `env` is set (e.g. kubernetes namespace `default`). */
  fallback?: string;
  /** What the value is, for the note (e.g. `login node`). */
  what: string;
}

/**
 * Fill the `platform_data` keys an entry lacks from the declared env defaults.
 * @returns the entry to hand to the adapter (a copy when something was filled, else `entry` itself) and a
 *   note naming each default used, e.g. `login node from $SLURM_HOSTNAME (the entry does not record it)`.
 */
export function applyEntryDefaults(entry: RegistryEntry, defaults: readonly EntryDefault[] | undefined, env: NodeJS.ProcessEnv): { entry: RegistryEntry; note?: string } {
  if (!defaults?.length) return { entry };
  const pd: Record<string, unknown> = entry.platform_data && typeof entry.platform_data === 'object' ? entry.platform_data : {};
  const filled: Record<string, unknown> = {};
  const used: string[] = [];
  for (const d of defaults) {
    const have = pd[d.key];
    if (typeof have === 'string' ? have !== '' : have !== undefined && have !== null) continue;
    const name = d.env.find((n) => (env[n] ?? '').trim() !== '');
    if (name) {
      filled[d.key] = env[name]!.trim();
      used.push(`${d.what} from $${name}`);
    } else if (d.fallback !== undefined) {
      filled[d.key] = d.fallback;
      used.push(`${d.what} '${d.fallback}' (${d.env.map((n) => `$${n}`).join(', ')} unset)`);
    }
  }
  if (!used.length) return { entry };
  return {
    entry: { ...entry, platform_data: { ...pd, ...filled } },
    note: `${used.join(', ')}: the entry does not record ${used.length === 1 ? 'it' : 'them'}`,
  };
}
