/**
 * Shared shapes of tao-infer: registry entries (contract §5), launch specs, job states and the
 * platform adapter interface every platform implements.
 */

import type { ForwarderSupport } from './forwarder/forwarder.js';
import type { PlatformName } from './platforms/index.js';

export { PLATFORM_NAMES, type PlatformName } from './platforms/index.js';

/**
 * One service in the registry file (contract §5). The first block is what NVIDIA's published skill
 * writes and reads; entries written by it carry only those keys and must be accepted. The second
 * block is tao-infer's own additions; all optional. Never holds a secret value.
 */
export interface RegistryEntry {
  job_id: string;
  platform: string;
  /** slurm job id, k8s Job name, lepton deployment name; absent for docker/brev (container name = job_id). */
  platform_job_id?: string;
  network_arch: string;
  /** Base URL requests go to, e.g. `http://localhost:8080` (no trailing slash). Empty while `starting`. */
  host_url: string;
  /** `http://{job_id}:8080`, reachable container-to-container on the docker network (local-docker, brev). */
  docker_url?: string;
  /** Host-side port (local-docker, brev: on the host/instance; slurm/k8s port-forward: the local tunnel port). */
  host_port?: number;
  slurm_node?: string;
  /** ISO-8601 UTC. */
  started_at: string;

  /** `starting` from before launch until the platform confirmed it; `started` afterwards. Absent = started (skill entries). */
  state?: 'starting' | 'started';
  image?: string;
  model_path?: string;
  num_gpus?: number;
  /** PID of a detached local forwarder process (slurm tunnel, k8s port-forward, brev port-forward). */
  forwarder_pid?: number;
  /** Local port the forwarder listens on when it differs from host_port (brev: remote host_port vs local port). */
  local_port?: number;
  /** Name of the env var holding a bearer token to send with requests (lepton); the value is never stored. */
  auth_env?: string;
  /** Platform-specific, non-secret data the adapter needs for status/logs/stop (ssh target, namespace, instance...). */
  platform_data?: Record<string, unknown>;
  /**
   * ISO-8601 UTC instant after which the service is over (`start --max-duration`, or the Slurm time limit).
   * Enforced by the platform where it can (slurm `--time`, kubernetes `activeDeadlineSeconds`); on
   * local-docker, brev and lepton it is a recorded expiry (docker label `tao-infer.expires_at`) that `prune` enforces.
   */
  expires_at?: string;
  /** The service shuts itself down after this many idle minutes (`start --idle-timeout`, or the arch's default). */
  idle_timeout_minutes?: number;
  /** Unknown keys written by other tools are preserved. */
  [key: string]: unknown;
}

/**
 * Normalised job state (contract §8 mappings). `gone`: the platform answered and no longer has the job
 * (docker: no such container; k8s: Job 404; slurm: unknown job id; lepton: 404; brev: container missing).
 * `unknown`: the platform could not be asked, or its answer could not be mapped.
 */
export type JobStateName = 'pending' | 'running' | 'complete' | 'error' | 'canceled' | 'gone' | 'unknown';

/** States after which the service does not come back: `prune` removes entries in these (never `unknown`). */
export const ENDED_STATES: readonly JobStateName[] = ['complete', 'error', 'canceled', 'gone'];

export interface JobState {
  state: JobStateName;
  /** The platform's own state word(s), e.g. `exited`, `RUNNING`, `ImagePullBackOff`. */
  native?: string;
  /** Human-readable reason users need, e.g. `Insufficient nvidia.com/gpu`, `OOMKilled`. */
  reason?: string;
  exitCode?: number;
  node?: string;
  /** Which environment default stood in for platform data the entry lacks (src/platforms/entry-defaults.ts). */
  note?: string;
}

/** Environment handed to the service. Secret values are never in here: only their names. */
export interface EnvSpec {
  /** Names of secret env vars that are set in the caller's environment (values read from `process.env` by the adapter at the last moment). */
  secretNames: string[];
  /** Non-secret env vars, name → value. */
  plain: Record<string, string>;
}

