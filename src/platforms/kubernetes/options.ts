/**
 * `tao-infer start --platform kubernetes` flags (contract §8 kubernetes). Cheap to import: types only,
 * no Kubernetes client. Values arrive in `LaunchSpec.options` under `key`.
 */
import type { PlatformOptionSpec } from '../../types.js';

/** Ways the service is made reachable from this machine. */
export const EXPOSE_MODES = ['loadbalancer', 'nodeport', 'port-forward'] as const;
export type ExposeMode = (typeof EXPOSE_MODES)[number];

/** Default seconds to wait for a LoadBalancer Service to get `status.loadBalancer.ingress[0]`. */
export const DEFAULT_LB_TIMEOUT_S = 300;

export const options: PlatformOptionSpec[] = [
  {
    key: 'kubeconfig',
    flags: '--kubeconfig <file>',
    description: 'kubeconfig file (several joined with ":" are merged like kubectl); default ~/.kube/config, then in-cluster',
    env: 'KUBECONFIG',
  },
  {
    key: 'context',
    flags: '--context <name>',
    description: 'kubeconfig context to use (default: the current-context)',
    env: 'TAO_K8S_CONTEXT',
  },
  {
    key: 'namespace',
    flags: '--namespace <ns>',
    description: 'namespace for the Job, Service and Secret',
    env: 'TAO_K8S_NAMESPACE',
    default: 'default',
  },
  {
    key: 'expose',
    flags: '--expose <mode>',
    description: 'how to reach the service: a LoadBalancer Service, a NodePort Service, or a local port-forward',
    choices: [...EXPOSE_MODES],
    default: 'loadbalancer',
  },
  {
    key: 'imagePullSecret',
    flags: '--image-pull-secret <name>',
    description: 'existing docker-registry Secret in the namespace used to pull the image (needed for nvcr.io)',
  },
  {
    key: 'skipCapacityCheck',
    flags: '--skip-capacity-check',
    description: 'start even when the nodes report fewer allocatable nvidia.com/gpu than --num-gpus (e.g. with a cluster autoscaler)',
    default: false,
  },
  {
    key: 'toleration',
    flags: '--toleration <key[=value]:Effect>',
    description:
      'pod toleration, repeatable (Effect NoSchedule|PreferNoSchedule|NoExecute; key:Effect tolerates any value); replaces the GPU defaults nvidia.com/gpu:NoSchedule and sku=gpu:NoSchedule (AKS)',
    repeatable: true,
  },
  {
    key: 'lbSourceRanges',
    flags: '--lb-source-ranges <cidrs>',
    description: 'with --expose loadbalancer: comma-separated client CIDRs allowed to reach the load balancer (spec.loadBalancerSourceRanges)',
  },
  {
    key: 'lbInternal',
    flags: '--lb-internal',
    description: 'with --expose loadbalancer: an internal (VPC-only) load balancer, through the AWS, Azure and GKE annotations',
    default: false,
  },
  {
    key: 'lbTimeout',
    flags: '--lb-timeout <seconds>',
    description: 'seconds to wait for the LoadBalancer to get an external address',
    integer: true,
    default: DEFAULT_LB_TIMEOUT_S,
  },
];
