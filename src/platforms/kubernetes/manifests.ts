/**
 * Kubernetes manifests for one tao-infer service (contract §8 kubernetes): a per-job Secret holding
 * only the secret env vars that are set, a batch/v1 Job running `/bin/sh -c <inner_command>` with
 * `nvidia.com/gpu` limits, and a Service exposing port 8080. The shapes come from the templates in
 * `platforms/kubernetes/{job,service,secret}.yaml`; this module fills them. No Kubernetes client here
 * (types only), so it is cheap to import and unit-testable.
 */
import type { V1Job, V1Secret, V1Service } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ConfigError, InvalidInputError } from '../../errors.js';
import { projectRoot } from '../../references.js';
import { LABELS } from '../../labels.js';
import type { LaunchSpec } from '../../types.js';
import type { ExposeMode } from './options.js';
import { DEFAULT_GPU_TOLERATIONS, GPU_RESOURCE, INTERNAL_LB_ANNOTATIONS, type K8sOptions } from './settings.js';
import { isLabelKey, isLabelValue } from './names.js';

export { isDns1123Label, isDns1123Subdomain, isLabelValue } from './names.js';

export { DEFAULT_GPU_TOLERATIONS, GPU_RESOURCE, INTERNAL_LB_ANNOTATIONS, parseK8sOptions, parseSourceRanges, parseToleration, type K8sOptions, type Toleration } from './settings.js';

/** Label put on every object tao-infer creates (discovery: `kubectl get jobs -l app.kubernetes.io/managed-by=tao-infer`). */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'tao-infer';
/** Label selecting the pods of one service (also the Service selector). */
export const INSTANCE_LABEL = 'app.kubernetes.io/instance';
/** Label carrying the network_arch (sanitised to a label value). */
export const ARCH_LABEL = 'tao-infer.nvidia.com/network-arch';
/** Annotation carrying the expiry of `start --max-duration` (ISO-8601 UTC); the Job's activeDeadlineSeconds enforces it. */
export const EXPIRES_AT_ANNOTATION = 'tao-infer.nvidia.com/expires-at';

/** Annotation carrying the job_id verbatim (labels cannot hold every job_id). */
export const JOB_ID_ANNOTATION = 'tao-infer.nvidia.com/job-id';
/** Annotations carrying the network_arch, model_path and start time verbatim (discover rebuilds the entry from them). */
export const ARCH_ANNOTATION = 'tao-infer.nvidia.com/network-arch';
export const MODEL_PATH_ANNOTATION = 'tao-infer.nvidia.com/model-path';
export const STARTED_AT_ANNOTATION = 'tao-infer.nvidia.com/started-at';
/** Name of the container in the Job's pod template. */
export const CONTAINER_NAME = 'microservice';

/** Object names of one service. */
export interface K8sNames {
  /** batch/v1 Job name (= platform_job_id). DNS-1123 label starting with a letter, at most 63 characters. */
  job: string;
  /** Service name (same as the Job; a DNS-1035 label). */
  service: string;
  /** Secret name (`<job>-env`). */
  secret: string;
}

/**
 * Derive the object names from a job_id: `tao-<job_id>` lower-cased, characters outside [a-z0-9-]
 * turned into "-", at most 63 characters. When the job_id had to be changed (case included) or shortened, 8 hex
 * characters of its SHA-256 are appended so distinct job_ids keep distinct names.
 */
export function namesFor(job_id: string): K8sNames {
  const lowered = job_id.toLowerCase();
  const clean = lowered.replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '');
  let job = `tao-${clean}`.replace(/-$/, '');
  if (clean !== job_id || job.length > 63) {
    const hash = createHash('sha256').update(job_id).digest('hex').slice(0, 8);
    job = `${job.slice(0, 63 - 9).replace(/-+$/, '')}-${hash}`;
  }
  return { job, service: job, secret: `${job}-env` };
}

/** Make any string a valid label value (for the network_arch label). */
export function toLabelValue(s: string): string {
  if (isLabelValue(s)) return s;
  return s
    .replace(/[^A-Za-z0-9_.-]+/g, '-')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
}

