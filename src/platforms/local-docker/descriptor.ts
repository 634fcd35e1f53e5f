import type { PlatformDescriptor } from '../descriptor.js';
import { options } from './options.js';

/** local-docker (contract §8): `docker run -d` on this machine (or DOCKER_HOST), host port published locally. */
export const descriptor = {
  name: 'local-docker',
  options: { start: options },
  unsupported: {},
  reservesHostPort: true,
  maxDuration: { enforcedBy: 'prune', how: 'docker has no run-time limit: the container carries the label tao-infer.expires_at and `tao-infer prune` stops it once expired' },
  hostPortScope: 'local',
  load: async () => (await import('./adapter.js')).createAdapter(),
} as const satisfies PlatformDescriptor<'local-docker'>;
