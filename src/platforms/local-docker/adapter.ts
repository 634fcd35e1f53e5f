/**
 * local-docker: the docker CLI on this host (or on `DOCKER_HOST`, unchanged), contract §8.
 * Launch is one `docker run -d --pull never --name <job_id> -p <bind>:<host_port>:8080 ...` in the common case
 * (image present, network there). Otherwise docker says what is missing and it is made, then the run repeated:
 * "No such image" → the image is pulled with progress (./pull.ts); "network ... not found" → the container docker
 * created is removed and the network created. A daemon that does not answer fails the launch with nothing
 * created. Status from the Engine API (./engine.ts) or `docker inspect`, logs from `docker logs`, stop with `docker rm -f`.
 */
import { CommandFailedError, InvalidInputError, PlatformUnavailableError } from '../../errors.js';
import { descriptor } from './descriptor.js';
import type {
  AdapterContext,
  DiscoverContext,
  DiscoveredService,
  EntryContext,
  JobState,
  LaunchPlan,
  LaunchSpec,
  Launched,
  LogOptions,
  PlatformAdapter,
  RegistryEntry,
  StopOutcome,
} from '../../types.js';
import { formatArgv } from '../../util/shell.js';
import { checkExit, runCapture, runChecked, tailLines } from '../../util/run.js';
import { LABELS } from '../../labels.js';
import { dockerClientEnv, dockerRunArgs, entryFromContainer, mapDockerState, urlHost, type DockerInspect, type DockerRunOptions } from '../docker-cli.js';

export { entryFromContainer } from '../docker-cli.js';

/** The state of a container that no longer exists (a new object each time: callers may add to it). */
const gone = (): JobState => ({ state: 'gone', native: 'missing', reason: 'the container no longer exists' });

/** docker run --pull never, image not on the host (moby daemon: "No such image: <ref>"); nothing was created. */
const NO_SUCH_IMAGE = /No such image/i;
/**
 * docker run with a network that does not exist (libnetwork ErrNoSuchNetwork: "network <name> not found", also
 * inside "could not find a network matching network mode ..."); dockerd 20.10 has created the container by then
 * (test/integration/local-docker.test.ts runs this case against the real daemon).
 */
const NETWORK_MISSING = /network \S+ not found/i;
/** The docker CLI could not reach the daemon (docker/cli: "Cannot connect to the Docker daemon at ..."). */
const DAEMON_DOWN = /Cannot connect to the Docker daemon|error during connect/i;

const INSTALL_HINT = 'Install Docker (https://docs.docker.com/engine/install/) and the NVIDIA Container Toolkit, or set DOCKER_HOST to a reachable daemon.';

/** Hints for the docker errors users hit most (contract §8). */
export function dockerErrorHint(stderr: string): string | undefined {
  if (/could not select device driver .*gpu/i.test(stderr))
    return 'No NVIDIA container runtime: install the NVIDIA Container Toolkit and restart docker (or use --num-gpus 0 only for a lifecycle smoke test).';
  if (/unauthorized|authentication required|denied: requested access/i.test(stderr))
    return "Log in to the registry first: echo \"$NGC_KEY\" | docker login nvcr.io -u '$oauthtoken' --password-stdin";
  if (/address already in use|port is already allocated/i.test(stderr)) return 'The host port is taken by another program: pass a different --port, or omit it.';
  if (/Conflict\. The container name/i.test(stderr)) return 'A container with this job_id already exists: remove it with docker rm -f <job_id>.';
  if (/Cannot connect to the Docker daemon|error during connect/i.test(stderr)) return 'Start the docker daemon, or point DOCKER_HOST at one.';
  if (/pull access denied|manifest unknown|not found: manifest/i.test(stderr)) return 'The image is not available: check the tag, or log in to its registry.';
  return undefined;
}

class LocalDockerAdapter implements PlatformAdapter {
  readonly name = descriptor.name;
  readonly unsupported = descriptor.unsupported;
  readonly reservesHostPort = descriptor.reservesHostPort;

  private runOptions(spec: LaunchSpec): DockerRunOptions {
    return { network: this.network(spec), ipcHost: spec.options.ipcHost === true, ulimitMemlock: spec.options.ulimitMemlock === true, pullNever: true };
  }