/** Everything a platform needs to launch one service. Built by `src/lifecycle.ts`. */
export interface LaunchSpec {
  job_id: string;
  network_arch: string;
  image: string;
  /** The inner shell command (contract §3), run as `/bin/sh -c <inner_command>` (lepton: `/bin/bash -c`). */
  inner_command: string;
  /** GPUs to request; 0 only for the explicit lifecycle smoke (no GPU flags). */
  num_gpus: number;
  /** Explicit device ids (local-docker `--gpus '"device=0,1"'`). */
  gpu_ids?: string[];
  /** Container port the service listens on: always 8080 (contract §3). */
  container_port: number;
  /** Host port reserved in the registry for platforms that need one (local-docker, brev). */
  host_port?: number;
  /** Address the host port binds to (local-docker `-p ADDR:host_port:8080`), default 127.0.0.1. */
  bind_address: string;
  env: EnvSpec;
  /** Shared memory size for the container, docker syntax (e.g. `16g`). */
  shm_size: string;
  /** Discovery labels (`tao-infer.job_id`, `tao-infer.network_arch`, `tao-infer.managed-by`). */
  labels: Record<string, string>;
  /** Platform-specific option values keyed by option `key` (see PlatformOptionSpec). */
  options: Record<string, unknown>;
  /** `start --max-duration` in seconds: the limit the platform enforces (slurm `--time`, k8s `activeDeadlineSeconds`). */
  max_duration_s?: number;
  /** Idle minutes after which the service ends itself (already in inner_command as the arch's own flag). */
  idle_timeout_minutes?: number;
  /** ISO-8601 UTC: now + max_duration_s, carried in labels/annotations/env so the expiry can be read back from the platform. */
  expires_at?: string;
}

/** What `--dry-run` prints: the steps start would take, secrets by name only. */
export interface LaunchPlan {
  platform: PlatformName;
  steps: PlanStep[];
}

export interface PlanStep {
  description: string;
  /** An argv (shown shell-quoted) or a ready-to-show command string. */
  command?: string[] | string;
  /** HTTP calls: method + url + body (secret values replaced by their names). */
  http?: { method: string; url: string; body?: unknown };
  /** Documents such as a job script or manifests, shown verbatim. */
  document?: { name: string; text: string };
}

/** What launch returns once the service has an address (it does not wait for readiness). */
export interface Launched {
  host_url: string;
  platform_job_id?: string;
  docker_url?: string;
  host_port?: number;
  slurm_node?: string;
  forwarder_pid?: number;
  local_port?: number;
  auth_env?: string;
  platform_data?: Record<string, unknown>;
  /** When the platform's own limit ends the service (slurm: RUNNING + time limit); overrides the spec's. */
  expires_at?: string;
}

export interface LogOptions {
  follow?: boolean;
  /** Last N lines (undefined = all). */
  tail?: number;
  signal?: AbortSignal;
}

/** Where a port lives: this machine, or a remote host (brev: an instance) whose ports are its own (src/registry/ports.ts). */
export type PortScope = { kind: 'local' } | { kind: 'remote'; host: string };

/**
 * Allocates a port for this job under the registry lock by the port policy (src/registry/ports.ts: range, scopes,
 * `--port`) and records it on this job's entry. `{ kind: 'local' }`: a port on this machine for a local forwarder
 * (recorded as `host_port`, or `local_port` when the platform's host ports are remote); `{ kind: 'remote', host }`:
 * a host port on that remote host (brev: the instance), recorded as `host_port`.
 */
export type PortAllocator = (scope: PortScope) => Promise<number>;

/** Context handed to adapters by the lifecycle. Adapters never prompt and never exit. */
export interface AdapterContext {
  env: NodeJS.ProcessEnv;
  /** Progress for people (stderr). Never pass a secret value. */
  log: (msg: string) => void;
  /** Warnings (stderr, also collected for --json). */
  warn: (msg: string) => void;
  /** Persist fields on this job's registry entry right away (e.g. platform_job_id as soon as it exists). */
  record: (fields: Partial<RegistryEntry>) => Promise<void>;
  allocatePort: PortAllocator;
  signal?: AbortSignal;
  /** Overall deadline for launch, epoch ms. */
  deadline?: number;
  /** A progress line (e.g. an image pull) that replaces the previous one on a TTY; `important` lines are also printed when not on a TTY. */
  progressLine?: (line: string, important: boolean) => void;
}

/** Context for status/logs/stop on an existing entry. */
export interface EntryContext {
  env: NodeJS.ProcessEnv;
  log: (msg: string) => void;
  warn: (msg: string) => void;
  signal?: AbortSignal;
}

/** Context for `discover`: the platform's discover option values (e.g. slurm SSH target, k8s namespace). */
export interface DiscoverContext extends EntryContext {
  options: Record<string, unknown>;
}

/**
 * One service found on a platform by its labels/markers, as a registry entry rebuilt from them
 * (job_id, network_arch, model_path, started_at, platform_job_id, non-secret platform_data).
 */
export interface DiscoveredService {
  /** The entry to add; without `forwarder_pid` (the generic discover starts the forwarder). */
  entry: RegistryEntry;
  live: JobState;
  /**
   * The entry reaches its service through a local forwarder listening on a port of this machine, to be
   * allocated under the registry lock (contract §5 port rule, same platform) into this field.
   */
  localPortField?: 'host_port' | 'local_port';
}

