/**
 * Kubernetes manifests for one tao-infer service (contract §8 kubernetes): a per-job Secret holding
 * only the secret env vars that are set, a batch/v1 Job running `/bin/sh -c <inner_command>` with
 * `nvidia.com/gpu` limits, and a Service exposing port 8080. The shapes come from the templates in
 * `platforms/kubernetes/{job,service,secret}.yaml`; this module fills them. No Kubernetes client here
 * (types only), so it is cheap to import and unit-testable.
 */
import type { V1Job, V1Secret, V1Service } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ConfigError, InvalidInputError } from '../../errors.js';
import { projectRoot } from '../../references.js';
import { LABELS } from '../../labels.js';
import type { LaunchSpec } from '../../types.js';
import { DEFAULT_LB_TIMEOUT_S, EXPOSE_MODES, type ExposeMode } from './options.js';

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
export const GPU_RESOURCE = 'nvidia.com/gpu';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** True for a DNS-1123 label (RFC 1123: lower-case alphanumerics and '-', at most 63 characters). */
export function isDns1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}
/** True for a DNS-1123 subdomain (dot-separated labels, at most 253 characters). */
export function isDns1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}
/** True for a valid label value (at most 63 characters). */
export function isLabelValue(s: string): boolean {
  return s.length <= 63 && LABEL_VALUE.test(s);
}

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

/** Validated `LaunchSpec.options` of the kubernetes platform. */
export interface K8sOptions {
  /** kubeconfig path(s) joined with ':' (undefined: ~/.kube/config, then in-cluster). */
  kubeconfig?: string;
  context?: string;
  namespace: string;
  expose: ExposeMode;
  imagePullSecret?: string;
  skipCapacityCheck: boolean;
  /** Seconds to wait for a LoadBalancer ingress. */
  lbTimeoutS: number;
  /** Pod tolerations from --toleration (undefined: the GPU defaults when GPUs are requested). */
  tolerations?: Toleration[];
  /** --lb-source-ranges: CIDRs for spec.loadBalancerSourceRanges. */
  lbSourceRanges?: string[];
  /** --lb-internal: annotate the LoadBalancer Service as internal. */
  lbInternal: boolean;
}

export interface Toleration {
  key: string;
  operator: 'Exists' | 'Equal';
  value?: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

/**
 * Tolerations when GPUs are requested and no --toleration is given:
 *  - `nvidia.com/gpu` Exists:NoSchedule: the taint of GPU nodes on EKS and GKE (GKE: `nvidia.com/gpu=present:NoSchedule`,
 *    https://cloud.google.com/kubernetes-engine/docs/how-to/gpus) and the one the GPU Operator docs use;
 *  - `sku=gpu:NoSchedule`: the taint the AKS docs put on GPU node pools
 *    (https://learn.microsoft.com/azure/aks/gpu-cluster, `--node-taints sku=gpu:NoSchedule`).
 * A toleration for a taint a node does not have changes nothing, so both are safe everywhere.
 */
export const DEFAULT_GPU_TOLERATIONS: Toleration[] = [
  { key: GPU_RESOURCE, operator: 'Exists', effect: 'NoSchedule' },
  { key: 'sku', operator: 'Equal', value: 'gpu', effect: 'NoSchedule' },
];

/**
 * Annotations making a LoadBalancer Service internal (reachable inside the VPC/VNet only), one set per cloud;
 * each cloud's controller ignores the others':
 *  - AWS: `service.beta.kubernetes.io/aws-load-balancer-internal: "true"` (in-tree cloud provider) and
 *    `service.beta.kubernetes.io/aws-load-balancer-scheme: internal` (AWS Load Balancer Controller,
 *    https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/service/annotations/);
 *  - Azure: `service.beta.kubernetes.io/azure-load-balancer-internal: "true"` (https://learn.microsoft.com/azure/aks/internal-lb);
 *  - GKE: `networking.gke.io/load-balancer-type: "Internal"`
 *    (https://cloud.google.com/kubernetes-engine/docs/how-to/internal-load-balancing).
 */
export const INTERNAL_LB_ANNOTATIONS: Record<string, string> = {
  'service.beta.kubernetes.io/aws-load-balancer-internal': 'true',
  'service.beta.kubernetes.io/aws-load-balancer-scheme': 'internal',
  'service.beta.kubernetes.io/azure-load-balancer-internal': 'true',
  'networking.gke.io/load-balancer-type': 'Internal',
};

const EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const;

/**
 * One `--toleration key[=value]:Effect` → a pod toleration (`key:Effect` → operator Exists).
 * @throws InvalidInputError('--toleration') for a malformed value, key, or unknown effect
 */
export function parseToleration(text: string): Toleration {
  const m = /^([^=:\s]+)(?:=([^:\s]*))?:([A-Za-z]+)$/.exec(text.trim());
  const bad = (why: string) =>
    new InvalidInputError('--toleration', `--toleration '${text}': ${why}`, {
      hint: 'Use key[=value]:Effect, e.g. --toleration nvidia.com/gpu:NoSchedule or --toleration sku=gpu:NoSchedule.',
    });
  if (!m) throw bad('expected key[=value]:Effect');
  const [, key, value, effect] = m;
  if (!isLabelKey(key!)) throw bad(`'${key}' is not a valid taint key`);
  if (!(EFFECTS as readonly string[]).includes(effect!)) throw bad(`effect must be one of ${EFFECTS.join(', ')}`);
  if (value !== undefined && value !== '' && !/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(value)) throw bad(`'${value}' is not a valid taint value`);
  return value === undefined ? { key: key!, operator: 'Exists', effect: effect as Toleration['effect'] } : { key: key!, operator: 'Equal', value, effect: effect as Toleration['effect'] };
}

/**
 * `--lb-source-ranges a/n,b/m` → CIDRs (IPv4 prefix ≤ 32, IPv6 ≤ 128; a bare address is not a CIDR).
 * @throws InvalidInputError('--lb-source-ranges') naming the bad entry
 */
export function parseSourceRanges(text: string): string[] {
  const out = text
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '');
  if (!out.length) throw new InvalidInputError('--lb-source-ranges', '--lb-source-ranges needs at least one CIDR, e.g. 203.0.113.0/24');
  for (const c of out) {
    const [ip, prefix, extra] = c.split('/');
    const v = isIP(ip ?? '');
    const max = v === 4 ? 32 : 128;
    if (!v || prefix === undefined || extra !== undefined || !/^\d{1,3}$/.test(prefix) || Number(prefix) > max)
      throw new InvalidInputError('--lb-source-ranges', `--lb-source-ranges: '${c}' is not a CIDR`, { hint: 'Give address/prefix entries, e.g. 203.0.113.0/24,2001:db8::/32.' });
  }
  return out;
}

