/**
 * The zod schemas of the reference data (contract §1–§7) and the validation of one package root:
 * `references/service.yaml`, `references/request.yaml`, the root `versions.yaml` and every
 * `references/{network_arch}.config.json`. A broken file is a ConfigError naming the file and the field.
 *
 * zod and yaml are loaded with a synchronous `require` on the first validation only: a run whose reference
 * data is already validated (see ./cache.ts) never loads them, which keeps CLI start-up short (issue 9).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Zod from 'zod';
import type * as Yaml from 'yaml';
import { ConfigError } from '../errors.js';

const requireCjs = createRequire(import.meta.url);

function build(z: typeof Zod.z) {
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
  const service = z.object({
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
  const samplingField = z.object({
    type: z.enum(['integer', 'number', 'string']),
    default: z.union([z.number(), z.string()]),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
  });
  const archConstraints = z.object({
    requires_media: z.boolean(),
    accepts_data_uris: z.boolean(),
    image_extensions: z.array(z.string().startsWith('.')),
    video_extensions: z.array(z.string().startsWith('.')),
    returns_video: z.boolean().optional(),
    sampling_fields: z.record(z.string(), samplingField),
    exclusive_fields: z.array(z.string()).optional(),
  });
  const request = z.object({
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
  const archConfig = z.object({
    api_params: z.object({ image: z.string().optional() }).partial().optional(),
    /** Host resources one service needs besides its GPUs (Slurm `--mem`, in sbatch's size syntax, and `--cpus-per-task`). */
    resources: z.object({ mem: z.string().regex(/^\d+[KMGT]?$/), cpus_per_task: z.number().int().positive() }).partial().optional(),
    spec_params: z
      .object({
        inference: z.object({ model_path: z.string().optional(), results_dir: z.string().optional() }).partial().optional(),
      })
      .partial()
      .optional(),
  });
  const versions = z.object({
    images: z.record(z.string(), z.record(z.string(), z.string().min(1))),
  });
  return { service, request, archConfig, versions, samplingField, archConstraints };
}

type Schemas = ReturnType<typeof build>;
let schemas: Schemas | undefined;

/** The schemas (built on first use; loads zod). */
export function referenceSchemas(): Schemas {
  return (schemas ??= build((requireCjs('zod') as typeof Zod).z));
}

export type ServiceYaml = Zod.z.infer<Schemas['service']>;
export type ContainerCommand = ServiceYaml['container_commands'][string];
export type SamplingFieldSpec = Zod.z.infer<Schemas['samplingField']>;
export type ArchConstraints = Zod.z.infer<Schemas['archConstraints']>;
export type RequestYaml = Zod.z.infer<Schemas['request']>;
export type ArchConfig = Zod.z.infer<Schemas['archConfig']>;
export type VersionsYaml = Zod.z.infer<Schemas['versions']>;

/** Everything validated from one package root: plain JSON, so it can be cached (./cache.ts). */
export interface ReferenceData {
  service: ServiceYaml;
  request: RequestYaml;
  versions: VersionsYaml;
  /**
   * Every `references/*.config.json`, by file name: the validated config, or the problems found (reported as a
   * ConfigError only when that arch is used, so one broken arch config does not stop the others).
   */
  archConfigs: Record<string, { config: ArchConfig } | { issues: string[] }>;
}

function formatIssues(err: Zod.z.ZodError): string[] {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
}

/** Read a YAML or JSON file and check it against `schema`; the problems found, or the data. */
function check<T>(file: string, schema: Zod.z.ZodType<T>): { data: T } | { issues: string[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return { issues: [`cannot read: ${(e as Error).message}`] };
  }
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : (requireCjs('yaml') as typeof Yaml).parse(text);
  } catch (e) {
    return { issues: [`does not parse: ${(e as Error).message.split('\n')[0]}`] };
  }
  const r = schema.safeParse(raw);
  return r.success ? { data: r.data } : { issues: formatIssues(r.error) };
}

/**
 * Read a YAML or JSON file and validate it.
 * @throws ConfigError naming the file and each failing field.
 */
export function loadValidated<T>(file: string, schema: Zod.z.ZodType<T>): T {
  const r = check(file, schema);
  if ('issues' in r) throw new ConfigError(file, r.issues);
  return r.data;
}

/** File names of the arch configs under `references/` (`*.config.json`). */
export function archConfigFiles(root: string): string[] {
  return readdirSync(join(root, 'references'))
    .filter((n) => n.endsWith('.config.json'))
    .sort();
}

/**
 * Validate all reference data under `root`. Cross-file rule: every valid arch has request constraints.
 * @throws ConfigError for service.yaml, request.yaml or versions.yaml (arch config problems are kept in the result)
 */
export function validateReferences(root: string): ReferenceData {
  const s = referenceSchemas();
  const service = loadValidated(join(root, 'references', 'service.yaml'), s.service);
  const requestPath = join(root, 'references', 'request.yaml');
  const request = loadValidated(requestPath, s.request);
  const versions = loadValidated(join(root, 'versions.yaml'), s.versions);
  for (const arch of service.valid_network_arch_config_basenames) {
    if (!request.network_arch_constraints[arch])
      throw new ConfigError(requestPath, [`network_arch_constraints.${arch}: missing for a valid network_arch`]);
  }
  const archConfigs: ReferenceData['archConfigs'] = {};
  for (const name of archConfigFiles(root)) {
    const r = check(join(root, 'references', name), s.archConfig);
    archConfigs[name] = 'issues' in r ? { issues: r.issues } : { config: r.data };
  }
  return { service, request, versions, archConfigs };
}
