import type { PlatformOptionSpec } from '../../types.js';

/** local-docker start options (besides the common --port/--bind/--gpu-ids/--shm-size). */
export const options: PlatformOptionSpec[] = [
  {
    key: 'network',
    flags: '--docker-network <name>',
    description: 'docker network the container joins (created if missing), so docker_url works container-to-container',
    env: 'DOCKER_NETWORK',
    default: 'tao_default',
  },
];
