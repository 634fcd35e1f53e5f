/**
 * The library behind the CLI: start, stop, list, logs, request. Never prompts, never exits the
 * process; interactive choices come in as callbacks.
 *
 * start (spec §1–§4, contract §2–§6): validate inputs → resolve image → build the inner command →
 * preflight the platform → write the registry entry (state `starting`, host port reserved, under the
 * lock) → launch → record what the platform returned → poll readiness while watching the job.
 * The entry exists before anything is launched and is removed when the launch fails (unless
 * keepOnFailure), so no service ever runs unrecorded.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { buildInnerCommand, type InnerCommand } from './archs/command.js';
import { resolveImage, type ResolvedImage } from './archs/image.js';
import { checkEnvName, checkNumGpus, checkPort, parseModelPath } from './archs/inputs.js';
import { InvalidInputError, ServiceFailedError } from './errors.js';
import { loadAdapter, checkPlatform, descriptorOf } from './platforms/index.js';
import { loadReferences, secretNames, type References } from './references.js';
import { portField, portRange, reservePort } from './registry/ports.js';
import { Registry, type RegistryState } from './registry/store.js';
import { sendChatCompletion, type ChatResult } from './service/chat.js';
import type { VideoWriter } from './service/video-output.js';
import { waitForReadiness } from './service/readiness.js';
import { MediaFiles, buildBody, constraintsFor, readBodyFile, resolveSampling, type ChatBody, type Sampling } from './service/request-body.js';
import { resolveTarget, type ChooseService } from './service/routing.js';
import type { AdapterContext, EntryContext, LaunchPlan, LaunchSpec, Launched, PlatformAdapter, PlatformName, PortScope, RegistryEntry } from './types.js';
import { LABELS } from './labels.js';

/** Docker's words for a host port that another program bound first. */
const PORT_TAKEN = /port is already allocated|address already in use/i;

/** Where progress, warnings and readiness updates go. All optional. */
export interface Reporter {
  log?: (msg: string) => void;
  warn?: (msg: string) => void;
  /** Readiness progress: elapsed seconds and last state. */
  progress?: (elapsedS: number, state: string) => void;
  /** Launch progress lines such as an image pull (see AdapterContext.progressLine). */
  progressLine?: (line: string, important: boolean) => void;
}

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

export interface StartResult {
  job_id: string;
  entry?: RegistryEntry;
  ready: boolean;
  dry_run?: { image: ResolvedImage; inner_command: string; plan: LaunchPlan; host_port?: number };
  warnings: string[];
}

export interface Deps {
  registry?: Registry;
  env?: NodeJS.ProcessEnv;
  reporter?: Reporter;
  signal?: AbortSignal;
  /**
   * Aborts the rollback of a failed or interrupted start (the CLI: a second Ctrl-C). The rollback never uses
   * `signal`, which an interrupt has already aborted; it runs with its own bound (ROLLBACK_TIMEOUT_MS).
   */
  rollbackSignal?: AbortSignal;
  refs?: References;
}

/** Longest time the rollback of a failed or interrupted start may take to remove the service, ms. */
export const ROLLBACK_TIMEOUT_MS = 60_000;

