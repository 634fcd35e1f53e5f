/** `tao-infer stop`: stop services on their platform and remove them from the registry (spec §5). */
import { InvalidInputError, MissingInputError } from '../../errors.js';
import { descriptorOf } from '../../platforms/index.js';
import type { RegistryEntry } from '../../types.js';
import { addPlatformFlags, givenPlatformFlags } from '../platform-flags.js';
import { askConfirm, askSelect, cliReporter, emit, globalFlags, info, isInteractive, warnLine } from '../io.js';
import { findService, latestJobId, stopService } from '../../manage.js';
import { Registry } from '../../registry/store.js';
import { declaredCommand } from './index.js';
import { compareText } from '../../util/order.js';

/** `tao-infer stop [job_id] [--all] [platform stop flags, e.g. --delete-instance] [--yes] [--json]`. */
export function stopCommand() {
  const cmd = declaredCommand('stop')
    .argument('[job_id]', 'the service to stop (full job_id or a unique prefix of 4+ characters)')
    .option('--all', 'stop every service in the registry');
  addPlatformFlags(cmd, 'stop');
  return cmd.action(async (jobId, o, command) => {
    const flags = globalFlags(command);
    const interactive = isInteractive(flags);
    const registry = new Registry();
    let targets: string[];
    if (o.all) {
      if (jobId) throw new InvalidInputError('--all', 'give either a job_id or --all, not both');
      targets = Object.keys((await registry.read()).entries);
      if (!targets.length) {
        emit(flags, { stopped: [], failed: [], already_gone_ids: [], message: 'nothing to stop: no services in the registry' }, () => 'nothing to stop: no services in the registry');
        return;
      }
      if (!flags.yes) {
        if (!interactive) throw new MissingInputError('--yes', `confirmation to stop all ${targets.length} services`);
        if (!(await askConfirm(`Stop all ${targets.length} services?`))) return;
      }
    } else if (jobId) {
      targets = [(await findService(jobId, { registry })).job_id];
    } else {
      const latest = await latestJobId({ registry });
      if (!latest) {
        // Nothing to stop is not a failure (same as `stop --all` on an empty registry).
        emit(flags, { stopped: [], failed: [], already_gone_ids: [], message: 'nothing to stop: no services in the registry' }, () => 'nothing to stop: no services in the registry');
        return;
      }
      if (!flags.yes) {
        if (!interactive) throw new MissingInputError('<job_id>', 'which service to stop (give a job_id, or --yes to stop the latest)');
        const entries = Object.values((await registry.read()).entries);
        if (entries.length > 1) {
          // Several run: the person picks one, the latest offered first (behaviour spec, 5. Stopping: default to latest).
          const byAge = entries.sort((a, b) => (a.job_id === latest ? -1 : b.job_id === latest ? 1 : compareText(String(b.started_at ?? ''), String(a.started_at ?? ''))));
          targets = [
            await askSelect(
              'Which service to stop?',
              byAge.map((e) => ({
                name: `${e.job_id}  ${e.network_arch} on ${e.platform}${e.job_id === latest ? '  (latest)' : ''}`,
                value: e.job_id,
                description: `${e.host_url ?? 'no host_url'}, started ${e.started_at ?? '?'}`,
              })),
            ),
          ];
        } else {
          const e = await registry.get(latest);
          if (!(await askConfirm(`Stop the latest service ${latest} (${e?.network_arch} on ${e?.platform})?`))) return;
          targets = [latest];
        }
      } else {
        info(`stopping the latest service: ${latest}`);
        targets = [latest];
      }
    }
    // Platform stop flags (descriptor options.stop) apply only when every service stopped runs on that platform.
    const given = givenPlatformFlags(o, 'stop');
    if (given.size) {
      const state = await registry.read();
      for (const [platform, g] of given) {
        const other = targets.find((id) => state.entries[id] && state.entries[id]!.platform !== platform);
        if (other) throw new InvalidInputError(g.flags[0]!, `${g.flags.join(', ')} applies to ${platform} services only; ${other} runs on ${state.entries[other]!.platform}`);
      }
    }
    const stopped: Array<RegistryEntry & { already_gone?: boolean }> = [];
    const failed: Array<{ job_id: string; error: string }> = [];
    for (const id of targets) {
      try {
        const e = await stopService(id, { registry, reporter: cliReporter });
        stopped.push(e);
        info(e.already_gone ? `${id} (${e.network_arch} on ${e.platform}) was already gone on the platform; removed from the registry` : `stopped ${id} (${e.network_arch} on ${e.platform})`);
      } catch (err) {
        if (targets.length === 1) throw err;
        failed.push({ job_id: id, error: (err as Error).message });
        warnLine(`could not stop ${id}: ${(err as Error).message}`);
      }
    }
    let extra: Record<string, unknown> = {};
    for (const [platform, g] of given) {
      const d = descriptorOf(platform);
      if (!d.afterStop) continue;
      const remaining = Object.values((await registry.read()).entries);
      const mine = stopped.filter((e) => e.platform === platform);
      extra = { ...extra, ...(await d.afterStop({ stopped: mine, remaining, options: g.values, env: process.env, ...cliReporter })) };
    }
    const gone = stopped.filter((e) => e.already_gone).map((e) => e.job_id);
    const single = targets.length === 1 ? { already_gone: gone.length === 1 } : {};
    emit(flags, { stopped: stopped.map((e) => e.job_id), failed, ...single, already_gone_ids: gone, ...extra }, () => '');
    if (failed.length) process.exitCode = 3;
  });
}

