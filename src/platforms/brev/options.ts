import type { PlatformOptionSpec } from '../../types.js';

/**
 * brev start options (contract §8 brev). Cheap to import: types only.
 * `--instance` is required; on a TTY the CLI can offer the names from `listInstances()` (adapter.ts) as choices.
 */
export const options: PlatformOptionSpec[] = [
  {
    key: 'instance',
    flags: '--instance <name>',
    description: "Brev instance (VM with Docker and the NVIDIA toolkit) to run on, by name or id; see 'brev ls'",
    env: 'BREV_INSTANCE',
    required: true,
  },
  {
    key: 'probeTimeout',
    flags: '--probe-timeout <seconds>',
    description: "how long to wait for the instance to answer 'brev exec' (a fresh instance reports RUNNING before sshd is up)",
    default: 600,
    integer: true,
  },
  {
    key: 'sshConfig',
    flags: '--brev-ssh-config <file>',
    description: "ssh config holding the Brev host aliases, used to send secrets on stdin and for the port forward (default: ~/.ssh/config, set up by 'brev login'/'brev refresh')",
    env: 'TAO_BREV_SSH_CONFIG',
  },
];

/** brev `stop` options: the CLI adds these flags to `stop`; the descriptor's `afterStop` (cli.ts `deleteUnusedInstances`) acts on them. */
export const stopOptions: PlatformOptionSpec[] = [
  {
    key: 'deleteInstance',
    flags: '--delete-instance',
    description: "also delete the Brev instance ('brev delete <instance>') once no other service uses it (ephemeral instances)",
  },
];
