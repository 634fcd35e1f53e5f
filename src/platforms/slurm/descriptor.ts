import type { PlatformDescriptor } from '../descriptor.js';
import { options } from './options.js';

/** slurm (contract §8): an sbatch job reached over SSH, with a local SSH tunnel to its node. */
export const descriptor = {
  name: 'slurm',
  // discover looks where start submits: the login node and how to reach it.
  options: { start: options, discover: options.filter((o) => ['slurmUser', 'slurmHost', 'sshPort', 'identityFile', 'knownHosts'].includes(o.key)) },
  unsupported: {
    gpu_ids: 'Slurm chooses the GPUs of a job (--gres=gpu:<n>); device ids cannot be requested',
    bind_address: 'the local end of the Slurm SSH tunnel always listens on 127.0.0.1',
    port: 'the local tunnel port is allocated from 8080-8199 like local-docker host ports',
  },
  reservesHostPort: false,
  maxDuration: { enforcedBy: 'platform', how: "the job's Slurm time limit (sbatch --time): Slurm ends the job when it is reached" },
  hostPortScope: 'local',
  entryDefaults: [
    { key: 'ssh_user', env: ['SLURM_USER'], what: 'login user' },
    { key: 'ssh_host', env: ['SLURM_HOSTNAME'], what: 'login node' },
  ],
  load: async () => (await import('./adapter.js')).createAdapter(),
} as const satisfies PlatformDescriptor<'slurm'>;
