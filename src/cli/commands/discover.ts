/** `tao-infer discover`: find tao-infer's services on the platforms and add the missing ones to the registry. */
import { checkPlatform, PLATFORM_NAMES } from '../../platforms/index.js';
import { addPlatformFlags, platformOptionValues } from '../platform-flags.js';
import { cliReporter, emit, globalFlags } from '../io.js';
import { discoverServices } from '../../manage.js';
import { Registry } from '../../registry/store.js';
import { declaredCommand } from './index.js';

const collectPlatform = (v: string, prev: string[] = []) => [...prev, v];

/** `tao-infer discover [--platform P]... [platform flags] [--json]`: find tao-infer's services on the platforms and add them to the registry. */
export function discoverCommand() {
  const cmd = declaredCommand('discover')
    .option('--platform <name>', `only this platform (repeatable; default all: ${PLATFORM_NAMES.join(', ')})`, collectPlatform);
  addPlatformFlags(cmd, 'discover');
  return cmd.action(async (o, command) => {
    const platforms = (o.platform ?? []).map(checkPlatform);
    const options: Record<string, Record<string, unknown>> = {};
    for (const p of platforms.length ? platforms : PLATFORM_NAMES) {
      // Missing values (e.g. no --slurm-host) are not asked for: that platform is reported as not reachable.
      options[p] = await platformOptionValues(p, o, process.env, false, undefined, 'discover').catch(() => ({}));
    }
    const r = await discoverServices({ platforms, options }, { registry: new Registry(), reporter: cliReporter });
    emit(globalFlags(command), r, () => {
      const lines: string[] = [];
      for (const a of r.added) lines.push(`added          ${a.job_id}  ${a.network_arch} on ${a.platform}  ${a.live.state}  ${a.host_url || '-'}`);
      for (const k of r.already_known) lines.push(`already known  ${k.job_id}  on ${k.platform}`);
      for (const n of r.not_reachable) lines.push(`not reachable  ${n.platform}${n.job_id ? ` ${n.job_id}` : ''}: ${n.reason}`);
      lines.push(`${r.added.length} added, ${r.already_known.length} already known, ${r.not_reachable.length} not reachable`);
      return lines.join('\n');
    });
  });
}

