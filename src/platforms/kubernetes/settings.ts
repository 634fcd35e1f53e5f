/**
 * The kubernetes platform's `start` settings, validated from `LaunchSpec.options`: namespace, exposure, pull secret,
 * GPU tolerations, LoadBalancer source ranges and the internal-LB annotations. Pure; no Kubernetes client.
 */
import { isIP } from 'node:net';
import { InvalidInputError } from '../../errors.js';
import { DEFAULT_LB_TIMEOUT_S, EXPOSE_MODES, type ExposeMode } from './options.js';
import { isDns1123Label, isDns1123Subdomain, isLabelKey } from './names.js';

/** The GPU extended resource of the NVIDIA device plugin. */
export const GPU_RESOURCE = 'nvidia.com/gpu';

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
