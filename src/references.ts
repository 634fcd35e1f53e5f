/**
 * The reference data read at runtime (contract §1–§7): `references/service.yaml`, `references/request.yaml`,
 * `references/{network_arch}.config.json` and the root `versions.yaml`, each checked against a zod schema
 * (./references/schema.ts); a broken file is a ConfigError naming the file and the field.
 *
 * Validation runs once per version of these files: the result is cached per user keyed by the files' hashes
 * (./references/cache.ts), so an ordinary run reads JSON and never loads zod or yaml.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { ConfigError } from './errors.js';
import { findProjectRoot } from './util/root.js';
import { readCache, referencesKey, writeCache } from './references/cache.js';
import { archConfigFiles, validateReferences, type ArchConfig, type ReferenceData, type RequestYaml, type ServiceYaml, type VersionsYaml } from './references/schema.js';

export type { ArchConfig, ArchConstraints, ContainerCommand, ReferenceData, RequestYaml, SamplingFieldSpec, ServiceYaml, VersionsYaml } from './references/schema.js';
export { loadValidated, referenceSchemas } from './references/schema.js';

/** Project root (see util/root.ts). @throws ConfigError when the package has no references/ folder. */
export function projectRoot(): string {
  const root = findProjectRoot();
  if (root) return root;
  throw new ConfigError('references/service.yaml', ['not found above ' + fileURLToPath(import.meta.url)], {
    hint: 'Reinstall tao-infer: its references/ folder is missing.',
  });
}

/** All reference data, loaded once per process (lazily). */
export interface References {
  root: string;
  service: ServiceYaml;
  request: RequestYaml;
  versions: VersionsYaml;
  /**
   * `{network_arch}.config.json`, or undefined when the file is missing (→ fallback key, contract §2.4).
   * @throws ConfigError when that file is broken
   */
  archConfig(network_arch: string): ArchConfig | undefined;
}

let cached: References | undefined;

/**
 * Every env var name service.yaml calls a secret: `secrets_handling.secret_env_vars` (the service's) followed by
 * `secrets_handling.platform_credentials` (NGC_KEY, BREV_API_TOKEN, LEPTON_WORKSPACE_TOKEN). Source: contract §4.
 */
export function secretNames(refs: References): string[] {
  return [...refs.service.secrets_handling.secret_env_vars, ...refs.service.secrets_handling.platform_credentials];
}

function fromData(root: string, data: ReferenceData): References {
  return {
    root,
    service: data.service,
    request: data.request,
    versions: data.versions,
    archConfig(network_arch) {
      const name = `${network_arch.toLowerCase()}.config.json`;
      const c = Object.hasOwn(data.archConfigs, name) ? data.archConfigs[name] : undefined;
      if (!c) return undefined;
      if ('issues' in c) throw new ConfigError(join(root, 'references', name), c.issues);
      return c.config;
    },
  };
}

/**
 * Load references from `root` (default: the installed package root): from the per-user cache when the files
 * are unchanged since they were last validated, else validated (cross-file rule too: every valid arch has
 * request constraints) and then cached. Kept for the process; the cache lives under `$XDG_CACHE_HOME/tao-infer`.
 * @throws ConfigError (a broken file is never cached, so it is reported on every run until fixed)
 */
export function loadReferences(root = projectRoot()): References {
  if (cached && cached.root === root) return cached;
  let key: string | undefined;
  try {
    key = referencesKey(root, archConfigFiles(root));
  } catch {
    // A file cannot be read: validation below reports which.
  }
  let data = key ? readCache(key) : undefined;
  if (!data) {
    data = validateReferences(root);
    if (key) writeCache(key, data);
  }
  cached = fromData(root, data);
  return cached;
}
