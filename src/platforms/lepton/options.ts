import type { PlatformOptionSpec } from '../../types.js';

/**
 * Default `ingress_timeout_seconds` of the endpoint. The SDK accepts 300-6000 and Lepton uses 300 when it is unset
 * (leptonai/leptonai leptonai/api/v2/types/deployment.py `validate_ingress_timeout_seconds`, cli/deployment.py
 * `--ingress-timeout-seconds`); a cosmos-predict2.5 video generation can take longer than 5 minutes on one GPU.
 */
export const DEFAULT_INGRESS_TIMEOUT_S = 1800;
export const INGRESS_TIMEOUT_RANGE = [300, 6000] as const;

/**
 * lepton start options (contract §8 lepton). Cheap to import: types only.
 * Credentials come from the environment only: LEPTON_WORKSPACE_ID, LEPTON_WORKSPACE_TOKEN, optional LEPTON_WORKSPACE_URL
 * and LEPTON_WORKSPACE_ORIGIN_URL. The endpoint token comes from the env var named by --endpoint-token-env.
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
      'name of an env var holding a token you created for this endpoint (DGX Cloud Lepton: Settings → Tokens); it becomes the endpoint\'s api token and requests read it from that var. Required unless --public',
    env: 'LEPTON_ENDPOINT_TOKEN_ENV',
  },
  {
    key: 'public',
    flags: '--public',
    description: 'make the endpoint public: no token, anyone who knows the URL can use it (a warning is printed)',
  },
  {
    key: 'ingressTimeout',
    flags: '--ingress-timeout <seconds>',
    description: `seconds the Lepton ingress waits for one response (300-6000; Lepton's own default is 300, too short for a video generation)`,
    env: 'LEPTON_INGRESS_TIMEOUT',
    integer: true,
    default: DEFAULT_INGRESS_TIMEOUT_S,
  },
];
