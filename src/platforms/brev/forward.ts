/**
 * The brev forwarder: a detached `ssh -N -L 127.0.0.1:<local_port>:<target>:<host_port> <instance>` through
 * the host alias brev writes, described for src/forwarder (which starts, checks, stops and restarts it).
 * `brev port-forward` is not used: it starts ssh and returns at once (brev-cli pkg/cmd/portforward), so its
 * PID does not own the tunnel.
 */
import { InvalidInputError } from '../../errors.js';
import { forwarderEnv, type ForwarderDescription, type ForwarderSupport } from '../../forwarder/forwarder.js';
import { forwarderLogFile } from '../../forwarder/log.js';
import type { RegistryEntry } from '../../types.js';
import { instanceOf } from './cli.js';
import { forwardArgv } from './remote.js';

/** Address the forward targets on the instance: the service's bind address, loopback when it binds all. */
export function forwardTarget(bind: string | undefined): string {
  return !bind || bind === '0.0.0.0' || bind === '::' ? '127.0.0.1' : bind;
}

/** ssh config holding the Brev host aliases: the option, else TAO_BREV_SSH_CONFIG, else ssh's default. */
export function sshConfigOf(options: Record<string, unknown> | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const v = options?.sshConfig ?? env.TAO_BREV_SSH_CONFIG;
  return typeof v === 'string' && v ? v : undefined;
}

/** The forward of one service: local port `local` → `<instance>:<target>:<host_port>`. */
export function forwardDescription(a: {
  job_id: string;
  instance: string;
  local: number;
  host_port: number;
  bind: string | undefined;
  sshConfig: string | undefined;
  env: NodeJS.ProcessEnv;
}): ForwarderDescription {
  const logFile = forwarderLogFile('brev', a.job_id);
  const target = forwardTarget(a.bind);
  const argv = forwardArgv(a.instance, a.local, a.host_port, target, a.sshConfig, logFile);
  return {
    platform: 'brev',
    job_id: a.job_id,
    kind: 'ssh forward',
    run: { command: argv[0]!, args: argv.slice(1) },
    env: forwarderEnv(a.env),
    logFile,
    listen: { host: '127.0.0.1', port: a.local },
    target: `${a.instance}:${a.host_port}`,
    hint: `Is local port ${a.local} free? Does 'ssh ${a.sshConfig ? `-F ${a.sshConfig} ` : ''}${a.instance} true' work ('brev refresh' writes the host alias)?`,
  };
}

/** Forwarder support of the brev adapter: the forward is described again from the entry (instance, ports, config). */
export const brevForwarder: ForwarderSupport = {
  kind: 'ssh forward',
  async describe(entry: RegistryEntry, ctx) {
    const instance = instanceOf(entry);
    if (!instance || typeof entry.local_port !== 'number' || typeof entry.host_port !== 'number')
      throw new InvalidInputError('<job_id>', `registry entry ${entry.job_id} lacks the instance or ports of its forward`);
    const pd = entry.platform_data ?? {};
    return forwardDescription({
      job_id: entry.job_id,
      instance,
      local: entry.local_port,
      host_port: entry.host_port,
      bind: typeof pd.bind_address === 'string' ? pd.bind_address : undefined,
      sshConfig: typeof pd.ssh_config === 'string' ? pd.ssh_config : sshConfigOf(undefined, ctx.env),
      env: ctx.env,
    });
  },
};
