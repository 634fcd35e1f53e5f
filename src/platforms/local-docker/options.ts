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
  {
    key: 'ipcHost',
    flags: '--ipc-host',
    description: "run the container with --ipc=host (NVIDIA's NGC guidance for multi-GPU PyTorch; replaces --shm-size)",
  },
  {
    key: 'ulimitMemlock',
    flags: '--ulimit-memlock',
    description: "add --ulimit memlock=-1 --ulimit stack=67108864 (NVIDIA's NGC guidance for PyTorch containers)",
  },
];
