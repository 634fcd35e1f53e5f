import type { PlatformOptionSpec } from '../../types.js';

/**
 * lepton start options (contract §8 lepton). Cheap to import: types only.
 * Credentials come from the environment only: LEPTON_WORKSPACE_ID, LEPTON_WORKSPACE_TOKEN, optional LEPTON_WORKSPACE_URL.
 * On a TTY the CLI can offer `listResourceShapes()` (adapter.ts) as choices for `--resource-shape`.
 */
export const options: PlatformOptionSpec[] = [
  {
    key: 'resourceShape',
    flags: '--resource-shape <shape>',
    description: 'Lepton resource shape of the endpoint replica, e.g. gpu.1xh100 (its GPU count should match --num-gpus)',
    env: 'LEPTON_RESOURCE_SHAPE',
    required: true,
  },
  {
    key: 'nodeGroup',
    flags: '--node-group <name>',
    description: 'dedicated node group (name or id) to run on; default: the workspace default',
    env: 'LEPTON_NODE_GROUP',
  },
  {
    key: 'imagePullSecret',
    flags: '--image-pull-secret <name>',
    description: 'name of a Lepton image pull secret for the registry (needed for nvcr.io images)',
    env: 'LEPTON_IMAGE_PULL_SECRET',
  },
  {
    key: 'endpointTokenEnv',
    flags: '--endpoint-token-env <name>',
    description:
      'name of an env var holding the token that guards the endpoint (set as its api token; requests read it from that var). Default: the workspace token ($LEPTON_WORKSPACE_TOKEN)',
  },
];
