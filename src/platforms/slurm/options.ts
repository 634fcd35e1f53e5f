/**
 * `start` flags of the slurm platform (contract §8 slurm). Cheap to import: types only, no SSH code.
 * Values arrive in `LaunchSpec.options` under `key`; the env var named in `env` is used when the
 * flag is absent. Validation of the values happens in `./script.ts` (`resolveSlurmOptions`).
 */
import type { PlatformOptionSpec } from '../../types.js';

/** The four ways the job script can run the inner command on the compute node. */
export const CONTAINER_RUNTIMES = ['pyxis', 'apptainer', 'docker', 'none'] as const;
export type ContainerRuntime = (typeof CONTAINER_RUNTIMES)[number];

/** Defaults shared by the options table, the script renderer and the docs. */
export const SLURM_DEFAULTS = {
  sshPort: 22,
  time: '04:00:00',
  jobDirParent: '~/.tao-infer/jobs',
  containerRuntime: 'pyxis' as ContainerRuntime,
  /** Host memory and CPUs when the arch's references/<arch>.config.json names none (`resources`). */
  mem: '32G',
  cpusPerTask: 8,
} as const;

export const options: PlatformOptionSpec[] = [
  {
    key: 'slurmUser',
    flags: '--slurm-user <user>',
    description: 'user on the Slurm login node (SSH key authentication only, never a password)',
    env: 'SLURM_USER',
    required: true,
  },
  {
    key: 'slurmHost',
    flags: '--slurm-host <host>',
    description: 'Slurm login node reachable over SSH',
    env: 'SLURM_HOSTNAME',
    required: true,
  },
  {
    key: 'sshPort',
    flags: '--ssh-port <port>',
    description: 'SSH port of the login node',
    default: SLURM_DEFAULTS.sshPort,
    integer: true,
  },
  {
    key: 'identityFile',
    flags: '--identity-file <file>',
    description: 'private key for SSH (default: ssh-agent via SSH_AUTH_SOCK, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa)',
  },
  {
    key: 'knownHosts',
    flags: '--known-hosts <file>',
    description: 'known_hosts file the login node host key is checked against (default ~/.ssh/known_hosts)',
  },
  {
    key: 'partition',
    flags: '--partition <name>',
    description: 'Slurm partition to submit to',
    env: 'SLURM_PARTITION',
    required: true,
  },
  {
    key: 'account',
    flags: '--account <name>',
    description: 'Slurm account to charge (omit on clusters without accounts; sbatch then uses your default account)',
    env: 'SLURM_ACCOUNT',
    askIfInteractive: true,
  },
  {
    key: 'time',
    flags: '--time <limit>',
    description: 'job time limit in Slurm syntax (MM, HH:MM:SS, D-HH:MM:SS); the service stops when it is reached',
    default: SLURM_DEFAULTS.time,
  },
  {
    key: 'mem',
    flags: '--mem <size>',
    description:
      'host memory for the job in sbatch syntax (e.g. 64G, 500000 for MB); 0 = the whole node. Default: the arch\'s (references/<arch>.config.json resources.mem), else 32G',
  },
  {
    key: 'cpusPerTask',
    flags: '--cpus-per-task <n>',
    description: "CPUs for the job. Default: the arch's (references/<arch>.config.json resources.cpus_per_task), else 8",
    integer: true,
  },
  {
    key: 'gpuType',
    flags: '--gpu-type <type>',
    description: "GPU model to ask for when the cluster types its GPUs (gres.conf Type=), e.g. h100: --num-gpus N becomes --gres=gpu:<type>:N. Default: any GPU",
    env: 'SLURM_GPU_TYPE',
  },
  {
    key: 'jobDir',
    flags: '--job-dir <dir>',
    description: `directory on the cluster (shared filesystem) under which each job gets <dir>/<job_id> for its script and log (default ${SLURM_DEFAULTS.jobDirParent})`,
  },
  {
    key: 'containerRuntime',
    flags: '--container-runtime <runtime>',
    description: 'how the compute node runs the service: pyxis (srun --container-image), apptainer, docker, or none (the node already has the executables)',
    default: SLURM_DEFAULTS.containerRuntime,
    choices: [...CONTAINER_RUNTIMES],
  },
  {
    key: 'containerMounts',
    flags: '--container-mounts <mounts>',
    description: 'bind mounts SRC:DST[:FLAGS][,SRC:DST...] (pyxis --container-mounts, apptainer --bind, docker -v each)',
  },
  {
    key: 'imageFile',
    flags: '--image-file <path>',
    description: 'pre-converted image on the cluster used instead of pulling the image (pyxis: .sqsh from enroot import; apptainer: .sif)',
  },
  {
    key: 'sbatchArgs',
    flags: '--sbatch-arg <arg>',
    description: 'extra sbatch option written as an #SBATCH line, e.g. --qos=high or --constraint=h100 (repeatable)',
    repeatable: true,
  },
];