function optString(o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  return String(v);
}

/**
 * Validate the platform options (before any cluster call).
 * @throws InvalidInputError naming the flag: namespace not a DNS-1123 label, unknown --expose,
 *   --image-pull-secret not a DNS-1123 subdomain, --lb-timeout not a positive integer.
 */
export function parseK8sOptions(options: Record<string, unknown>): K8sOptions {
  const namespace = optString(options, 'namespace') ?? 'default';
  if (!isDns1123Label(namespace)) {
    throw new InvalidInputError('--namespace', `--namespace '${namespace}' is not a valid Kubernetes namespace name`, {
      hint: 'Use lower-case letters, digits and "-", at most 63 characters (or set TAO_K8S_NAMESPACE).',
    });
  }
  const expose = (optString(options, 'expose') ?? 'loadbalancer') as ExposeMode;
  if (!EXPOSE_MODES.includes(expose)) {
    throw new InvalidInputError('--expose', `--expose must be one of ${EXPOSE_MODES.join(', ')} (got '${expose}')`);
  }
  const imagePullSecret = optString(options, 'imagePullSecret');
  if (imagePullSecret !== undefined && !isDns1123Subdomain(imagePullSecret)) {
    throw new InvalidInputError('--image-pull-secret', `'${imagePullSecret}' is not a valid Secret name`, {
      hint: 'Give the name of a docker-registry Secret in the namespace (lower-case letters, digits, "-", ".").',
    });
  }
  const rawTimeout = options['lbTimeout'];
  const lbTimeoutS = rawTimeout === undefined || rawTimeout === null || rawTimeout === '' ? DEFAULT_LB_TIMEOUT_S : Number(rawTimeout);
  if (!Number.isInteger(lbTimeoutS) || lbTimeoutS <= 0) {
    throw new InvalidInputError('--lb-timeout', `--lb-timeout must be a positive whole number of seconds (got '${String(rawTimeout)}')`);
  }
  const context = optString(options, 'context');
  const kubeconfig = optString(options, 'kubeconfig');
  const skip = options['skipCapacityCheck'];
  const internal = options['lbInternal'];
  const out: K8sOptions = {
    namespace,
    expose,
    skipCapacityCheck: skip === true || skip === 'true' || skip === '1',
    lbTimeoutS,
    lbInternal: internal === true || internal === 'true' || internal === '1',
  };
  const tol = options['toleration'];
  const tolList = (Array.isArray(tol) ? tol : tol === undefined || tol === null || tol === '' ? [] : [tol]).map(String);
  if (tolList.length) out.tolerations = tolList.map(parseToleration);
  const ranges = optString(options, 'lbSourceRanges');
  if (ranges !== undefined) out.lbSourceRanges = parseSourceRanges(ranges);
  for (const [flag, set] of [['--lb-source-ranges', ranges !== undefined], ['--lb-internal', out.lbInternal]] as const)
    if (set && expose !== 'loadbalancer')
      throw new InvalidInputError(flag, `${flag} applies to --expose loadbalancer only (got --expose ${expose})`);
  if (kubeconfig !== undefined) out.kubeconfig = kubeconfig;
  if (context !== undefined) out.context = context;
  if (imagePullSecret !== undefined) out.imagePullSecret = imagePullSecret;
  return out;
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

function isLabelKey(k: string): boolean {
  const slash = k.lastIndexOf('/');
  const prefix = slash >= 0 ? k.slice(0, slash) : undefined;
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  if (prefix !== undefined && !isDns1123Subdomain(prefix)) return false;
  return name.length > 0 && name.length <= 63 && /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name);
}

/** The manifests as one multi-document YAML text (Secret, Job, Service order), as `--dry-run` shows them. */
export function manifestsToYaml(m: K8sManifests): string {
  const docs = [m.secret, m.job, m.service].filter((d) => d !== undefined);
  return docs.map((d) => stringifyYaml(d, { lineWidth: 0 })).join('---\n');
}
