/**
 * start, step 1 (prepare): validate every input and build the LaunchSpec, without side effects (spec §1–§3,
 * contract §2–§4). Bad input throws a UserError (exit 2) before any platform call or registry change.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { applyIdleTimeout, buildInnerCommand, type InnerCommand } from '../archs/command.js';
import { resolveImage, type ResolvedImage } from '../archs/image.js';
import { checkEnvName, checkNumGpus, checkPort, parseModelPath } from '../archs/inputs.js';
import { InvalidInputError } from '../errors.js';
import { LABELS } from '../labels.js';
import { checkPlatform, descriptorOf } from '../platforms/index.js';
import { secretNames, type References } from '../references.js';
import type { LaunchSpec, PlatformAdapter, PlatformName } from '../types.js';
import { parseDuration } from '../util/duration.js';

export interface StartInput {
  network_arch: string;
  model_path: string;
  platform: string;
  /** Default 1. 0 only as the explicit lifecycle smoke (no GPU flags; a warning is emitted). */
  num_gpus?: number;
  gpu_ids?: string[];
  /** Explicit host port (local-docker, brev) or local tunnel port (slurm, k8s port-forward). */
  port?: number;
  /** Address the host port binds to (local-docker). Default 127.0.0.1. */
  bind_address?: string;
  /** cosmos-predict2.5 with hf_model:// → registered model key. */
  model_key?: string;
  output_dir?: string;
  arch_options?: Record<string, string | number | boolean>;
  /** Minutes of idleness after which the service ends itself: the arch's own flag (contract §3); refused for archs without one. */
  idle_timeout_minutes?: number | string;
  /** Longest the service may run, e.g. `90m`, `4h`, `1d` (src/util/duration.ts); enforced by the platform where it can. */
  max_duration?: string;
  /** Names of extra env vars to hand to the service (values from the environment). */
  env_names?: string[];
  /** Let `env_names` include variables that change how the container runs (PATH, LD_PRELOAD, ...; see ENV_OVERRIDE_GUARDED). */
  allow_env_override?: boolean;
  shm_size?: string;
  /** Platform option values by key (see PLATFORM_OPTIONS). */
  options?: Record<string, unknown>;
  /** Readiness timeout, seconds (default 600). */
  timeout_s?: number;
  /** Return once launched, without waiting for readiness. */
  no_wait?: boolean;
  keep_on_failure?: boolean;
  dry_run?: boolean;
}

/**
 * Names passed with `--env` that look like credentials are handled as secrets (never in a manifest,
 * script, argv or dry-run), even when service.yaml does not list them.
 */
export const SECRET_LIKE = /(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|(^|_)KEY$|API_?KEY)/i;

/** Linux's limit on one argv string, including its NUL (MAX_ARG_STRLEN = 32 × 4096 bytes). */
const MAX_ARG_STRLEN = 131072;

/** Largest --timeout, seconds (7 days). */
const MAX_TIMEOUT_S = 7 * 24 * 3600;

/**
 * Env var names that `--env` refuses unless `--allow-env-override`: set from the caller's environment they would
 * replace the container's own value and change what runs (search path, preloaded libraries, interpreter setup).
 */
