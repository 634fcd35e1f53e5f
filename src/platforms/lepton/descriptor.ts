import type { PlatformDescriptor } from '../descriptor.js';
import { options } from './options.js';

/** lepton (contract §8): a DGX Cloud Lepton endpoint (deployment) over the REST v2 API; the URL is Lepton's. */
export const descriptor = {
  name: 'lepton',
  options: { start: options },
  unsupported: {
    gpu_ids: 'Lepton assigns the GPUs of the resource shape; choose the count with --resource-shape',
    bind_address: 'the endpoint URL is assigned by Lepton',
    port: 'the endpoint URL is assigned by Lepton',
  },
  reservesHostPort: false,
  maxDuration: { enforcedBy: 'prune', how: 'Lepton deployments have no run-time limit: the deployment carries TAO_INFER_EXPIRES_AT and `tao-infer prune` deletes it once expired' },
  load: async () => (await import('./adapter.js')).createAdapter(),
} as const satisfies PlatformDescriptor<'lepton'>;