  private network(spec: LaunchSpec): string {
    const net = String(spec.options.network || 'tao_default');
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(net))
      throw new InvalidInputError('--docker-network', `'${net}' is not a docker network name`, { hint: 'Use letters, digits, "_", "." and "-" (e.g. tao_default).' });
    return net;
  }

  /**
   * No docker call: the network name is checked here, and `launch` finds out from `docker run` itself whether
   * the daemon answers and the network and image exist (see the module comment).
   * @throws InvalidInputError for a malformed --docker-network
   */
  async preflight(spec: LaunchSpec): Promise<void> {
    this.network(spec);
  }

  /** Create the docker network `net`; one created meanwhile by a concurrent start is fine. */
  private async createNetwork(net: string, env: NodeJS.ProcessEnv): Promise<void> {
    const created = await runCapture('docker', ['network', 'create', net], { env, platform: 'local-docker', installHint: INSTALL_HINT, timeoutMs: 60_000 });
    if (created.exitCode !== 0 && !/already exists/.test(created.stderr)) checkExit('docker', ['network', 'create', net], created, dockerErrorHint);
  }

  async plan(spec: LaunchSpec, ctx: AdapterContext): Promise<LaunchPlan> {
    const ro = this.runOptions(spec);
    const net = ro.network;
    const { ngcRegistry, parseImageRef } = await import('./pull.js');
    const registry = parseImageRef(spec.image).registry;
    return {
      platform: 'local-docker',
      steps: [
        { description: 'start the container (--pull never: docker answers "No such image" and creates nothing when the image is not on this host)', command: ['docker', ...dockerRunArgs(spec, ro)] },
        {
          description: `only after "No such image": pull the image with progress${registry === ngcRegistry(ctx.env) ? ` (on "unauthorized" with NGC_KEY set: docker login -u '$oauthtoken' --password-stdin ${registry}, the key on stdin, then retry)` : ''}, then start the container as above`,
          command: `docker pull ${spec.image}`,
        },
        {
          description: `only after "network ${net} not found": remove the container docker created, create the network, then start the container as above`,
          command: `docker rm -f ${spec.job_id}; docker network create ${net}`,
        },
      ],
    };
  }

  async launch(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched> {
    const ro = this.runOptions(spec);
    const argv = dockerRunArgs(spec, ro);
    const runOpts = { env: dockerClientEnv(spec, ctx.env), platform: 'local-docker', installHint: INSTALL_HINT, timeoutMs: 30 * 60_000 };
    ctx.log(`$ ${formatArgv(['docker', ...argv]).slice(0, 300)}...`);
    // Run at once; when docker says what is missing, make it (each at most once) and run again (module comment).
    const made = new Set<'image' | 'network'>();
    for (;;) {
      const r = await runCapture('docker', argv, runOpts).catch((e: unknown) => {
        // No docker CLI on PATH: nothing was created.
        if (e instanceof PlatformUnavailableError) throw new PlatformUnavailableError('local-docker', "'docker' was not found on PATH", { hint: INSTALL_HINT, nothingLaunched: true });
        throw e;
      });
      if (r.exitCode === 0) break;
      if (!made.has('network') && NETWORK_MISSING.test(r.stderr)) {
        made.add('network');
        await runCapture('docker', ['rm', '-f', '--', spec.job_id], { env: ctx.env, timeoutMs: 60_000 });
        await this.createNetwork(ro.network, ctx.env);
        continue;
      }
      if (!made.has('image') && NO_SUCH_IMAGE.test(r.stderr)) {
        made.add('image');
        // Loaded only when an image is missing (docker-modem, file reads for the NGC login): a start from a local
        // image never pays for it.
        const { pullImage } = await import('./pull.js');
        await pullImage(spec.image, { env: ctx.env, log: ctx.log, progress: ctx.progressLine, signal: ctx.signal });
        continue;
      }
      if (DAEMON_DOWN.test(r.stderr))
        throw new PlatformUnavailableError('local-docker', `the docker daemon does not answer: ${r.stderr.trim().split('\n').pop() ?? ''}`, {
          hint: dockerErrorHint(r.stderr) ?? INSTALL_HINT,
          nothingLaunched: true,
        });
      checkExit('docker', argv, r, dockerErrorHint);
    }
    return {
      host_url: `http://${urlHost(spec.bind_address)}:${spec.host_port}`,
      host_port: spec.host_port!,
      docker_url: `http://${spec.job_id}:${spec.container_port}`,
      platform_data: { network: ro.network, bind_address: spec.bind_address },
    };
  }

  async status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
    const r = await runCapture('docker', ['inspect', '--format', '{{json .State}}', '--', entry.job_id], { env: ctx.env, platform: 'local-docker', installHint: INSTALL_HINT, signal: ctx.signal });
    if (ctx.signal?.aborted) return { state: 'unknown', reason: String((ctx.signal.reason as Error)?.message ?? 'aborted') };
    if (r.exitCode !== 0) {
      if (/No such (object|container)/i.test(r.stderr)) return gone();
      return { state: 'unknown', native: 'inspect-failed', reason: r.stderr.trim().split('\n').pop() };
    }
    return mapDockerState(JSON.parse(r.stdout));
  }

  /**
   * All entries at once (`ls` with many services): straight from the Engine API when the CLI would use the local
   * socket (./engine.ts; no docker process at all), else one `docker inspect` for all instead of one each.
   */
  async statusMany(entries: RegistryEntry[], ctx: EntryContext): Promise<JobState[]> {
    // Loaded here only: `start` never pays for node:http.
    const { containerStates, engineSocket } = await import('./engine.js');
    const socket = await engineSocket(ctx.env);
    if (socket) {
      try {
        const states = await containerStates(socket, entries.map((e) => e.job_id), ctx.signal);
        return entries.map((e) => {
          const s = states.get(e.job_id);
          return s ? mapDockerState(s) : gone();
        });
      } catch {
        // The socket cannot be used (permissions, another daemon setup): the CLI below asks, and says what is wrong.
      }
    }
    const r = await runCapture('docker', ['inspect', '--type', 'container', '--format', '{{.Name}} {{json .State}}', ...entries.map((e) => e.job_id)], {
      env: ctx.env,
      platform: 'local-docker',
      installHint: INSTALL_HINT,
    });
    const states = new Map<string, JobState>();
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf(' ');
      try {
        if (i > 0) states.set(line.slice(0, i).replace(/^\//, ''), mapDockerState(JSON.parse(line.slice(i + 1))));
      } catch {
        /* not a state line: that entry is reported as not found */
      }
    }
    const failure = r.stderr.split('\n').filter((l) => l.trim() && !/No such (object|container)/i.test(l)).pop();
    return entries.map(
      (e) => states.get(e.job_id) ?? (failure ? { state: 'unknown', native: 'inspect-failed', reason: failure.trim() } : gone()),
    );
  }

  async *logs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string> {
    const args = ['logs'];
    if (opts.tail !== undefined) args.push('--tail', String(opts.tail));
    if (opts.follow) args.push('-f');
    args.push('--', entry.job_id);
    // The container's stderr is part of its log, so docker's own errors cannot be told apart in the stream:
    // ask first whether the container exists (daemon down, no such container → exit 3 with docker's message).
    await runChecked('docker', ['container', 'inspect', '--format', '{{.Id}}', '--', entry.job_id], { env: ctx.env, hint: dockerErrorHint, signal: opts.signal });
    // execa only here (streaming): loading it costs start-up time that start and ls do not need to pay.
    const { execa } = await import('execa');
    const child = execa('docker', args, { env: ctx.env, reject: false, all: true, buffer: false, cancelSignal: opts.signal, stdin: 'ignore' });
    for await (const line of child.iterable({ from: 'all' })) yield `${line}\n`;
    const r = await child;
    if (r.exitCode && !opts.signal?.aborted && !r.isCanceled) throw new CommandFailedError(['docker', ...args], r.exitCode, tailLines(String(r.stderr ?? ''), 12).join('\n'));
  }

  /**
   * `docker rm -f`; idempotent: a container that is already gone resolves `{already_gone: true}`, and so does one
   * that another `stop` is removing right now (docker: "removal of container X is already in progress"), once it
   * is gone (waits at most 60 s).
   * @throws CommandFailedError when docker refuses for another reason or the removal does not finish in time
   */
  async stop(entry: RegistryEntry, ctx: EntryContext): Promise<StopOutcome> {
    const rm = ['rm', '-f', '--', entry.job_id];
    const r = await runCapture('docker', rm, { env: ctx.env, platform: 'local-docker', installHint: INSTALL_HINT });
    // `No such container` is on stderr (`rm -f` still exits 0 on current engines): removed before.
    if (/No such container/i.test(r.stderr)) return { already_gone: true };
    if (r.exitCode === 0) return {};
    if (/removal of container .* is already in progress/i.test(r.stderr)) {
      const until = Date.now() + 60_000;
      while (Date.now() < until && !ctx.signal?.aborted) {
        const i = await runCapture('docker', ['container', 'inspect', '--format', '{{.Id}}', '--', entry.job_id], { env: ctx.env, platform: 'local-docker', timeoutMs: 10_000 });
        if (i.exitCode !== 0 && /No such (object|container)/i.test(i.stderr)) return { already_gone: true };
        await new Promise((res) => setTimeout(res, 250));
      }
    }
    await runChecked('docker', rm, { env: ctx.env, hint: dockerErrorHint });
    return {};
  }

  /** Containers labelled `tao-infer.managed-by=tao-infer` on this daemon (or DOCKER_HOST), running or exited. */
  async discover(ctx: DiscoverContext): Promise<DiscoveredService[]> {
    const opts = { env: ctx.env, platform: 'local-docker', installHint: INSTALL_HINT, timeoutMs: 60_000 };
    const ps = await runCapture('docker', ['ps', '-a', '-q', '--no-trunc', '--filter', `label=${LABELS.managedBy}=tao-infer`], opts);
    if (ps.exitCode !== 0)
      throw new PlatformUnavailableError('local-docker', `docker ps failed: ${ps.stderr.trim().split('\n').pop() ?? ''}`, { hint: dockerErrorHint(ps.stderr) ?? INSTALL_HINT });
    const ids = ps.stdout.split(/\s+/).filter(Boolean);
    if (!ids.length) return [];
    const r = await runCapture('docker', ['inspect', ...ids], opts);
    // A container removed between ps and inspect makes inspect exit 1 but still print the others.
    const list = JSON.parse(r.stdout.trim() || '[]') as DockerInspect[];
    return list.flatMap((c) => {
      const entry = entryFromContainer(c, 'local-docker');
      return entry ? [{ entry, live: mapDockerState(c.State ?? {}) }] : [];
    });
  }
}

/** The local-docker adapter (contract §8 local-docker), loaded lazily by `src/platforms/index.ts`. */
export function createAdapter(): PlatformAdapter {
  return new LocalDockerAdapter();
}
