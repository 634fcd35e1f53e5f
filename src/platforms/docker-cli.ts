/**
 * Docker CLI knowledge shared by local-docker and brev (a Brev instance runs the same docker
 * invocation): the `docker run` argv (contract §8 local-docker), the `docker inspect` state mapping, and the
 * docker CLI's config file. Secrets and chosen env vars appear as `-e NAME` only: values travel in the docker
 * client's environment.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LABELS } from '../labels.js';
import type { JobState, LaunchSpec, RegistryEntry } from '../types.js';
import { readRegularFileSync } from '../util/input-file.js';

/** Largest docker CLI config file read. */
const MAX_DOCKER_CONFIG_BYTES = 1024 * 1024;

/** The parts of the docker CLI's config.json tao-infer reads (docker/cli cli/config/configfile/file.go ConfigFile). */
export interface DockerConfigFile {
  currentContext?: unknown;
  auths?: Record<string, { auth?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/**
 * The docker CLI's config.json (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`), parsed: `{}` when
 * there is none; undefined when it cannot be used (unreadable, not a regular file, over 1 MiB, not a JSON object).
 * Read synchronously (a file of a few KiB) and bounded. Never throws.
 */
export function dockerConfig(env: NodeJS.ProcessEnv): DockerConfigFile | undefined {
  const file = join(env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker'), 'config.json');
  let text: string;
  try {
    text = readRegularFileSync(file, 'DOCKER_CONFIG', MAX_DOCKER_CONFIG_BYTES).toString('utf8');
  } catch (e) {
    return ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' ? {} : undefined;
  }
  try {
    const cfg = JSON.parse(text) as unknown;
    return cfg && typeof cfg === 'object' && !Array.isArray(cfg) ? (cfg as DockerConfigFile) : undefined;
  } catch {
    return undefined;
  }
}

export interface DockerRunOptions {
  /** docker network (`${DOCKER_NETWORK:-tao_default}`). */
  network: string;
  /** `--ipc=host` instead of `--shm-size` (opt-in, local-docker `--ipc-host`). */
  ipcHost?: boolean;
  /** `--ulimit memlock=-1 --ulimit stack=67108864` (opt-in, local-docker `--ulimit-memlock`). */
  ulimitMemlock?: boolean;
  /** `--pull never`: docker run answers "No such image" instead of pulling on its own (local-docker pulls as its own step). */
  pullNever?: boolean;
}

/**
 * NVIDIA's recommended flags for its PyTorch-based NGC containers: "--ipc=host" or "--shm-size=<size>
 * --ulimit memlock=-1 --ulimit stack=67108864" (NVIDIA Deep Learning Frameworks documentation, "Running
 * PyTorch" / container user guide: PyTorch uses shared memory between processes, and the default limits are too small).
 */
export const NGC_ULIMITS = ['--ulimit', 'memlock=-1', '--ulimit', 'stack=67108864'] as const;

/** GPU flags: `--gpus N`, `--gpus "device=0,1"` (the quotes are part of docker's value), none for 0 GPUs. */
export function gpuArgs(spec: Pick<LaunchSpec, 'num_gpus' | 'gpu_ids'>): string[] {
  if (spec.gpu_ids?.length) return ['--gpus', `"device=${spec.gpu_ids.join(',')}"`];
  if (spec.num_gpus > 0) return ['--gpus', String(spec.num_gpus)];
  return [];
}

/**
 * argv after `docker` for `docker run -d`: name = job_id, labels (with `tao-infer.expires_at` for --max-duration), `-p <bind>:<host_port>:8080`, network,
 * shm size (or `--ipc host`), the NGC ulimits when asked, GPU flags, `-e NAME` for every env var (secret or plain), image, `/bin/sh -c <inner>`.
 * `--rm` is kept off so an exited container can be inspected.
 * @throws Error when spec.host_port is missing (the lifecycle reserves it before launch).
 */
export function dockerRunArgs(spec: LaunchSpec, opts: DockerRunOptions): string[] {
  if (spec.host_port === undefined) throw new Error('dockerRunArgs: host_port not reserved');
  const args = ['run', '-d', ...(opts.pullNever ? ['--pull', 'never'] : []), '--name', spec.job_id];
  for (const [k, v] of Object.entries(spec.labels)) args.push('--label', `${k}=${v}`);
  // Docker has no run-time limit: the expiry of --max-duration is a label that `tao-infer prune` enforces.
  if (spec.expires_at) args.push('--label', `${LABELS.expiresAt}=${spec.expires_at}`);
  args.push('-p', `${spec.bind_address}:${spec.host_port}:${spec.container_port}`);
  args.push('--network', opts.network);
  if (opts.ipcHost) args.push('--ipc', 'host');
  else args.push('--shm-size', spec.shm_size);
  if (opts.ulimitMemlock) args.push(...NGC_ULIMITS);
  args.push(...gpuArgs(spec));
  for (const name of [...spec.env.secretNames, ...Object.keys(spec.env.plain)]) args.push('-e', name);
  args.push(spec.image, '/bin/sh', '-c', spec.inner_command);
  return args;
}

/** Environment for the docker client process: caller's env plus the plain values (secrets already in it). */
export function dockerClientEnv(spec: LaunchSpec, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...env, ...spec.env.plain };
}

/** docker inspect State → normalised state (contract §8: created/restarting pending, running/paused running, exited 0 complete / non-zero error, else unknown). */
export function mapDockerState(s: { Status?: string; ExitCode?: number; OOMKilled?: boolean; Error?: string }): JobState {
  const native = s.Status ?? 'unknown';
  const exitCode = s.ExitCode;
  switch (native) {
    case 'created':
    case 'restarting':
      return { state: 'pending', native };
    case 'running':
    case 'paused':
      return { state: 'running', native };
    case 'exited':
      return exitCode === 0
        ? { state: 'complete', native, exitCode }
        : { state: 'error', native, exitCode, ...(s.OOMKilled ? { reason: 'OOMKilled' } : s.Error ? { reason: s.Error } : {}) };
    default:
      return { state: 'unknown', native };
  }
}

/** The parts of `docker inspect` output discover reads (Docker Engine API ContainerInspectResponse). */
export interface DockerInspect {
  Name?: string;
  Created?: string;
  State?: { Status?: string; ExitCode?: number; OOMKilled?: boolean; Error?: string };
  Config?: { Image?: string; Labels?: Record<string, string> | null };
  HostConfig?: { NetworkMode?: string; PortBindings?: Record<string, Array<{ HostIp?: string; HostPort?: string }> | null> };
  NetworkSettings?: { Ports?: Record<string, Array<{ HostIp?: string; HostPort?: string }> | null> };
}

/** host part of host_url for a published port's bind address (as launch builds it). */
export function urlHost(bind: string): string {
  return bind === '0.0.0.0' || bind === '127.0.0.1' || bind === '' ? 'localhost' : bind.includes(':') ? `[${bind}]` : bind;
}

/**
 * Rebuild a registry entry from a labelled container: job_id, network_arch, model_path and started_at from
 * its labels (src/labels.ts), host_port and bind address from the binding of container port 8080, the
 * network from HostConfig (for brev the caller replaces host_url and adds the instance). undefined when the labels lack the job_id or arch (not a tao-infer service).
 */
export function entryFromContainer(c: DockerInspect, platform: string): RegistryEntry | undefined {
  const labels = c.Config?.Labels ?? {};
  const job_id = labels[LABELS.jobId];
  const network_arch = labels[LABELS.arch];
  if (!job_id || !network_arch) return undefined;
  // A running container shows its binding in NetworkSettings.Ports; an exited one only in HostConfig.PortBindings.
  const binding = (c.NetworkSettings?.Ports?.['8080/tcp'] ?? c.HostConfig?.PortBindings?.['8080/tcp'] ?? [])[0];
  const host_port = binding?.HostPort ? Number(binding.HostPort) : undefined;
  const bind = binding?.HostIp || '127.0.0.1';
  const entry: RegistryEntry = {
    job_id,
    platform,
    network_arch,
    host_url: host_port ? `http://${urlHost(bind)}:${host_port}` : '',
    docker_url: `http://${job_id}:8080`,
    started_at: labels[LABELS.startedAt] || (c.Created ? new Date(c.Created).toISOString() : new Date().toISOString()),
    platform_data: { network: c.HostConfig?.NetworkMode ?? 'tao_default', bind_address: bind, discovered: true },
  };
  if (host_port) entry.host_port = host_port;
  if (c.Config?.Image) entry.image = c.Config.Image;
  if (labels[LABELS.modelPath]) entry.model_path = labels[LABELS.modelPath];
  return entry;
}