/** What `stop` found on the platform. */
export interface StopOutcome {
  /** The platform object no longer existed (nothing to stop). */
  already_gone?: boolean;
}

export type Capability = 'gpu_ids' | 'bind_address' | 'logs_follow' | 'port' | 'zero_gpus';

/**
 * A platform adapter (one per platform, loaded lazily by `src/platforms/index.ts`).
 * Adapters use `LaunchSpec.env.secretNames` and read values from `ctx.env` only when handing them
 * to the platform through a channel that is not argv (stdin, env of a child, Secret object, API body of a secret call).
 */
export interface PlatformAdapter {
  readonly name: PlatformName;
  /** Capabilities this platform lacks, each with the reason shown to users. */
  readonly unsupported: Partial<Record<Capability, string>>;
  /** Does this platform need a host port reserved in the registry before launch (local-docker, brev)? */
  readonly reservesHostPort: boolean;
  /** Checks credentials, CLI presence, reachability. Throws PlatformUnavailableError with a fix. */
  preflight(spec: LaunchSpec, ctx: AdapterContext): Promise<void>;
  /** What launch would do, secrets by name only. Must not contact the platform in a way that changes anything. */
  plan(spec: LaunchSpec, ctx: AdapterContext): Promise<LaunchPlan>;
  /**
   * Launch and return once the service has an address (slurm: job RUNNING + tunnel up; k8s: Service exposed).
   * Throws LaunchFailedError (with log tail) when the job fails before that. Does not wait for readiness.
   * Must call ctx.record({platform_job_id}) as soon as the platform assigned an id, so an interrupted start can be stopped.
   */
  launch(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched>;
  status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState>;
  /** Optional: the states of several entries in one platform call (used by `ls`), in the order given. */
  statusMany?(entries: RegistryEntry[], ctx: EntryContext): Promise<JobState[]>;
  /** Log chunks (text, may span lines). With follow, ends when the job ends or signal aborts. */
  logs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string>;
  /**
   * Idempotent: an already-gone job resolves `{ already_gone: true }`. Removes platform secrets (the
   * routing ends the forwarder).
   */
  stop(entry: RegistryEntry, ctx: EntryContext): Promise<StopOutcome | void>;
  /**
   * Optional: find the services tao-infer launched on this platform (by the labels / markers `launch`
   * sets), reachable with the caller's credentials and `ctx.options`. Read-only on the platform.
   * @throws PlatformError / UserError when the platform cannot be asked (reported as "not reachable").
   */
  discover?(ctx: DiscoverContext): Promise<DiscoveredService[]>;
  /**
   * Optional: the platform reaches its services through a local forwarder (slurm tunnel, k8s port-forward,
   * brev ssh forward). The routing in `src/platforms/routing.ts` then stops it with the service, notes in
   * `status` when it is down, and restarts it for `tao-infer tunnel` (src/forwarder/).
   */
  readonly forwarder?: ForwarderSupport;
  /**
   * Prompt choices for a required `start` option that has no value (the CLI asks on a TTY only), looked up
   * on the platform: brev `instance`, lepton `resourceShape`, slurm `partition`. `options` holds the values
   * gathered so far (earlier options in the table, e.g. the SSH target). Resolves undefined when it has
   * none to offer; the CLI then asks for free text. May throw; the CLI treats a failure as "no choices".
   */
  suggest?(key: string, env: NodeJS.ProcessEnv, options: Record<string, unknown>): Promise<string[] | undefined>;
}

/**
 * A platform-specific `start` option, declared in `src/platforms/<name>/options.ts` (cheap to import;
 * no SDK). The CLI turns each into a flag; a missing required one is prompted on a TTY or is a usage
 * error naming the flag otherwise.
 */
export interface PlatformOptionSpec {
  /** Key in LaunchSpec.options. */
  key: string;
  /** commander flag syntax, e.g. `--slurm-host <host>`, `--skip-capacity-check`. */
  flags: string;
  description: string;
  /** Env var consulted when the flag is absent. */
  env?: string;
  default?: string | boolean | number;
  /** Required for launch: prompted when interactive and unset. */
  required?: boolean;
  /** Optional, but asked when interactive and unset (an empty answer leaves it unset), e.g. slurm --account. */
  askIfInteractive?: boolean;
  /** Allowed values (also used as prompt choices). */
  choices?: string[];
  /** Parse as integer. */
  integer?: boolean;
  /** Repeatable flag collecting an array. */
  repeatable?: boolean;
}
