/**
 * Platform name → lazily imported adapter and cheap option declarations. A command that does not use
 * a platform never imports its module (and so never loads its SDK).
 */
import { InvalidInputError } from '../errors.js';
import { PLATFORM_NAMES, type PlatformAdapter, type PlatformName, type PlatformOptionSpec } from '../types.js';
import { options as localDockerOptions } from './local-docker/options.js';
import { options as brevOptions } from './brev/options.js';
import { options as leptonOptions } from './lepton/options.js';
import { options as slurmOptions } from './slurm/options.js';
import { options as kubernetesOptions } from './kubernetes/options.js';

const loaders: Record<PlatformName, () => Promise<{ createAdapter(): PlatformAdapter }>> = {
  'local-docker': () => import('./local-docker/adapter.js'),
  brev: () => import('./brev/adapter.js'),
  lepton: () => import('./lepton/adapter.js'),
  slurm: () => import('./slurm/adapter.js'),
  kubernetes: () => import('./kubernetes/adapter.js'),
};

/** Start options per platform (flags, env fallbacks, defaults). */
export const PLATFORM_OPTIONS: Record<PlatformName, PlatformOptionSpec[]> = {
  'local-docker': localDockerOptions,
  brev: brevOptions,
  lepton: leptonOptions,
  slurm: slurmOptions,
  kubernetes: kubernetesOptions,
};

/** @throws InvalidInputError for an unknown platform name. */
export function checkPlatform(name: string): PlatformName {
  if ((PLATFORM_NAMES as readonly string[]).includes(name)) return name as PlatformName;
  throw new InvalidInputError('--platform', `unknown platform '${name}'`, { hint: `Use one of: ${PLATFORM_NAMES.join(', ')}` });
}

const cache = new Map<PlatformName, PlatformAdapter>();

/** Import (once) and return the adapter for `name`. */
export async function loadAdapter(name: string): Promise<PlatformAdapter> {
  const p = checkPlatform(name);
  let a = cache.get(p);
  if (!a) {
    a = (await loaders[p]()).createAdapter();
    cache.set(p, a);
  }
  return a;
}
