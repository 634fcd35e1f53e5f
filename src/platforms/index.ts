/**
 * The platforms tao-infer knows: a list of cheap descriptors (src/platforms/descriptor.ts). Everything
 * above the adapters learns about platforms from this list only (names, flags, capabilities); adding a
 * platform = one folder with its descriptor + one line here + its test file. A command that does not use
 * a platform never imports its adapter (and so never loads its SDK).
 */
import { InvalidInputError } from '../errors.js';
import type { PlatformOptionSpec } from '../types.js';
import { descriptor as localDocker } from './local-docker/descriptor.js';
import { descriptor as brev } from './brev/descriptor.js';
import { descriptor as lepton } from './lepton/descriptor.js';
import { descriptor as slurm } from './slurm/descriptor.js';
import { descriptor as kubernetes } from './kubernetes/descriptor.js';
import type { PlatformDescriptor } from './descriptor.js';
import type { Platform } from './routing.js';

/** Every platform, the default (for `start --platform`) first. */
export const PLATFORMS = [localDocker, brev, lepton, slurm, kubernetes] as const;

export type PlatformName = (typeof PLATFORMS)[number]['name'];
export const PLATFORM_NAMES: readonly PlatformName[] = PLATFORMS.map((d) => d.name);
/** `start --platform` default. */
export const DEFAULT_PLATFORM: PlatformName = PLATFORMS[0].name;

/** Start options per platform (flags, env fallbacks, defaults). */
export const PLATFORM_OPTIONS = Object.fromEntries(PLATFORMS.map((d) => [d.name, d.options.start])) as Record<PlatformName, PlatformOptionSpec[]>;

/** @throws InvalidInputError for an unknown platform name. */
export function checkPlatform(name: string): PlatformName {
  if ((PLATFORM_NAMES as readonly string[]).includes(name)) return name as PlatformName;
  throw new InvalidInputError('--platform', `unknown platform '${name}'`, { hint: `Use one of: ${PLATFORM_NAMES.join(', ')}` });
}

/** The descriptor of `name`. @throws InvalidInputError for an unknown platform name. */
export function descriptorOf(name: string): PlatformDescriptor<PlatformName> {
  const p = checkPlatform(name);
  return PLATFORMS.find((d) => d.name === p)!;
}

const cache = new Map<PlatformName, Platform>();

/**
 * Import (once) and return the adapter for `name`, routed (src/platforms/routing.ts): forwarder stop,
 * status note and restart come from the generic forwarder code.
 * @throws InvalidInputError for an unknown platform name.
 */
export async function loadAdapter(name: string): Promise<Platform> {
  const d = descriptorOf(name);
  let a = cache.get(d.name);
  if (!a) {
    const [{ route }, adapter] = await Promise.all([import('./routing.js'), d.load()]);
    a = route(adapter, d.entryDefaults);
    cache.set(d.name, a);
  }
  return a;
}
