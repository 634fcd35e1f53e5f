/**
 * The lepton deployment (DGX Cloud Lepton REST v2, contract §8 lepton) tao-infer creates for a job: its
 * name, per-job secret names, the request body, and the mapping of a deployment's state to a JobState.
 * Pure: no API calls.
 */
import { InvalidInputError, MissingInputError } from '../../errors.js';
import type { JobState, LaunchSpec } from '../../types.js';
import type { Deployment, DeploymentSpec, EnvVar, ReplicaIssue, ReplicaTermination, TokenVar } from './api.js';
import { DEFAULT_INGRESS_TIMEOUT_S, INGRESS_TIMEOUT_RANGE } from './options.js';

/** Readiness reasons (leptonai types/readiness.py) that mean the replica will not come up without a change. */
const FATAL_READINESS = new Set(['ConfigError', 'SystemError']);

/** Deployment name for a job: `tao-` + 12 lowercase alphanumerics of the job id (starts with a letter, ≤ 16 chars). */
export function deploymentName(job_id: string): string {
  const core = job_id.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 12);
  if (!core) throw new InvalidInputError('job_id', `job_id '${job_id}' has no letters or digits`);
  return `tao-${core}`;
}

/** Per-job user secret name for an env var: `<deployment>-hf-token`. */
export function secretName(deployment: string, envName: string): string {
  return `${deployment}-${envName.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
}

/** Docker size syntax (`16g`, `512m`, `1073741824`) → MiB for `shared_memory_size`; undefined when not parseable. */
export function shmToMiB(size: string): number | undefined {
  const m = /^(\d+)([bkmg]?)b?$/i.exec(size.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2]!.toLowerCase();
  const bytes = unit === 'g' ? n * 1024 ** 3 : unit === 'm' ? n * 1024 ** 2 : unit === 'k' ? n * 1024 : n;
  const mib = Math.floor(bytes / 1024 ** 2);
  return mib > 0 ? mib : undefined;
}

export interface Built {
  name: string;
  secrets: { env: string; secret: string }[];
  body: { metadata: { name: string }; spec: DeploymentSpec };
  /** Env var holding the endpoint token; undefined for a public endpoint. */
  auth_env: string | undefined;
}

/** Deployment env var carrying the expiry of `start --max-duration` (ISO-8601 UTC). */
export const EXPIRES_AT_ENV = 'TAO_INFER_EXPIRES_AT';

/** A platform option as a non-empty string, or undefined. */
export function opt(spec: LaunchSpec, key: string): string | undefined {
  const v = spec.options[key];
  return v === undefined || v === null || v === '' ? undefined : String(v);
}

/** --resource-shape as sent: lowercase, as the SDK's validator makes it (leptonai api/v2/types/deployment.py). */
export function shapeOf(spec: LaunchSpec): string | undefined {
  return opt(spec, 'resourceShape')?.toLowerCase();
}

/**
 * Discovery markers as plain (non-secret) envs of the deployment: every label of the spec
 * (`tao-infer.job_id` → `TAO_INFER_JOB_ID`, ...) and `TAO_INFER_AUTH_ENV`, the NAME of the env var holding
 * the endpoint token. `GET /deployments` returns `spec.envs`, so `discover` rebuilds the entry from them.
 */
export function markerEnvs(labels: Record<string, string>, authEnv: string): EnvVar[] {
  const out = Object.entries(labels).map(([k, v]) => ({ name: markerEnvName(k), value: v }));
  out.push({ name: MARKER_AUTH_ENV, value: authEnv });
  return out;
}

/** `tao-infer.model_path` → `TAO_INFER_MODEL_PATH`. */
export function markerEnvName(label: string): string {
  return label.replace(/^tao-infer\./, 'TAO_INFER_').replace(/[^A-Za-z0-9_]/g, '_').toUpperCase();
}
export const MARKER_AUTH_ENV = 'TAO_INFER_AUTH_ENV';

/**
 * The deployment request for a spec. `nodeGroupId` is the resolved node group id (plan shows the name).
 * The endpoint token VALUE (from the env var named by --endpoint-token-env) is only placed when `withTokenValue`
 * (plans show the name); `--public` gives `api_tokens: []`.
 * @throws MissingInputError without --resource-shape; InvalidInputError without --endpoint-token-env and --public
 */
export function buildDeployment(spec: LaunchSpec, env: NodeJS.ProcessEnv, nodeGroupId: string | undefined, withTokenValue: boolean): Built {
  const name = deploymentName(spec.job_id);
  const shape = shapeOf(spec);
  if (!shape) throw new MissingInputError('--resource-shape', 'Lepton resource shape (e.g. gpu.1xh100)');
  const secrets = spec.env.secretNames.map((e) => ({ env: e, secret: secretName(name, e) }));
  const tokenEnv = opt(spec, 'endpointTokenEnv');
  const envs: EnvVar[] = [
    ...Object.entries(spec.env.plain).map(([k, v]) => ({ name: k, value: v })),
    ...secrets.map((s) => ({ name: s.env, value_from: { secret_name_ref: s.secret } })),
    // --max-duration: Lepton deployments have no run-time limit; the expiry travels with the deployment
    // (read back by discovery) and `tao-infer prune` ends it.
    ...(spec.expires_at ? [{ name: EXPIRES_AT_ENV, value: spec.expires_at }] : []),
    // Non-secret markers discovery reads back (the NAME of the token env var, never its value; empty when public).
    ...markerEnvs(spec.labels, tokenEnv ?? ''),
  ];
  if (!tokenEnv && spec.options.public !== true) throw missingEndpointToken();
  const api_tokens: TokenVar[] = tokenEnv ? [{ value: withTokenValue ? (env[tokenEnv] ?? '') : `<value of $${tokenEnv}>` }] : [];
  const auth_env = tokenEnv;
  const ingress = ingressTimeout(spec);
  const shm = shmToMiB(spec.shm_size);
  const pull = opt(spec, 'imagePullSecret');
  const body = {
    metadata: { name },
    spec: {
      container: { image: spec.image, command: ['/bin/bash', '-c', spec.inner_command], ports: [{ container_port: spec.container_port }] },
      resource_requirement: {
        resource_shape: shape,
        min_replicas: 1,
        max_replicas: 1,
        ...(shm ? { shared_memory_size: shm } : {}),
        ...(nodeGroupId ? { affinity: { allowed_dedicated_node_groups: [nodeGroupId] } } : {}),
      },
      envs,
      ...(pull ? { image_pull_secrets: [pull] } : {}),
      api_tokens,
      ingress_timeout_seconds: ingress,
    },
  };
  return { name, secrets, body, auth_env };
}

/** The error for a start with neither --endpoint-token-env nor --public (there is no default endpoint token). */
export function missingEndpointToken(): InvalidInputError {
  return new InvalidInputError('--endpoint-token-env', 'a Lepton endpoint needs a token: --endpoint-token-env <name of the env var holding it>, or --public', {
    hint: 'Create a token in the Lepton console (Settings → Tokens), export TAO_ENDPOINT_TOKEN=<token>, then pass --endpoint-token-env TAO_ENDPOINT_TOKEN. Or --public for an endpoint without a token.',
  });
}

/** --ingress-timeout seconds, checked against the SDK's 300-6000 range. @throws InvalidInputError */
export function ingressTimeout(spec: LaunchSpec): number {
  const raw = spec.options.ingressTimeout ?? DEFAULT_INGRESS_TIMEOUT_S;
  const n = Number(raw);
  const [lo, hi] = INGRESS_TIMEOUT_RANGE;
  if (!Number.isInteger(n) || n < lo || n > hi) throw new InvalidInputError('--ingress-timeout', `--ingress-timeout must be whole seconds from ${lo} to ${hi}, got '${String(raw)}'`);
  return n;
}

/** GPUs in a shape name like gpu.8xh100-sxm → 8; undefined for shapes without that pattern. */
export function shapeGpus(shape: string): number | undefined {
  const m = /^gpu\.(\d+)x/i.exec(shape);
  return m ? Number(m[1]) : undefined;
}

/**
 * Deployment + readiness + terminations → JobState. Exported for tests.
 * `Ready` running; `Stopped`/`Stopping`/`Deleting` canceled; `Error`, a ConfigError/SystemError readiness issue or a
 * replica termination → error with the platform's reason; otherwise pending (with NoCapacity etc. as reason).
 */
export function mapLeptonState(d: Deployment, readiness: Record<string, ReplicaIssue[]>, terminations: Record<string, ReplicaTermination[]>): JobState {
  const native = d.status?.state || 'UNK';
  const issues = Object.values(readiness).flat();
  const terms = Object.values(terminations).flat();
  const fatal = issues.find((i) => FATAL_READINESS.has(i.reason));
  const term = terms[terms.length - 1];
  const termReason = term ? `${term.reason || 'terminated'} (exit ${term.exit_code})${term.message ? `: ${term.message}` : ''}` : undefined;
  switch (native) {
    case 'Ready':
      return { state: 'running', native };
    case 'Stopped':
    case 'Stopping':
    case 'Deleting':
      return { state: 'canceled', native };
    case 'Error':
      return { state: 'error', native, reason: fatal ? `${fatal.reason}: ${fatal.message}` : termReason ?? issues[0]?.message, exitCode: term?.exit_code };
  }
  if (fatal) return { state: 'error', native, reason: `${fatal.reason}: ${fatal.message}` };
  if (term && term.exit_code !== 0) return { state: 'error', native, reason: termReason, exitCode: term.exit_code };
  const pendingWhy = issues.find((i) => i.reason !== 'Ready');
  return { state: 'pending', native, ...(pendingWhy ? { reason: `${pendingWhy.reason}${pendingWhy.message ? `: ${pendingWhy.message}` : ''}` } : {}) };
}
