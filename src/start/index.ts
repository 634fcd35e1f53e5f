/**
 * startService: prepare → reserve → launch → await ready → roll back (spec §1–§4, contract §2–§6).
 * prepare validates inputs and builds the LaunchSpec (./prepare.ts); the adapter's preflight runs before
 * anything is recorded; reserve writes the entry (state `starting`, host port picked under the lock); launch,
 * await ready and roll back are in ./steps.ts. Never prompts, never exits.
 */
import type { ResolvedImage } from '../archs/image.js';
import { InvalidInputError } from '../errors.js';
import { ctxParts, type Deps } from '../deps.js';
import { descriptorOf, loadAdapter } from '../platforms/index.js';
import { portRange } from '../registry/ports.js';
import type { LaunchPlan, RegistryEntry } from '../types.js';
import { checkCapabilities, prepareLaunch, type StartInput } from './prepare.js';
import { adapterContext, checkPortBeforeLaunch, probeHostPorts, reserveHostPort, runStart, type StartRun } from './steps.js';

export interface StartResult {
  job_id: string;
  entry?: RegistryEntry;
  ready: boolean;
  dry_run?: { image: ResolvedImage; inner_command: string; plan: LaunchPlan; host_port?: number };
  warnings: string[];
}

/**
 * Start a service. See the module comment for the order of steps.
 * @throws UserError (bad input: nothing launched, registry unchanged), PlatformError, ServiceNotReadyError, RegistryError;
 *   InterruptedError when `deps.signal` aborts (the service is rolled back first)
 */
export async function startService(input: StartInput, deps: Deps = {}): Promise<StartResult> {
  const { env, registry, warnings, log, warn, ...parts } = ctxParts(deps);
  const refs = parts.refs();
  const { spec, image, inner, platform } = prepareLaunch(input, refs, env, warn);
  const range = portRange(env);
  // While the adapter loads and the platform answers the preflight: probe the likely host ports, so that
  // reserve holds the registry lock only for the pick and the write.
  const probing = !input.dry_run && descriptorOf(platform).reservesHostPort && input.port === undefined ? probeHostPorts(registry, spec, range) : undefined;
  const adapter = await loadAdapter(platform);
  checkCapabilities(input, spec, adapter, platform);
  const run: StartRun = {
    input,
    spec,
    platform,
    adapter,
    registry,
    env,
    log,
    warn,
    reporter: deps.reporter,
    signal: deps.signal,
    rollbackSignal: deps.rollbackSignal,
    range,
    timeoutS: input.timeout_s ?? refs.service.readiness.default_timeout_seconds,
    readiness: refs.request.readiness,
    started_at: '',
  };

  if (spec.max_duration_s !== undefined) log(`--max-duration on ${platform}: ${descriptorOf(platform).maxDuration.how} (expires ${spec.expires_at})`);
  if (input.dry_run) {
    let host_port: number | undefined;
    if (adapter.reservesHostPort) spec.host_port = host_port = await reserveHostPort(run, await registry.peek());
    const plan = await adapter.plan(spec, {
      ...adapterContext(run),
      record: async () => undefined,
      allocatePort: async () => {
        throw new InvalidInputError('--dry-run', 'no port is allocated in a dry run');
      },
    });
    return { job_id: spec.job_id, ready: false, dry_run: { image, inner_command: inner.command, plan, host_port }, warnings };
  }

  registry.prepareWrite();
  await checkPortBeforeLaunch(run);
  try {
    await adapter.preflight(spec, adapterContext(run));
  } finally {
    run.probed = await probing;
  }
  log(`job_id ${spec.job_id}: launching ${spec.network_arch} on ${platform} (image ${spec.image})`);
  const { entry, ready } = await runStart(run);
  return { job_id: spec.job_id, entry, ready, warnings };
}