/**
 * Docker `--shm-size` syntax (`16g`, `512m`, `1073741824`; units are powers of 1024) → Kubernetes quantity
 * (`16Gi`, `512Mi`, `1073741824`). Binary Kubernetes quantities (`16Gi`) pass through.
 * @throws InvalidInputError('--shm-size') for anything else.
 */
export function shmSizeToQuantity(shm: string): string {
  const s = shm.trim();
  const docker = /^(\d+)([bkmgBKMG]?)$/.exec(s);
  if (docker) {
    const unit = (docker[2] ?? '').toLowerCase();
    const suffix = unit === 'k' ? 'Ki' : unit === 'm' ? 'Mi' : unit === 'g' ? 'Gi' : '';
    return `${docker[1]}${suffix}`;
  }
  if (/^\d+(\.\d+)?(Ki|Mi|Gi|Ti)$/.test(s)) return s;
  throw new InvalidInputError('--shm-size', `shared memory size '${shm}' is not understood`, {
    hint: 'Use docker syntax such as 16g or 512m.',
  });
}

// ------------------------------------------------------------------ templates

type TemplateName = 'job' | 'service' | 'secret';
const templateCache = new Map<TemplateName, unknown>();

/** Directory holding the manifest templates (`<project root>/platforms/kubernetes`). */
export function templatesDir(): string {
  return join(projectRoot(), 'platforms', 'kubernetes');
}

function loadTemplate(name: TemplateName): unknown {
  const cached = templateCache.get(name);
  if (cached !== undefined) return structuredClone(cached);
  const file = join(templatesDir(), `${name}.yaml`);
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(file, [(e as Error).message], { hint: 'Restore the template from the tao-infer package.' });
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(file, ['not a YAML mapping'], { hint: 'Restore the template from the tao-infer package.' });
  }
  templateCache.set(name, doc);
  return structuredClone(doc);
}

const WHOLE = /^\{\{([a-z_]+)\}\}$/;
const INNER = /\{\{([a-z_]+)\}\}/g;

/**
 * Fill a parsed template: a string that is exactly `{{name}}` becomes `vars[name]` (any type; undefined drops
 * the key or list item); `{{name}}` inside a longer string is replaced textually.
 * @throws ConfigError for a placeholder that has no variable.
 */
export function fillTemplate(node: unknown, vars: Record<string, unknown>, file: string): unknown {
  const known = (name: string) => {
    if (!(name in vars)) throw new ConfigError(file, [`unknown placeholder {{${name}}}`], { hint: `Known placeholders: ${Object.keys(vars).join(', ')}` });
  };
  if (typeof node === 'string') {
    const whole = WHOLE.exec(node);
    if (whole) {
      known(whole[1]!);
      const v = vars[whole[1]!];
      return v === undefined ? undefined : structuredClone(v);
    }
    return node.replace(INNER, (_m, name: string) => {
      known(name);
      return String(vars[name] ?? '');
    });
  }
  if (Array.isArray(node)) {
    return node.map((n) => fillTemplate(n, vars, file)).filter((n) => n !== undefined);
  }
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      const filled = fillTemplate(v, vars, file);
      if (filled !== undefined) out[k] = filled;
    }
    return out;
  }
  return node;
}

// ------------------------------------------------------------------ manifests

export interface K8sManifests {
  /** Absent when no secret env var is set. */
  secret?: V1Secret;
  job: V1Job;
  service: V1Service;
}

/** Service type for an exposure mode. */
export function serviceTypeFor(expose: ExposeMode): 'LoadBalancer' | 'NodePort' | 'ClusterIP' {
  return expose === 'loadbalancer' ? 'LoadBalancer' : expose === 'nodeport' ? 'NodePort' : 'ClusterIP';
}

/** True when pulling the image needs NGC credentials (nvcr.io). */
export function needsNgcPullSecret(image: string): boolean {
  return /^nvcr\.io\//i.test(image);
}

/**
 * Build the Secret, Job and Service for a launch.
 * @param secretValue returns the Secret `data` value for a secret env var name: base64 of the real value
 *   for a launch, a `<...>` placeholder for --dry-run. It is called only for names in `spec.env.secretNames`.
 * @throws InvalidInputError for an unusable shm size; ConfigError for a broken template.
 */
