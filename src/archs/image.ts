/**
 * Container image resolution (contract §2):
 * `{network_arch}.config.json` → `api_params.image` key (fallback `COSMOS_RL`) → `IMAGE_<KEY>` env override
 * or `docker_image_defaults.mapping[KEY]` → dotted key into `versions.yaml` `images.<group>.<name>`;
 * a value containing `/` is an absolute image URI and passes through unchanged.
 */
import { join } from 'node:path';
import { ConfigError, UnsupportedArchError } from '../errors.js';
import type { References } from '../references.js';

export interface ResolvedImage {
  /** The image URI to run. */
  image: string;
  /** The api_params.image key used (e.g. `COSMOS_RL`). */
  key: string;
  /** Where the value came from: `env:IMAGE_COSMOS_RL`, `versions.yaml:tao_toolkit.cosmos_rl`, or `mapping`. */
  source: string;
}

/** Throws UnsupportedArchError unless `network_arch` is listed and has a container command. */
export function assertSupportedArch(refs: References, network_arch: string): void {
  const valid = refs.service.valid_network_arch_config_basenames.filter((a) => refs.service.container_commands[a]);
  if (!valid.includes(network_arch)) throw new UnsupportedArchError(network_arch, valid);
}

/** Supported archs: listed as valid and having a container_commands entry. */
export function supportedArchs(refs: References): string[] {
  return refs.service.valid_network_arch_config_basenames.filter((a) => refs.service.container_commands[a]);
}

/**
 * Resolve the image for `network_arch`.
 * @param env environment consulted for `IMAGE_<KEY>` overrides (default process.env)
 * @throws UnsupportedArchError, ConfigError (unknown key, or a dotted key that does not resolve in versions.yaml)
 */
export function resolveImage(refs: References, network_arch: string, env: NodeJS.ProcessEnv = process.env): ResolvedImage {
  assertSupportedArch(refs, network_arch);
  const cfg = refs.archConfig(network_arch);
  const key = cfg?.api_params?.image?.trim() || refs.service.docker_image_defaults.fallback_key;
  const override = env[`IMAGE_${key}`]?.trim();
  const servicePath = join(refs.root, 'references', 'service.yaml');
  let value: string;
  let source: string;
  if (override) {
    value = override;
    source = `env:IMAGE_${key}`;
  } else {
    const mapped = refs.service.docker_image_defaults.mapping[key];
    if (!mapped)
      throw new ConfigError(servicePath, [`docker_image_defaults.mapping.${key}: missing (used by ${network_arch}.config.json)`], {
        hint: `Add ${key} to the mapping, or set IMAGE_${key} to an image URI.`,
      });
    value = mapped;
    source = 'mapping';
  }
  if (value.includes('/')) {
    // An image reference: no whitespace or control characters, and it must not read as a flag.
    if (/[\s\u0000-\u001f]/.test(value) || value.startsWith('-'))
      throw new ConfigError(source.startsWith('env:') ? source.slice(4) : servicePath, [`'${value}' is not a valid image reference`], {
        hint: 'Use a reference such as nvcr.io/nvidia/tao/tao-toolkit:<tag>.',
      });
    return { image: value, key, source };
  }
  const parts = value.split('.');
  const versionsPath = join(refs.root, 'versions.yaml');
  if (parts.length !== 2 || !parts[0] || !parts[1])
    throw new ConfigError(versionsPath, [`'${value}' (for ${key}) is neither an image URI nor a <group>.<name> key`], {
      hint: `Set IMAGE_${key} to a full image URI such as nvcr.io/nvidia/tao/tao-toolkit:<tag>.`,
    });
  const [group, name] = parts as [string, string];
  const image = refs.versions.images[group]?.[name];
  if (!image)
    throw new ConfigError(versionsPath, [`images.${group}.${name}: not found (dotted key '${value}' for ${key})`], {
      hint: `Add images.${group}.${name} to versions.yaml, or set IMAGE_${key} to a full image URI.`,
    });
  return { image, key, source: `versions.yaml:${value}` };
}