function ctxParts(deps: Deps) {
  const env = deps.env ?? process.env;
  const registry = deps.registry ?? new Registry();
  // Loaded on first use: ls, stop and logs never parse the reference data.
  const refs = () => deps.refs ?? loadReferences();
  const warnings: string[] = [];
  const log = (m: string) => deps.reporter?.log?.(m);
  const warn = (m: string) => {
    warnings.push(m);
    deps.reporter?.warn?.(m);
  };
  return { env, registry, refs, warnings, log, warn };
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
  const job_id = randomUUID();
  const inner = buildInnerCommand(refs, {
    job_id,
    network_arch: input.network_arch,
    platform,
    model,
    model_key: input.model_key,
    output_dir: input.output_dir,
    arch_options: input.arch_options,
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
    labels: { [LABELS.managedBy]: 'tao-infer', [LABELS.jobId]: job_id, [LABELS.arch]: input.network_arch },
    options: input.options ?? {},
  };
  return { spec, image, inner, platform };
}

/** Last `n` log lines of a service; [] when logs cannot be read. */
export async function logTail(adapter: PlatformAdapter, entry: RegistryEntry, ctx: EntryContext, n = 20): Promise<string[]> {
  try {
    let text = '';
    for await (const chunk of adapter.logs(entry, { tail: n }, ctx)) text += chunk;
    return text.split(/\r?\n/).filter((l, i, a) => l !== '' || i < a.length - 1).slice(-n);
  } catch {
    return [];
  }
}

/** Headers for requests to an entry: Bearer token from the env var named in `auth_env` (never stored). */
export function authHeaders(entry: RegistryEntry, env: NodeJS.ProcessEnv): Record<string, string> {
  if (!entry.auth_env) return {};
  const token = env[entry.auth_env];
  if (!token)
    throw new InvalidInputError(entry.auth_env, `service ${entry.job_id} needs a bearer token from $${entry.auth_env}, which is not set`, {
      hint: `export ${entry.auth_env}=... and retry.`,
    });
  return { authorization: `Bearer ${token}` };
}

/**
 * Start a service. See the module comment for the order of steps.
 * @throws UserError (bad input: nothing launched, registry unchanged), PlatformError, ServiceNotReadyError, RegistryError
 */
export async function startService(input: StartInput, deps: Deps = {}): Promise<StartResult> {
  const { env, registry, warnings, log, warn, ...parts } = ctxParts(deps);
  const refs = parts.refs();
  const { spec, image, inner, platform } = prepareLaunch(input, refs, env, warn);
  const adapter = await loadAdapter(platform);
  if (spec.gpu_ids?.length && adapter.unsupported.gpu_ids) throw new InvalidInputError('--gpu-ids', `--gpu-ids is not available on ${platform}: ${adapter.unsupported.gpu_ids}`);
  if (input.port !== undefined && adapter.unsupported.port) throw new InvalidInputError('--port', `--port is not available on ${platform}: ${adapter.unsupported.port}`);
  if (spec.bind_address !== '127.0.0.1' && adapter.unsupported.bind_address)
    throw new InvalidInputError('--bind', `--bind is not available on ${platform}: ${adapter.unsupported.bind_address}`);
  // The host port a platform reserves before launch (contract §5) is a port of this machine (local-docker).
  const range = portRange(env);
  const LOCAL: PortScope = { kind: 'local' };
  const pickHostPort = (s: RegistryState, exclude?: Set<number>) =>
    reservePort(s, { scope: LOCAL, job_id: spec.job_id, bindAddress: spec.bind_address, explicit: input.port, range, exclude });

  const noRecord = async () => undefined;
  if (input.dry_run) {
    let host_port: number | undefined;
    if (adapter.reservesHostPort) {
      host_port = await pickHostPort(await registry.peek());
      spec.host_port = host_port;
    }
    const plan = await adapter.plan(spec, {
      env,
      log,
      warn,
      record: noRecord,
      allocatePort: async () => {
        throw new InvalidInputError('--dry-run', 'no port is allocated in a dry run');
      },
    });
    return { job_id: spec.job_id, ready: false, dry_run: { image, inner_command: inner.command, plan, host_port }, warnings };
  }

  const ctx: AdapterContext = {
    env,
    log,
    warn,
    signal: deps.signal,
    ...(deps.reporter?.progressLine ? { progressLine: deps.reporter.progressLine } : {}),
    record: async (fields) => {
      await registry.update(spec.job_id, fields);
    },
    allocatePort: (scope) =>
      registry.mutate(async (s) => {
        // --port names the port this host connects to; a platform that reserves its host port used it there.
        const port = await reservePort(s, { scope, job_id: spec.job_id, explicit: adapter.reservesHostPort ? undefined : input.port, range });
        const e = Object.hasOwn(s.entries, spec.job_id) ? s.entries[spec.job_id] : undefined;
        if (e) e[portField(platform, scope)] = port;
        return port;
      }),
  };
  // Refuse a taken --port before any platform call; the port itself is picked once, under the lock, when it is recorded.
  if (input.port !== undefined) await reservePort(await registry.read(), { scope: LOCAL, explicit: input.port, bindAddress: adapter.reservesHostPort ? spec.bind_address : '127.0.0.1', range });
  await adapter.preflight(spec, ctx);

  // Record before launch: state starting, host port reserved under the lock.
  const started_at = new Date().toISOString();
  const baseEntry = (): RegistryEntry => ({
    job_id: spec.job_id,
    platform,
    network_arch: spec.network_arch,
    host_url: '',
    ...(spec.host_port !== undefined && adapter.reservesHostPort ? { host_port: spec.host_port } : {}),
    started_at,
    state: 'starting',
    image: spec.image,
    model_path: input.model_path.trim(),
    num_gpus: spec.num_gpus,
    // With these, an entry left `starting` by a killed start is recognised as stale (registry/ports.ts).
    starter_pid: process.pid,
    launch_deadline: new Date(Date.parse(started_at) + (input.timeout_s ?? refs.service.readiness.default_timeout_seconds) * 1000).toISOString(),
  });
  await registry.mutate(async (s) => {
    if (adapter.reservesHostPort) spec.host_port = await pickHostPort(s);
    s.entries[spec.job_id] = baseEntry();
    s.latest = spec.job_id;
  });
  /**
   * Merge fields into our entry; when a foreign writer (e.g. the published skill's unlocked read-modify-write)
   * dropped it while we launched, record it again: something may be running, so it must be in the registry.
   */
  const recordLaunched = async (fields: Partial<RegistryEntry>): Promise<RegistryEntry> =>
    registry.mutate((s) => {
      const had = Object.hasOwn(s.entries, spec.job_id) ? s.entries[spec.job_id] : undefined;
      if (!had) warn(`the registry entry of ${spec.job_id} vanished during launch (another program rewrote the registry); recorded it again`);
      const next = { ...(had ?? baseEntry()), ...fields } as RegistryEntry;
      for (const [k, v] of Object.entries(fields)) if (v === undefined) delete next[k];
      s.entries[spec.job_id] = next;
      if (!had && !s.latest) s.latest = spec.job_id;
      return next;
    });
  log(`job_id ${spec.job_id}: launching ${spec.network_arch} on ${platform} (image ${spec.image})`);

  const ectx = { env, log, warn, signal: deps.signal };
  const cleanup = async (why: string) => {
    const entry = (await registry.get(spec.job_id)) ?? ({ job_id: spec.job_id, platform, network_arch: spec.network_arch, host_url: '', started_at } as RegistryEntry);
    if (input.keep_on_failure) {
      warn(`${why}; kept for inspection (--keep-on-failure). Remove it with: tao-infer stop ${spec.job_id}`);
      return;
    }
    // A fresh bound: the start's signal may be the interrupt that brought us here.
    const signal = AbortSignal.any([AbortSignal.timeout(ROLLBACK_TIMEOUT_MS), ...(deps.rollbackSignal ? [deps.rollbackSignal] : [])]);
    try {
      await adapter.stop(entry, { env, log, warn, signal });
    } catch (e) {
      warn(`could not remove the failed service on ${platform}: ${(e as Error).message}. The registry entry is kept so 'tao-infer stop ${spec.job_id}' can retry.`);
      return;
    }
    await registry.remove(spec.job_id);
  };

  let entry: RegistryEntry | undefined;
  try {
    const deadline = Date.now() + (input.timeout_s ?? refs.service.readiness.default_timeout_seconds) * 1000;
    let launched: Launched;
    try {
      launched = await adapter.launch(spec, { ...ctx, deadline });
    } catch (e) {
      // A host port taken between our probe and docker's bind (a foreign writer's container, another program):
      // remove what the failed run left, take the next free port under the lock and launch once more.
      if (!(adapter.reservesHostPort && input.port === undefined && spec.host_port !== undefined && PORT_TAKEN.test(String((e as Error).message)))) throw e;
      const taken = spec.host_port;
      warn(`host port ${taken} was taken by another program just before the launch; retrying once with another port`);
      await adapter.stop(baseEntry(), ectx).catch(() => undefined);
      await registry.mutate(async (s) => {
        spec.host_port = await pickHostPort(s, new Set([taken]));
        const mine = Object.hasOwn(s.entries, spec.job_id) ? s.entries[spec.job_id] : undefined;
        s.entries[spec.job_id] = { ...(mine ?? baseEntry()), host_port: spec.host_port };
      });
      launched = await adapter.launch(spec, { ...ctx, deadline });
    }
    const fields = Object.fromEntries(Object.entries(launched).filter(([, v]) => v !== undefined)) as Partial<RegistryEntry>;
    entry = await recordLaunched({ ...fields, state: 'started' });
  } catch (e) {
    await cleanup(`launch failed`);
    throw e;
  }
  log(`Inference service started.\n  Job ID : ${entry.job_id}\n  Arch   : ${entry.network_arch}\n  URL    : ${entry.host_url}/v1/chat/completions`);
  if (input.no_wait) return { job_id: spec.job_id, entry, ready: false, warnings };

  try {
    await waitForReadiness({
      job_id: spec.job_id,
      host_url: entry.host_url,
      readiness: refs.request.readiness,
      timeoutS: input.timeout_s ?? refs.service.readiness.default_timeout_seconds,
      headers: authHeaders(entry, env),
      authEnv: entry.auth_env,
      onProgress: deps.reporter?.progress,
      signal: deps.signal,
      logTail: () => logTail(adapter, entry!, ectx),
      checkAlive: async () => {
        const st = await adapter.status(entry!, ectx);
        if (st.state === 'error' || st.state === 'complete' || st.state === 'canceled') {
          const tail = await logTail(adapter, entry!, ectx);
          throw new ServiceFailedError(
            spec.job_id,
            `the ${platform} job ${st.native ?? st.state}${st.exitCode !== undefined ? ` with exit code ${st.exitCode}` : ''}${st.reason ? ` (${st.reason})` : ''} before it was ready`,
            st.state,
            tail,
            st.exitCode,
          );
        }
      },
    });
  } catch (e) {
    // Any failure while waiting (also an interrupt) removes the service unless --keep-on-failure.
    await cleanup(e instanceof Error ? e.message.split('\n')[0]! : 'start failed');
    throw e;
  }
  return { job_id: spec.job_id, entry, ready: true, warnings };
}

export interface RequestInput {
  job_id?: string;
  network_arch?: string;
  prompt?: string;
  system?: string;
  images?: string[];
  videos?: string[];
  /** Path of a JSON body file. */
  body_file?: string;
  /** Sampling values given by flag (text or number); missing ones take the arch default. */
  sampling?: Record<string, string | number | undefined>;
  /** Seconds to keep retrying while the service still loads (default 120). */
  retry_window_s?: number;
}

export interface PreparedRequest {
  entry: RegistryEntry;
  body: ChatBody;
  sampling: Sampling;
  defaulted: string[];
  /** Local media files whose base64 text is streamed into the body at send time. */
  files?: MediaFiles;
}

/** Questions prepareRequest asks a person (the CLI passes them only when interactive). */
export interface RequestHooks {
  /** Several services match: pick one (never chosen silently). */
  choose?: ChooseService;
  /**
   * After routing, when no --body file is given: the prompt is missing (`need.prompt`) and/or the arch needs
   * media and none was given (`need.media`, request.yaml `requires_media`). Returns what the person gave.
   */
  askContent?: (entry: RegistryEntry, need: { prompt: boolean; media: boolean }) => Promise<{ prompt?: string; images?: string[]; videos?: string[] }>;
  /** Sampling parameters not given by flag or body: the values the person chose (text or number). */
  askSampling?: (entry: RegistryEntry, missing: string[]) => Promise<Record<string, string | number | undefined>>;
}

/**
 * Route and build a request without sending: target entry (routing rules, contract §7), checked body,
 * sampling parameters actually used. The hooks (interactive only) are asked in the order a person expects:
 * which service, then the prompt and media, then each sampling parameter not given by flag.
 * @throws UserError subclasses (no such service, several and no `choose`, bad media, missing media or prompt)
 */
export async function prepareRequest(
  input: RequestInput,
  hooks: RequestHooks = {},
  deps: Deps = {},
): Promise<PreparedRequest> {
  const { registry, ...parts } = ctxParts(deps);
  const refs = parts.refs();
  const state = await registry.read();
  const entry = await resolveTarget(state, { job_id: input.job_id, network_arch: input.network_arch }, hooks.choose);
  if (entry.state === 'starting' || !entry.host_url)
    throw new InvalidInputError('--job', `service ${entry.job_id} is still starting and has no host_url yet`, { hint: 'Wait for start to finish (tao-infer ls).' });
  const fileBody = input.body_file ? await readBodyFile(input.body_file) : undefined;
  if (hooks.askContent && !fileBody) {
    const need = {
      prompt: !input.prompt,
      media: constraintsFor(refs, entry.network_arch).requires_media && !input.images?.length && !input.videos?.length,
    };
    if (need.prompt || need.media) {
      const a = await hooks.askContent(entry, need);
      input = { ...input, prompt: input.prompt || a.prompt, images: [...(input.images ?? []), ...(a.images ?? [])], videos: [...(input.videos ?? []), ...(a.videos ?? [])] };
    }
  }
  const given: Record<string, string | number | undefined> = {};
  const fields = Object.keys(constraintsFor(refs, entry.network_arch).sampling_fields);
  if (fileBody) for (const f of fields) if (typeof fileBody[f] === 'number' || typeof fileBody[f] === 'string') given[f] = fileBody[f] as string | number;
  for (const [k, v] of Object.entries(input.sampling ?? {})) if (v !== undefined) given[k] = v;
  // Fields of another arch given by flag are rejected by resolveSampling / crossCheck.
  const missing = fields.filter((f) => given[f] === undefined);
  if (hooks.askSampling && missing.length) Object.assign(given, await hooks.askSampling(entry, missing));
  const { values, defaulted } = resolveSampling(refs, entry.network_arch, given);
  const files = new MediaFiles();
  const body = buildBody(refs, {
    network_arch: entry.network_arch,
    prompt: input.prompt,
    system: input.system,
    images: input.images,
    videos: input.videos,
    sampling: values,
    body: fileBody,
  }, files);
  return { entry, body, sampling: values, defaulted, files };
}

/**
 * Send a prepared request (contract §7 response handling). Local media are streamed base64 into the body;
 * the reply is read at most `max_reply_bytes` (default 512 MiB); with `video_writer`, a video answer is
 * decoded to disk as it arrives and reported in `saved_video`.
 * @throws RequestRejectedError (also `reply_too_large`), ServiceNotReadyError
 */
export async function sendRequest(
  p: PreparedRequest,
  opts: {
    retry_window_s?: number;
    /** Per-attempt client timeout, seconds; never below request.yaml's client_timeout_seconds (300). */
    timeout_s?: number;
    onRetry?: (status: number, type: string, elapsedS: number) => void;
    max_reply_bytes?: number;
    video_writer?: (mime: string) => VideoWriter;
  } = {},
  deps: Deps = {},
): Promise<ChatResult> {
  const { env, refs } = ctxParts(deps);
  return sendChatCompletion(p.body, {
    job_id: p.entry.job_id,
    host_url: p.entry.host_url,
    request: refs().request,
    headers: authHeaders(p.entry, env),
    retryWindowS: opts.retry_window_s,
    ...(opts.timeout_s !== undefined ? { timeoutS: opts.timeout_s } : {}),
    onRetry: opts.onRetry,
    signal: deps.signal,
    files: p.files,
    maxReplyBytes: opts.max_reply_bytes,
    videoWriter: opts.video_writer,
  });
}
