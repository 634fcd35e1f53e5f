/** stop, ls, logs, archs, tunnel. */
import { Command } from 'commander';
import { InvalidInputError, JobNotFoundError, MissingInputError, NoServiceError } from '../../errors.js';
import { loadAdapter } from '../../platforms/index.js';
import { askConfirm, askSelect, emit, info, isInteractive, warnLine, type GlobalFlags } from '../io.js';

const lib = () => import('../../manage.js');
const newRegistry = async () => new (await import('../../registry/store.js')).Registry();

const reporter = { log: (m: string) => info(m), warn: (m: string) => warnLine(m) };

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** `tao-infer stop [job_id] [--all] [--delete-instance] [--yes] [--json]`. */
export function stopCommand(): Command {
  return new Command('stop')
    .description('Stop a service on its platform and remove it from the registry (no id: asks which, the latest first; with --yes the latest)')
    .argument('[job_id]', 'the service to stop')
    .option('--all', 'stop every service in the registry')
    .option('--delete-instance', 'brev: also delete the Brev instance once no other service uses it (ephemeral instances)')
    .option('--json', 'print one JSON document on stdout')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (jobId: string | undefined, o: Record<string, any>) => {
      const flags: GlobalFlags = { json: o.json, yes: o.yes };
      const interactive = isInteractive(flags);
      const registry = await newRegistry();
      let targets: string[];
      if (o.all) {
        if (jobId) throw new InvalidInputError('--all', 'give either a job_id or --all, not both');
        targets = Object.keys((await registry.read()).entries);
        if (!targets.length) {
          emit(flags, { stopped: [], failed: [] }, () => 'no services in the registry');
          return;
        }
        if (!o.yes) {
          if (!interactive) throw new MissingInputError('--yes', `confirmation to stop all ${targets.length} services`);
          if (!(await askConfirm(`Stop all ${targets.length} services?`))) return;
        }
      } else if (jobId) {
        targets = [jobId];
      } else {
        const latest = await (await lib()).latestJobId({ registry });
        if (!latest) throw new NoServiceError('no service in the registry to stop');
        if (!o.yes) {
          if (!interactive) throw new MissingInputError('<job_id>', 'which service to stop (give a job_id, or --yes to stop the latest)');
          const entries = Object.values((await registry.read()).entries);
          if (entries.length > 1) {
            // Several run: the person picks one, the latest offered first (behaviour spec, 5. Stopping: default to latest).
            const byAge = entries.sort((a, b) => (a.job_id === latest ? -1 : b.job_id === latest ? 1 : String(b.started_at ?? '').localeCompare(String(a.started_at ?? ''))));
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
      if (o.deleteInstance) {
        const state = await registry.read();
        const other = targets.find((id) => state.entries[id] && state.entries[id]!.platform !== 'brev');
        if (other) throw new InvalidInputError('--delete-instance', `--delete-instance applies to brev services only; ${other} runs on ${state.entries[other]!.platform}`);
      }
      const stopped: string[] = [];
      const instancesToDelete = new Set<string>();
      const failed: Array<{ job_id: string; error: string }> = [];
      for (const id of targets) {
        try {
          const e = await (await lib()).stopService(id, { registry, reporter });
          stopped.push(id);
          info(`stopped ${id} (${e.network_arch} on ${e.platform})`);
          const instance = e.platform_data?.instance;
          if (o.deleteInstance && typeof instance === 'string') instancesToDelete.add(instance);
        } catch (err) {
          if (targets.length === 1) throw err;
          failed.push({ job_id: id, error: (err as Error).message });
          warnLine(`could not stop ${id}: ${(err as Error).message}`);
        }
      }
      const deleted: string[] = [];
      if (instancesToDelete.size) {
        const { deleteInstance } = await import('../../platforms/brev/adapter.js');
        const remaining = Object.values((await registry.read()).entries);
        for (const instance of instancesToDelete) {
          const users = remaining.filter((x) => x.platform === 'brev' && x.platform_data?.instance === instance);
          if (users.length) {
            warnLine(`not deleting Brev instance ${instance}: still used by ${users.map((x) => x.job_id).join(', ')}`);
            continue;
          }
          await deleteInstance(instance, { env: process.env, log: info });
          deleted.push(instance);
        }
      }
      emit(flags, { stopped, failed, ...(o.deleteInstance ? { deleted_instances: deleted } : {}) }, () => '');
      if (failed.length) process.exitCode = 3;
    });
}

/** `tao-infer ls [--json]`: registry entries with their live state from each platform. */
export function lsCommand(): Command {
  return new Command('ls')
    .description('List services in the registry with their live state from the platform')
    .option('--json', 'print a JSON array of entries with their live state')
    .action(async (o: Record<string, any>) => {
      const { services, latest } = await (await lib()).listServices({ registry: await newRegistry(), reporter });
      emit({ json: o.json }, services, () => {
        if (!services.length) return 'no services (start one with: tao-infer start --arch <network_arch> --model <model_path>)';
        return table([
          ['JOB_ID', 'ARCH', 'PLATFORM', 'STATE', 'URL', 'STARTED'],
          ...services.map((s) => [
            s.job_id + (s.job_id === latest ? ' *' : ''),
            s.network_arch,
            s.platform,
            `${s.live.state}${s.live.native && s.live.native !== s.live.state ? ` (${s.live.native})` : ''}${s.live.reason ? `: ${s.live.reason}` : ''}`,
            s.host_url || '-',
            s.started_at,
          ]),
        ]);
      });
    });
}

/** `tao-infer logs <job_id> [-f] [--tail N]`. */
export function logsCommand(): Command {
  return new Command('logs')
    .description('Show the logs of a service')
    .argument('<job_id>', 'the service')
    .option('-f, --follow', 'keep following the log')
    .option('--tail <n>', 'only the last n lines')
    .action(async (jobId: string, o: Record<string, any>) => {
      let tail: number | undefined;
      if (o.tail !== undefined) {
        if (!/^\d+$/.test(String(o.tail))) throw new InvalidInputError('--tail', `--tail must be a whole number, got '${o.tail}'`);
        tail = Number(o.tail);
      }
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      const { serviceLogs } = await lib();
      for await (const chunk of serviceLogs(jobId, { follow: Boolean(o.follow), tail }, { registry: await newRegistry(), reporter, signal: ac.signal })) {
        process.stdout.write(chunk);
      }
    });
}

/** `tao-infer archs [--json]`: valid network_archs and their resolved images. */
export function archsCommand(): Command {
  return new Command('archs')
    .description('List the supported network_archs and the images they resolve to')
    .option('--json', 'print a JSON array')
    .action(async (o: Record<string, any>) => {
      const [{ loadReferences }, { resolveImage, supportedArchs }] = await Promise.all([import('../../references.js'), import('../../archs/image.js')]);
      const refs = loadReferences();
      const rows = supportedArchs(refs).map((a) => {
        const img = resolveImage(refs, a);
        return { network_arch: a, image_key: img.key, image: img.image, image_source: img.source, command_shape: refs.service.container_commands[a]!.shape };
      });
      emit({ json: o.json }, rows, () => table([['NETWORK_ARCH', 'IMAGE_KEY', 'IMAGE'], ...rows.map((r) => [r.network_arch, r.image_key, r.image])]));
    });
}

/** `tao-infer tunnel <job_id>`: restart a dead forwarder (slurm, kubernetes port-forward, brev). */
export function tunnelCommand(): Command {
  return new Command('tunnel')
    .description('Restart the local forwarder (slurm tunnel, kubernetes port-forward, brev port-forward) of a service')
    .argument('<job_id>', 'the service')
    .option('--json', 'print the updated entry as JSON')
    .action(async (jobId: string, o: Record<string, any>) => {
      const registry = await newRegistry();
      const { checkActionable } = await import('../../registry/store.js');
      checkActionable(await registry.read(), jobId);
      const entry = await registry.get(jobId);
      if (!entry) throw new JobNotFoundError(jobId);
      const adapter = await loadAdapter(entry.platform);
      if (!adapter.restartForwarder) throw new InvalidInputError('<job_id>', `${entry.platform} services have no local forwarder to restart`);
      const fields = await adapter.restartForwarder(entry, { env: process.env, ...reporter });
      const updated = Object.keys(fields).length ? await registry.update(jobId, fields) : entry;
      emit({ json: o.json }, updated, () => (Object.keys(fields).length ? `forwarder restarted: ${updated?.host_url} (pid ${updated?.forwarder_pid})` : `forwarder already running: ${entry.host_url}`));
    });
}
