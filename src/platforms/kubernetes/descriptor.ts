import type { PlatformDescriptor } from '../descriptor.js';
import { options } from './options.js';

/** kubernetes (contract §8): a Job + Service (+ Secret), exposed by LoadBalancer, NodePort or a local port-forward. */
export const descriptor = {
  name: 'kubernetes',
  // discover looks in one namespace of one context, like start.
  options: { start: options, discover: options.filter((o) => ['kubeconfig', 'context', 'namespace'].includes(o.key)) },
  unsupported: {
    gpu_ids: 'Kubernetes assigns GPUs through the nvidia.com/gpu resource; specific device ids cannot be chosen (use --num-gpus).',
    bind_address: 'Kubernetes exposes the service through a Service (--expose loadbalancer|nodeport) or a local port-forward bound to 127.0.0.1.',
  },
  reservesHostPort: false,
  maxDuration: { enforcedBy: 'platform', how: "the Job's spec.activeDeadlineSeconds: Kubernetes ends the Job (DeadlineExceeded) when it is reached" },
  hostPortScope: 'local',
  entryDefaults: [
    { key: 'kubeconfig', env: ['KUBECONFIG'], what: 'kubeconfig' },
    { key: 'context', env: ['TAO_K8S_CONTEXT'], what: 'context' },
    { key: 'namespace', env: ['TAO_K8S_NAMESPACE'], fallback: 'default', what: 'namespace' },
  ],
  load: async () => (await import('./adapter.js')).createAdapter(),
} as const satisfies PlatformDescriptor<'kubernetes'>;