export function buildManifests(
  spec: LaunchSpec,
  opts: K8sOptions,
  names: K8sNames,
  secretValue: (name: string) => string,
): K8sManifests {
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.labels)) {
    // model_path and started_at do not fit label values: they travel as annotations (discover reads them).
    if (isLabelKey(k) && k !== LABELS.modelPath && k !== LABELS.startedAt) labels[k] = toLabelValue(v);
  }
  labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE;
  labels['app.kubernetes.io/name'] = 'tao-inference-microservice';
  labels[INSTANCE_LABEL] = names.job;
  labels[ARCH_LABEL] = toLabelValue(spec.network_arch);
  const annotations: Record<string, string> = { [JOB_ID_ANNOTATION]: spec.job_id, [ARCH_ANNOTATION]: spec.network_arch };
  if (spec.labels[LABELS.modelPath]) annotations[MODEL_PATH_ANNOTATION] = spec.labels[LABELS.modelPath]!;
  if (spec.labels[LABELS.startedAt]) annotations[STARTED_AT_ANNOTATION] = spec.labels[LABELS.startedAt]!;
  if (spec.expires_at) annotations[EXPIRES_AT_ANNOTATION] = spec.expires_at;

  const secretNames = [...new Set(spec.env.secretNames)];
  const plainEnv = Object.entries(spec.env.plain)
    .filter(([name]) => !secretNames.includes(name))
    .map(([name, value]) => ({ name, value }));

  const vars: Record<string, unknown> = {
    job_name: names.job,
    service_name: names.service,
    secret_name: names.secret,
    namespace: opts.namespace,
    labels,
    annotations,
    image: spec.image,
    inner_command: spec.inner_command,
    container_port: spec.container_port,
    readiness_path: '/api/v1/health/readiness',
    // --max-duration: the Job controller fails the Job (reason DeadlineExceeded) and kills its pods after this many seconds.
    active_deadline_seconds: spec.max_duration_s,
    env: plainEnv.length ? plainEnv : undefined,
    env_from: secretNames.length ? [{ secretRef: { name: names.secret } }] : undefined,
    resources: spec.num_gpus > 0 ? { limits: { [GPU_RESOURCE]: String(spec.num_gpus) } } : undefined,
    tolerations: opts.tolerations ?? (spec.num_gpus > 0 ? DEFAULT_GPU_TOLERATIONS : undefined),
    image_pull_secrets: opts.imagePullSecret ? [{ name: opts.imagePullSecret }] : undefined,
    shm_size: shmSizeToQuantity(spec.shm_size),
    service_type: serviceTypeFor(opts.expose),
    service_annotations: opts.expose === 'loadbalancer' && opts.lbInternal ? { ...annotations, ...INTERNAL_LB_ANNOTATIONS } : annotations,
    lb_source_ranges: opts.expose === 'loadbalancer' && opts.lbSourceRanges ? opts.lbSourceRanges : undefined,
    selector: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [INSTANCE_LABEL]: names.job },
    data: secretNames.length ? Object.fromEntries(secretNames.map((n) => [n, secretValue(n)])) : undefined,
  };
  const dir = templatesDir();
  const job = fillTemplate(loadTemplate('job'), vars, join(dir, 'job.yaml')) as V1Job;
  const service = fillTemplate(loadTemplate('service'), vars, join(dir, 'service.yaml')) as V1Service;
  const out: K8sManifests = { job, service };
  if (secretNames.length) out.secret = fillTemplate(loadTemplate('secret'), vars, join(dir, 'secret.yaml')) as V1Secret;
  return out;
}


/** The manifests as one multi-document YAML text (Secret, Job, Service order), as `--dry-run` shows them. */
export function manifestsToYaml(m: K8sManifests): string {
  const docs = [m.secret, m.job, m.service].filter((d) => d !== undefined);
  return docs.map((d) => stringifyYaml(d, { lineWidth: 0 })).join('---\n');
}
