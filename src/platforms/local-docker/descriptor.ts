import type { PlatformDescriptor } from '../descriptor.js';
import { options } from './options.js';

/** local-docker (contract §8): `docker run -d` on this machine (or DOCKER_HOST), host port published locally. */
export const descriptor = {
  name: 'local-docker',
  options: { start: options },
  unsupported: {},
  reservesHostPort: true,
  hostPortScope: 'local',
  load: async () => (await import('./adapter.js')).createAdapter(),
} as const satisfies PlatformDescriptor<'local-docker'>;