export const ENV_OVERRIDE_GUARDED = ['PATH', 'HOME', 'SHELL', 'LD_PRELOAD', 'LD_LIBRARY_PATH', 'LD_AUDIT', 'PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'BASH_ENV', 'ENV', 'NODE_OPTIONS'];

/** True for an address a socket on this machine can bind: wildcard, loopback, or assigned to an interface. */
function isLocalAddress(addr: string): boolean {
  if (addr === '0.0.0.0' || addr === '::' || addr === '::1' || addr.startsWith('127.')) return true;
  return Object.values(networkInterfaces()).some((list) => (list ?? []).some((i) => i.address === addr));
}

/**
 * Validate everything start needs and build the LaunchSpec, without side effects.
 * @throws UserError subclasses (exit 2)
 */
export function prepareLaunch(
  input: StartInput,
  refs: References,
  env: NodeJS.ProcessEnv,
  warn: (m: string) => void,
): { spec: LaunchSpec; image: ResolvedImage; inner: InnerCommand; platform: PlatformName } {
  const platform = checkPlatform(input.platform);
  const image = resolveImage(refs, input.network_arch, env);
  const model = parseModelPath(refs, input.model_path);
  const num_gpus = checkNumGpus(refs, input.num_gpus ?? refs.service.num_gpus.default, true);
  if (num_gpus === 0) warn('--num-gpus 0: lifecycle smoke only — no GPU is requested, the model cannot run for real.');
  // Gated HuggingFace models (Cosmos among them) fail only when the container downloads them, minutes later.
  if (model.kind === 'hf_model' && !env.HF_TOKEN)
    warn(`HF_TOKEN is not set: ${input.model_path} is downloaded from HuggingFace inside the service, and a gated model fails there, late. export HF_TOKEN=<token> if it is gated.`);
  if (input.gpu_ids?.length) {
    if (input.num_gpus !== undefined && input.num_gpus !== input.gpu_ids.length)
      throw new InvalidInputError('--gpu-ids', `--num-gpus ${input.num_gpus} does not match ${input.gpu_ids.length} id(s) in --gpu-ids`, { hint: 'Give one of them, or make them agree.' });
  }
  if (input.port !== undefined) {
    checkPort(input.port);
    if (input.port < 1024) warn(`--port ${input.port} is a privileged port (below 1024): binding it may need root, and system services expect it`);
  }
  if (input.timeout_s !== undefined && (!Number.isSafeInteger(input.timeout_s) || input.timeout_s < 1 || input.timeout_s > MAX_TIMEOUT_S))
    throw new InvalidInputError('--timeout', `--timeout must be a whole number of seconds between 1 and ${MAX_TIMEOUT_S}, got '${input.timeout_s}'`);
  const bind_address = input.bind_address ?? '127.0.0.1';
  if (!isIP(bind_address)) throw new InvalidInputError('--bind', `--bind '${bind_address}' is not an IP address`, { hint: 'Example: --bind 0.0.0.0 to listen on all interfaces.' });
  // The address is bound on this host when the platform's host port is local and it honours --bind (local-docker).
  if (descriptorOf(platform).hostPortScope === 'local' && !descriptorOf(platform).unsupported.bind_address && !isLocalAddress(bind_address))
    throw new InvalidInputError('--bind', `--bind ${bind_address} is not an address of this machine, so nothing can listen on it`, {
      hint: 'Use 127.0.0.1 (default), 0.0.0.0 (all interfaces) or one of this host\'s addresses (ip addr).',
    });
  if (bind_address === '0.0.0.0' || bind_address === '::')
    warn(`--bind ${bind_address}: the service listens on every interface; anyone who can reach this host can send it requests (there is no authentication)`);
  const shm_size = input.shm_size ?? '16g';
  if (!/^\d+[bkmg]?$/i.test(shm_size)) throw new InvalidInputError('--shm-size', `--shm-size '${shm_size}' is not a size`, { hint: 'Example: --shm-size 16g' });

  const secrets = new Set(secretNames(refs));
  const serviceSecrets = refs.service.secrets_handling.secret_env_vars;
  const secretSet = serviceSecrets.filter((n) => env[n]);
  const plain: Record<string, string> = {};
  for (const name of input.env_names ?? []) {
    checkEnvName(name);
    if (ENV_OVERRIDE_GUARDED.includes(name) && !input.allow_env_override)
      throw new InvalidInputError('--env', `--env ${name} would replace the container's own ${name} and change how it runs`, {
        hint: `Drop --env ${name}, or pass --allow-env-override if that is what you want.`,
      });
    if (refs.service.forbidden_env_vars.includes(name))
      throw new InvalidInputError('--env', `${name} must not be set for inference services (callbacks are disabled)`, { hint: `Drop --env ${name}.` });
    const v = Object.hasOwn(env, name) ? env[name] : undefined;
    if (v === undefined) throw new InvalidInputError('--env', `${name} is not set in your environment`, { hint: `export ${name}=... first; --env takes the name only.` });
    if (secrets.has(name) || SECRET_LIKE.test(name)) {
      if (!secretSet.includes(name)) secretSet.push(name);
    } else plain[name] = v;
  }
  const idle = applyIdleTimeout(refs, input.network_arch, input.idle_timeout_minutes, input.arch_options);
  const max_duration_s = input.max_duration !== undefined ? parseDuration(input.max_duration) : undefined;
  const job_id = randomUUID();
  const inner = buildInnerCommand(refs, {
    job_id,
    network_arch: input.network_arch,
    platform,
    model,
    model_key: input.model_key,
    output_dir: input.output_dir,
    arch_options: Object.keys(idle.arch_options).length ? idle.arch_options : undefined,
  });
  // Linux refuses a single argv string longer than MAX_ARG_STRLEN (131072 bytes, 32 pages) with E2BIG: the inner
  // command is one argument of `/bin/sh -c` on every platform, so a too long model path is bad input, said here.
  const innerBytes = Buffer.byteLength(inner.command);
  if (innerBytes >= MAX_ARG_STRLEN)
    throw new InvalidInputError('--model', `the container command would be ${innerBytes} bytes (model path ${Buffer.byteLength(input.model_path)} bytes); one argument may not exceed ${MAX_ARG_STRLEN - 1} bytes (Linux MAX_ARG_STRLEN)`, {
      hint: 'Use a shorter model path (a symlink or mount point inside the container, or a hf_model:// id).',
    });
  const spec: LaunchSpec = {
    job_id,
    network_arch: input.network_arch,
    image: image.image,
    inner_command: inner.command,
    num_gpus,
    gpu_ids: input.gpu_ids,
    container_port: refs.service.container_port,
    host_port: input.port,
    bind_address,
    env: { secretNames: secretSet, plain },
    shm_size,
    labels: { [LABELS.managedBy]: 'tao-infer', [LABELS.jobId]: job_id, [LABELS.arch]: input.network_arch, [LABELS.modelPath]: input.model_path.trim() },
    options: input.options ?? {},
  };
  if (max_duration_s !== undefined) {
    spec.max_duration_s = max_duration_s;
    spec.expires_at = new Date(Date.now() + max_duration_s * 1000).toISOString();
  }
  if (idle.idle_timeout_minutes !== undefined) spec.idle_timeout_minutes = idle.idle_timeout_minutes;
  return { spec, image, inner, platform };
}

/**
 * Refuse inputs the loaded platform cannot honour (its `unsupported` capabilities), before any platform call.
 * @throws InvalidInputError naming the flag and the platform's reason
 */
export function checkCapabilities(input: StartInput, spec: LaunchSpec, adapter: PlatformAdapter, platform: PlatformName): void {
  if (spec.gpu_ids?.length && adapter.unsupported.gpu_ids) throw new InvalidInputError('--gpu-ids', `--gpu-ids is not available on ${platform}: ${adapter.unsupported.gpu_ids}`);
  if (input.port !== undefined && adapter.unsupported.port) throw new InvalidInputError('--port', `--port is not available on ${platform}: ${adapter.unsupported.port}`);
  if (spec.bind_address !== '127.0.0.1' && adapter.unsupported.bind_address)
    throw new InvalidInputError('--bind', `--bind is not available on ${platform}: ${adapter.unsupported.bind_address}`);
}
