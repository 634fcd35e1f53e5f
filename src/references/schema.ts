/**
 * Loads and validates the reference data read at runtime (contract §1–§7):
 * `references/service.yaml`, `references/request.yaml`, `references/{network_arch}.config.json`
 * and the root `versions.yaml`. Every file is checked against a zod schema on load; a broken file is
 * a ConfigError naming the file and the field.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { findProjectRoot } from './util/root.js';

/** Project root (see util/root.ts). @throws ConfigError when the package has no references/ folder. */
export function projectRoot(): string {
  const root = findProjectRoot();
  if (root) return root;
  throw new ConfigError('references/service.yaml', ['not found above ' + fileURLToPath(import.meta.url)], {
    hint: 'Reinstall tao-infer: its references/ folder is missing.',
  });
}

const optionalFlag = z.object({
  flag: z.string().startsWith('-'),
  type: z.enum(['integer', 'number', 'boolean', 'string']),
  default: z.union([z.number(), z.boolean(), z.string()]).optional(),
});

const taoJobCommand = z.object({
  shape: z.literal('tao_job'),
  executable: z.array(z.string().min(1)).min(1),
  optional_flags: z.record(z.string(), optionalFlag).optional(),
});
const cosmosPredictCommand = z.object({
  shape: z.literal('cosmos_predict'),
  executable: z.array(z.string().min(1)).min(1),
  output_dir_default: z.string().startsWith('/'),
  port_flag: z.array(z.string()).min(1),
  registered_model_keys: z.array(z.string().regex(/^[A-Za-z0-9._-]+$/)).min(1),
  optional_flags: z.record(z.string(), optionalFlag).optional(),
});

export const ServiceYamlSchema = z.object({
  valid_network_arch_config_basenames: z.array(z.string().min(1)).min(1),
  docker_image_defaults: z.object({
    fallback_key: z.string().min(1),
    mapping: z.record(z.string().regex(/^[A-Z0-9_]+$/, 'keys are upper-case IMAGE keys'), z.string().min(1)),
  }),
  container_commands: z.record(z.string(), z.discriminatedUnion('shape', [taoJobCommand, cosmosPredictCommand])),
  container_port: z.number().int().positive(),
  execution_backends: z.record(z.string(), z.string().min(1)),
  forbidden_env_vars: z.array(z.string()),
  model_path_protocols: z.object({ huggingface: z.string(), rejected_prefixes: z.array(z.string()) }),
  num_gpus: z.object({ default: z.number().int(), minimum: z.number().int() }),
  secrets_handling: z.object({
    secret_env_vars: z.array(z.string().min(1)).min(1),
    platform_credentials: z.array(z.string().min(1)),
    safe_env_vars: z.array(z.string().min(1)),
  }),
  readiness: z.object({ path: z.string().startsWith('/'), default_timeout_seconds: z.number().positive() }),
});
export type ServiceYaml = z.infer<typeof ServiceYamlSchema>;
export type ContainerCommand = ServiceYaml['container_commands'][string];

const samplingField = z.object({
  type: z.enum(['integer', 'number', 'string']),
  default: z.union([z.number(), z.string()]),
  minimum: z.number().optional(),
  maximum: z.number().optional(),
});
export type SamplingFieldSpec = z.infer<typeof samplingField>;

const archConstraints = z.object({
  requires_media: z.boolean(),
  accepts_data_uris: z.boolean(),
  image_extensions: z.array(z.string().startsWith('.')),
  video_extensions: z.array(z.string().startsWith('.')),
  returns_video: z.boolean().optional(),
  sampling_fields: z.record(z.string(), samplingField),
  exclusive_fields: z.array(z.string()).optional(),
});
export type ArchConstraints = z.infer<typeof archConstraints>;

export const RequestYamlSchema = z.object({
  endpoint: z.object({
    method: z.literal('POST'),
    path: z.string().startsWith('/'),
    content_type: z.string(),
    client_timeout_seconds: z.number().min(300),
  }),
  readiness: z.object({
    path: z.string().startsWith('/'),
    loading_types: z.array(z.string()),
    retry_types: z.array(z.string()),
    fatal_types: z.array(z.string()),
  }),
  chat_completions_request_body: z.object({
    sampling_fields: z.record(z.string(), samplingField),
    content_item_types: z.array(z.string()),
    media_url_schemes: z.array(z.string()),
    rejected_url_prefixes: z.array(z.string()),
  }),
  network_arch_constraints: z.record(z.string(), archConstraints),
  mime_types: z.record(z.string().startsWith('.'), z.string().includes('/')),
  container_response_shapes: z.record(z.string(), z.unknown()),
});
export type RequestYaml = z.infer<typeof RequestYamlSchema>;

export const ArchConfigSchema = z.object({
  api_params: z.object({ image: z.string().optional() }).partial().optional(),
  spec_params: z
    .object({
      inference: z.object({ model_path: z.string().optional(), results_dir: z.string().optional() }).partial().optional(),
    })
    .partial()
    .optional(),
});
export type ArchConfig = z.infer<typeof ArchConfigSchema>;

export const VersionsYamlSchema = z.object({
  images: z.record(z.string(), z.record(z.string(), z.string().min(1))),
});
export type VersionsYaml = z.infer<typeof VersionsYamlSchema>;

function formatIssues(err: z.ZodError): string[] {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
}

/**
 * Read a YAML or JSON file and validate it.
 * @throws ConfigError naming the file and each failing field.
 */
export function loadValidated<T>(file: string, schema: z.ZodType<T>): T {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [`cannot read: ${(e as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError(file, [`does not parse: ${(e as Error).message.split('\n')[0]}`]);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new ConfigError(file, formatIssues(r.error));
  return r.data;
}

/** All reference data, loaded once per process (lazily). */
export interface References {
  root: string;
  service: ServiceYaml;
  request: RequestYaml;
  versions: VersionsYaml;
  /** `{network_arch}.config.json`, or undefined when the file is missing (→ fallback key, contract §2.4). */
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

/**
 * Load references from `root` (default: the installed package root). Cross-file rules are checked too:
 * every valid arch has a container_commands entry and request constraints.
 * @throws ConfigError
 */
export function loadReferences(root = projectRoot()): References {
  if (cached && cached.root === root) return cached;
  const servicePath = join(root, 'references', 'service.yaml');
  const service = loadValidated(servicePath, ServiceYamlSchema);
  const requestPath = join(root, 'references', 'request.yaml');
  const request = loadValidated(requestPath, RequestYamlSchema);
  const versions = loadValidated(join(root, 'versions.yaml'), VersionsYamlSchema);
  for (const arch of service.valid_network_arch_config_basenames) {
    if (!request.network_arch_constraints[arch])
      throw new ConfigError(requestPath, [`network_arch_constraints.${arch}: missing for a valid network_arch`]);
  }
  const configs = new Map<string, ArchConfig | undefined>();
  const refs: References = {
    root,
    service,
    request,
    versions,
    archConfig(network_arch) {
      if (!configs.has(network_arch)) {
        const f = join(root, 'references', `${network_arch.toLowerCase()}.config.json`);
        configs.set(network_arch, existsSync(f) ? loadValidated(f, ArchConfigSchema) : undefined);
      }
      return configs.get(network_arch);
    },
  };
  cached = refs;
  return refs;
}
