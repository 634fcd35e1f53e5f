/**
 * The cheap description of a platform (SkyPilot-style: what every backend declares once). Importing a
 * descriptor costs nothing: no SDK, no adapter code; `load()` imports the adapter when a command needs it.
 * `src/platforms/index.ts` lists the descriptors; the CLI builds `start`/`stop`/`ls` flags from them.
 */
import type { EntryDefault } from './entry-defaults.js';
import type { Capability, EntryContext, PlatformAdapter, PlatformOptionSpec, RegistryEntry } from '../types.js';

/** What `afterStop` receives: the services of this platform that `stop` just stopped, and the option values. */
export interface AfterStopContext extends Pick<EntryContext, 'env' | 'log' | 'warn'> {
  /** Entries of this platform stopped by this command. */
  stopped: RegistryEntry[];
  /** Entries still in the registry afterwards (all platforms). */
  remaining: RegistryEntry[];
  /** This platform's stop option values by key (only the ones given). */
  options: Record<string, unknown>;
}

export interface PlatformDescriptor<N extends string = string> {
  readonly name: N;
  /** Platform flags per command; each becomes a flag of that command (shared long names merge). */
  readonly options: {
    start: PlatformOptionSpec[];
    /** `stop` flags; valid only when every service stopped runs on a platform declaring them. */
    stop?: PlatformOptionSpec[];
    ls?: PlatformOptionSpec[];
    /** `discover` flags (where to look: SSH target, namespace, ...); never required, never prompted. */
    discover?: PlatformOptionSpec[];
  };
  /** Capabilities this platform lacks, each with the reason shown to users. */
  readonly unsupported: Partial<Record<Capability, string>>;
  /** The lifecycle reserves `host_port` (a port of this machine) in the registry before launch (the service publishes it). */
  readonly reservesHostPort: boolean;
  /**
   * Where an entry's `host_port` is bound: `local` (this machine: a published container port or a local
   * forwarder), `remote` (another host, e.g. a VM; its `local_port` is the local side), or none.
   */
  readonly hostPortScope?: 'local' | 'remote';
  /**
   * How `start --max-duration` is enforced (issue 10 point 6): `platform` — the platform ends the service
   * itself; `prune` — the platform has no run-time limit, the expiry is recorded (entry `expires_at`, plus a
   * label/annotation/env var on the platform object) and `tao-infer prune` ends it. `how` is shown to users.
   */
  readonly maxDuration: { enforcedBy: 'platform' | 'prune'; how: string };
  /**
   * Env defaults for `platform_data` keys an entry lacks (entries written by the published skill, contract §5),
   * applied by the routing before status/logs/stop/tunnel; the default used is reported (ls `note`, a warning).
   */
  readonly entryDefaults?: readonly EntryDefault[];
  /** With `hostPortScope: 'remote'`: the host an entry's `host_port` is bound on (its port scope, src/registry/ports.ts). */
  remoteHost?(entry: RegistryEntry): string | undefined;
  /** Import the adapter (and its SDK) lazily. */
  load(): Promise<PlatformAdapter>;
  /**
   * Runs after `stop` when one of this platform's stop options was given (e.g. brev `--delete-instance`).
   * Resolves the fields added to stop's JSON output.
   */
  afterStop?(ctx: AfterStopContext): Promise<Record<string, unknown>>;
}
