/**
 * brev: a Brev instance (a VM with Docker and the NVIDIA container toolkit) driven by the `brev` CLI (contract §8 brev).
 *
 *  preflight  `brev ls --json` (CLI present, logged in, instance RUNNING), then `brev exec <instance> "echo ready"`
 *             until the instance answers (a fresh instance reports RUNNING before sshd is up; up to --probe-timeout s).
 *  launch     host port allocated per instance (contract §5), secret values sent on the stdin of
 *             `ssh <instance> 'umask 077 && ... cat > ~/.tao-infer/<job_id>.env'`, then
 *             `brev exec <instance> "<script>"` runs local-docker's exact `docker run` after sourcing and deleting
 *             that file; finally a detached `ssh -N -L 127.0.0.1:<local>:127.0.0.1:<host_port> <instance>`
 *             (PID in the registry) gives host_url `http://localhost:<local>`.
 *  status / logs / stop  `brev ls --json` first (one call shared by all entries of an `ls`), then, only on a RUNNING
 *             (or UNHEALTHY) instance, `brev exec` with docker inspect / logs / rm -f: `brev exec` on a STOPPED
 *             instance starts it (brev-cli pkg/cmd/exec/exec.go runExecCommand). The forward is described in
 *             ./forward.ts and started, stopped and restarted by src/forwarder (routed by src/platforms/routing.ts).
 *  --instance  a name or an id; resolved to the name through `brev ls --json`, since the ssh alias is the name
 *             (brev-cli pkg/entity/entity.go GetLocalIdentifier).
 *
 * Why ssh next to brev: `brev exec` reads instance names from a piped stdin and never passes stdin to the command,
 * so it cannot carry secrets; and `brev port-forward` starts ssh and returns at once (pkg/cmd/portforward), so its
 * PID does not own the tunnel. ssh uses the host aliases brev writes (~/.brev/ssh_config, included from ~/.ssh/config;
 * `--brev-ssh-config` / TAO_BREV_SSH_CONFIG points at another file).
 *
 * Brev credentials: tao-infer never runs `brev login --token "$BREV_API_TOKEN"` itself, because that puts the token
 * on a command line (visible in the process table); when logged out it stops with a hint instead.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandFailedError, InvalidInputError, LaunchFailedError, MissingInputError, PlatformError, PlatformUnavailableError } from '../../errors.js';
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
import { startForwarder } from '../../forwarder/forwarder.js';
import {
  brevDockerHint,
  brevExec,
  findInstance,
  INSTALL_HINT,
  instanceOf,
  lastLine,
  listInstances,
  LOGIN_HINT,
  loggedOut,
  reachable,
  unreachableState,
  withHealth,
  type BrevInstance,
} from './cli.js';
import { descriptor } from './descriptor.js';
import { discoverContainers } from './discover.js';
import { brevForwarder, forwardDescription, forwardTarget, sshConfigOf } from './forward.js';
import { runCapture, tailLines } from '../../util/run.js';
import { mapDockerState } from '../docker-cli.js';
import {
  RC_MARK,
  checkName,
  forwardArgv,
  inspectScript,
  launchScript,
  logsScript,
  secretEnvFile,
  secretUploadCommand,
  sshBase,
  stopScript,
  wrapRemote,
} from './remote.js';

const DEFAULT_NETWORK = 'tao_default';

export { brevDockerHint, deleteInstance, listInstances, type BrevInstance } from './cli.js';

class BrevAdapter implements PlatformAdapter {
  readonly name = descriptor.name;
  readonly unsupported = descriptor.unsupported;
  readonly reservesHostPort = descriptor.reservesHostPort;
  readonly forwarder = brevForwarder;

  /** `--instance` as given (a name or an id) → the instance name found by preflight. */
  private readonly resolved = new Map<string, string>();
  /** The `brev ls --json` in flight, shared by the concurrent status calls of one `ls` (same env). */
  private readonly lsInFlight = new WeakMap<object, Promise<BrevInstance[]>>();

  private instance(spec: LaunchSpec): string {
    const v = spec.options.instance;
    if (v === undefined || v === null || v === '') throw new MissingInputError('--instance', "Brev instance (see 'brev ls')");
    const raw = checkName('--instance', String(v));
    return this.resolved.get(raw) ?? raw;
  }

  private instances(env: NodeJS.ProcessEnv): Promise<BrevInstance[]> {
    const pending = this.lsInFlight.get(env);
    if (pending) return pending;
    const list = listInstances(env).finally(() => this.lsInFlight.delete(env));
    list.catch(() => undefined);
    this.lsInFlight.set(env, list);
    return list;
  }

  private network(spec: LaunchSpec, env: NodeJS.ProcessEnv): string {
    return checkName('DOCKER_NETWORK', String(spec.options.network || env.DOCKER_NETWORK || DEFAULT_NETWORK));
  }

  private sshConfig(spec: LaunchSpec, env: NodeJS.ProcessEnv): string | undefined {
    return sshConfigOf(spec.options, env);
  }

  private probeTimeoutS(spec: LaunchSpec): number {
    const v = Number(spec.options.probeTimeout ?? 600);
    if (!Number.isInteger(v) || v < 1) throw new InvalidInputError('--probe-timeout', `--probe-timeout must be a whole number of seconds ≥ 1 (got ${spec.options.probeTimeout})`);
    return v;
  }

  async preflight(spec: LaunchSpec, ctx: AdapterContext): Promise<void> {
    const instance = this.instance(spec);
    const timeoutS = this.probeTimeoutS(spec);
    this.network(spec, ctx.env);
    const cfg = this.sshConfig(spec, ctx.env);
    if (cfg && !existsSync(cfg))
      throw new InvalidInputError('--brev-ssh-config', `ssh config ${cfg} does not exist`, { hint: "Omit it to use ~/.ssh/config (set up by 'brev login' / 'brev refresh')." });
    const all = await listInstances(ctx.env);
    const w = findInstance(all, instance);
    if (!w)
      throw new InvalidInputError('--instance', `no Brev instance named '${instance}' in the active org`, {
        hint: all.length ? `Instances: ${all.map((x) => `${x.name} (${x.status})`).join(', ')}` : "Create one with 'brev create <name>' (or in the Brev console).",
      });
    if (!reachable(w))
      throw new PlatformUnavailableError('brev', `instance ${w.name} is ${w.status}, not RUNNING`, { hint: `Start it with 'brev start ${w.name}' and retry.` });
    if (w.status === 'UNHEALTHY') ctx.warn(`Brev reports instance ${w.name} RUNNING but UNHEALTHY (health_status ${w.health_status ?? 'UNHEALTHY'}); trying it anyway.`);
    if (w.name !== instance) ctx.log(`Brev instance ${instance} is named ${w.name}; using the name (it is the ssh alias).`);
    this.resolved.set(instance, checkName('--instance', w.name));
    await this.probe(w.name, timeoutS, ctx);
  }

  /** `brev exec <instance> "echo ready"` until it answers; progress through ctx.log. */
  private async probe(instance: string, timeoutS: number, ctx: AdapterContext): Promise<void> {
    const t0 = Date.now();
    const until = t0 + timeoutS * 1000;
    let attempt = 0;
    let last = '';
    for (;;) {
      attempt++;
      const left = until - Date.now();
      const r = await runCapture('brev', ['exec', instance, 'echo ready'], {
        env: ctx.env,
        platform: 'brev',
        installHint: INSTALL_HINT,
        timeoutMs: Math.max(5_000, Math.min(left, 180_000)),
        signal: ctx.signal,
      });
      if (r.exitCode === 0 && /^ready$/m.test(r.stdout)) {
        if (attempt > 1) ctx.log(`Brev instance ${instance} answers (after ${Math.round((Date.now() - t0) / 1000)}s).`);
        return;
      }
      if (loggedOut(r)) throw new PlatformUnavailableError('brev', 'the brev CLI is not logged in', { hint: LOGIN_HINT });
      last = lastLine(r.stderr || r.stdout) || `exit ${r.exitCode}`;
      const elapsed = Math.round((Date.now() - t0) / 1000);
      if (Date.now() >= until)
        throw new PlatformUnavailableError('brev', `instance ${instance} did not answer 'brev exec' within ${timeoutS}s: ${last}`, {
          hint: `Check it with 'brev ls' and 'brev shell ${instance}', or wait longer with --probe-timeout.`,
        });
      ctx.log(`waiting for Brev instance ${instance} to answer (${elapsed}s of ${timeoutS}s): ${last}`);
      await sleep(Math.min(2_000 * attempt, 10_000, Math.max(0, until - Date.now())), undefined, { signal: ctx.signal });
    }
  }

  async plan(spec: LaunchSpec, ctx: AdapterContext): Promise<LaunchPlan> {
    const instance = this.instance(spec);
    const net = this.network(spec, ctx.env);
    const cfg = this.sshConfig(spec, ctx.env);
    const timeoutS = this.probeTimeoutS(spec);
    const PORT_PLACEHOLDER = 65_535;
    const script = launchScript({ ...spec, host_port: PORT_PLACEHOLDER }, net).replace(`:${PORT_PLACEHOLDER}:`, ':<host_port>:');
    const steps: LaunchPlan['steps'] = [
      { description: `check the brev CLI is logged in and instance ${instance} is RUNNING`, command: ['brev', 'ls', '--json'] },
      { description: `wait until ${instance} answers (up to ${timeoutS}s)`, command: ['brev', 'exec', instance, 'echo ready'] },
      {
        description: `allocate <host_port>: the lowest port from 8080 not used by another service on ${instance} (contract §5)`,
      },
    ];
    if (spec.env.secretNames.length)
      steps.push({
        description: `send ${spec.env.secretNames.join(', ')} (values from this shell's environment, on stdin) to a mode-600 file on ${instance}`,
        command: [...sshBase(cfg), '-T', instance, secretUploadCommand(spec.job_id)],
      });
    steps.push({ description: `start the container on ${instance} (the env file is sourced, then deleted)`, command: ['brev', 'exec', instance, wrapRemote(script)] });
    const fwd = forwardArgv(instance, 0, 0, forwardTarget(spec.bind_address), cfg);
    fwd[fwd.indexOf('-L') + 1] = `127.0.0.1:<local_port>:${forwardTarget(spec.bind_address)}:<host_port>`;
    steps.push({
      description: `forward a free local port to the service on ${instance} (detached; PID kept in the registry); host_url http://localhost:<local_port>`,
      command: fwd,
    });
    return { platform: 'brev', steps };
  }

  async launch(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched> {
    let instance = this.instance(spec);
    if (!this.resolved.has(String(spec.options.instance))) {
      const w = findInstance(await listInstances(ctx.env), instance);
      if (w) instance = checkName('--instance', w.name);
    }
    const net = this.network(spec, ctx.env);
    const cfg = this.sshConfig(spec, ctx.env);
    checkName('job_id', spec.job_id);
    const platform_data: Record<string, unknown> = { instance, network: net, bind_address: spec.bind_address, ...(cfg ? { ssh_config: cfg } : {}) };
    await ctx.record({ platform_data, docker_url: `http://${spec.job_id}:${spec.container_port}` });

    const host_port = await ctx.allocatePort({ kind: 'remote', host: instance });
    const s: LaunchSpec = { ...spec, host_port };
    // docker run includes the image pull (tens of GB for TAO images): like local-docker, allow 30 min.
    const RUN_TIMEOUT_MS = 30 * 60_000;

    if (s.env.secretNames.length) {
      const argv = [...sshBase(cfg), '-T', instance, secretUploadCommand(s.job_id)];
      ctx.log(`sending ${s.env.secretNames.join(', ')} to ${instance} on ssh stdin`);
      const r = await runCapture(argv[0]!, argv.slice(1), { env: ctx.env, input: secretEnvFile(s.env.secretNames, ctx.env), timeoutMs: 120_000, signal: ctx.signal, platform: 'brev', installHint: 'Install OpenSSH (ssh).' });
      if (r.exitCode !== 0)
        throw new CommandFailedError(argv, r.exitCode, tailLines(r.stderr, 12).join('\n'), {
          hint: `ssh to the Brev host alias '${instance}' failed: run 'brev refresh' so ~/.ssh/config knows it${cfg ? ` (or fix ${cfg})` : ''}.`,
        });
    }

    const script = launchScript(s, net);
    ctx.log(`$ brev exec ${instance} "docker run -d --name ${s.job_id} -p ${s.bind_address}:${host_port}:${s.container_port} ... ${s.image} ..."`);
    const run = await brevExec(instance, script, ctx.env, { timeoutMs: RUN_TIMEOUT_MS, signal: ctx.signal });
    if (!run.remote)
      throw new LaunchFailedError(`'brev exec ${instance}' failed before docker ran: ${lastLine(run.stderr || run.stdout) || `exit ${run.exitCode}`}`, 'brev_exec_failed', tailLines(run.stderr, 12), {
        hint: `Check the instance with 'brev ls' and 'brev shell ${instance}'.`,
      });
    if (run.remote.rc !== 0) {
      const err = run.stderr.replace(/^Connection failed, checking instance status\.\.\.\n?/gm, '');
      throw new LaunchFailedError(`docker run failed on ${instance} (exit ${run.remote.rc})`, 'docker_run_failed', tailLines(err, 12), {
        hint: brevDockerHint(err, instance),
      });
    }

    const local = await ctx.allocatePort({ kind: 'local' });
    const fwd = forwardDescription({ job_id: s.job_id, instance, local, host_port, bind: s.bind_address, sshConfig: cfg, env: ctx.env });
    const pid = await startForwarder(fwd, {
      signal: ctx.signal,
      onPid: (p) => ctx.record({ forwarder_pid: p, platform_data: { ...platform_data, forward_log: fwd.logFile } }),
    });
    return {
      host_url: `http://localhost:${local}`,
      host_port,
      local_port: local,
      forwarder_pid: pid,
      docker_url: `http://${s.job_id}:${s.container_port}`,
      platform_data: { ...platform_data, forward_log: fwd.logFile },
    };
  }

  /** Prompt choices for a required option (the CLI asks on a TTY): `instance` → RUNNING instances first. */
  async suggest(key: string, env: NodeJS.ProcessEnv): Promise<string[] | undefined> {
    if (key !== 'instance') return undefined;
    const all = await listInstances(env);
    return [...all.filter((w) => reachable(w)), ...all.filter((w) => !reachable(w))].map((w) => w.name);
  }

  async status(entry: RegistryEntry, ctx: EntryContext): Promise<JobState> {
    const instance = instanceOf(entry);
    if (!instance) return { state: 'unknown', native: 'no-instance', reason: 'the registry entry does not name its Brev instance' };
    const w = findInstance(await this.instances(ctx.env), instance);
    const off = unreachableState(w, instance);
    if (off || !w) return off!;
    return withHealth(await this.inspect(w.name, entry.job_id, ctx), w);
  }

  /** The container's state through `brev exec <instance> "docker inspect ..."` (the instance is RUNNING). */
  private async inspect(instance: string, job_id: string, ctx: EntryContext): Promise<JobState> {
    const r = await brevExec(instance, inspectScript(job_id), ctx.env, { timeoutMs: 120_000, signal: ctx.signal });
    if (!r.remote) return { state: 'unknown', native: 'unreachable', reason: `brev exec ${instance}: ${lastLine(r.stderr || r.stdout) || `exit ${r.exitCode}`}` };
    if (r.remote.rc !== 0) {
      if (/No such (object|container)/i.test(r.stderr)) return { state: 'gone', native: 'missing', reason: `the container no longer exists on ${instance}` };
      return { state: 'unknown', native: 'inspect-failed', reason: lastLine(r.stderr) };
    }
    try {
      return mapDockerState(JSON.parse(r.remote.out.trim()));
    } catch {
      return { state: 'unknown', native: 'inspect-failed', reason: `unexpected docker inspect output: ${r.remote.out.slice(0, 120)}` };
    }
  }

  async *logs(entry: RegistryEntry, opts: LogOptions, ctx: EntryContext): AsyncIterable<string> {
    const ref = instanceOf(entry);
    if (!ref) throw new PlatformError('brev_no_instance', `registry entry ${entry.job_id} does not name its Brev instance`);
    const w = findInstance(await this.instances(ctx.env), ref);
    const off = unreachableState(w, ref);
    if (off || !w)
      throw new PlatformError('brev_instance_not_running', `cannot read the logs of ${entry.job_id}: ${off!.reason}`, {
        hint: w ? `The logs are kept on the instance: 'brev start ${w.name}', then retry.` : 'The instance and its container are gone.',
      });
    const instance = w.name;
    const child = execa('brev', ['exec', instance, wrapRemote(logsScript(entry.job_id, opts))], {
      env: ctx.env,
      extendEnv: false,
      reject: false,
      buffer: false,
      stdin: 'ignore',
      stderr: 'pipe',
      cancelSignal: opts.signal ?? ctx.signal,
      forceKillAfterDelay: 2_000,
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let done = false;
    try {
      for await (const line of child.iterable({ from: 'stdout' })) {
        const i = line.indexOf(RC_MARK);
        if (i >= 0) {
          if (i > 0) yield `${line.slice(0, i)}\n`;
          done = true;
          break;
        }
        yield `${line}\n`;
      }
    } catch (e) {
      if (!(opts.signal?.aborted || ctx.signal?.aborted)) throw e;
    } finally {
      if (done) child.kill();
    }
    const r = await child;
    // Platform failures are exit 3 like on every command (issue 8.8), never log text on stdout.
    if (!done && !r.isCanceled && !(opts.signal?.aborted || ctx.signal?.aborted))
      throw new CommandFailedError(['brev', 'exec', instance, '<docker logs>'], r.exitCode, lastLine(stderr) ?? '');
    else if (done && /No such container/i.test(stderr))
      throw new PlatformError('container_not_found', `container ${entry.job_id} was not found on Brev instance ${instance}`, { hint: `Check 'tao-infer ls'; remove the entry with 'tao-infer stop ${entry.job_id}'.` });
  }

  /** Containers tao-infer started on the RUNNING instances (./discover.ts; stopped instances are never exec'd). */
  discover(ctx: DiscoverContext): Promise<DiscoveredService[]> {
    return discoverContainers(ctx);
  }

  /**
   * Remove the container, only on a RUNNING (or UNHEALTHY) instance. An instance that is gone counts as stopped;
   * a STOPPED (or otherwise halted) one is not started to remove the container: the entry goes, the container stays
   * on the instance, and a warning says so (`stop --delete-instance` deletes the instance with it).
   * @throws PlatformError while the instance is STARTING/DEPLOYING (retry once it is RUNNING), or when docker rm fails
   */
  async stop(entry: RegistryEntry, ctx: EntryContext): Promise<StopOutcome> {
    const ref = instanceOf(entry);
    if (!ref) return {};
    const w = findInstance(await listInstances(ctx.env), ref);
    if (!w || w.status === 'DELETING') {
      ctx.log(`Brev instance ${ref} no longer exists; nothing to stop.`);
      return { already_gone: true };
    }
    if (w.status === 'STARTING' || w.status === 'DEPLOYING')
      throw new PlatformError('brev_instance_not_running', `Brev instance ${w.name} is ${w.status}; the container ${entry.job_id} cannot be removed yet`, {
        hint: `Retry 'tao-infer stop ${entry.job_id}' once 'brev ls' shows ${w.name} RUNNING.`,
      });
    if (!reachable(w)) {
      ctx.warn(
        `Brev instance ${w.name} is ${w.status}: tao-infer does not start it to remove the container, so container ${entry.job_id} stays on it ` +
          `(after 'brev start ${w.name}': brev exec ${w.name} "docker rm -f ${entry.job_id}"; or delete the instance: stop --delete-instance / 'brev delete ${w.name}').`,
      );
      return {};
    }
    const instance = w.name;
    const r = await brevExec(instance, stopScript(entry.job_id), ctx.env, { timeoutMs: 180_000, signal: ctx.signal });
    if (r.remote?.rc === 0) return {};
    throw new CommandFailedError(['brev', 'exec', instance, `docker rm -f ${entry.job_id}`], r.remote?.rc ?? r.exitCode, tailLines(r.stderr || r.stdout, 12).join('\n'), {
      hint: `Retry 'tao-infer stop ${entry.job_id}' once '${instance}' answers 'brev exec ${instance} "echo ready"'.`,
    });
  }
}

/** The brev adapter (contract §8 brev). */
export function createAdapter(): PlatformAdapter {
  return new BrevAdapter();
}
