/** stop, ls, logs, archs, tunnel. */
import { Command } from 'commander';
import { InvalidInputError, MissingInputError } from '../../errors.js';
import { checkPlatform, descriptorOf, loadAdapter, PLATFORM_NAMES } from '../../platforms/index.js';
import type { RegistryEntry } from '../../types.js';
import { addPlatformFlags, givenPlatformFlags, platformOptionValues } from '../platform-flags.js';
import { askConfirm, askSelect, emit, info, isInteractive, warnLine, type GlobalFlags } from '../io.js';

const lib = () => import('../../manage.js');
const newRegistry = async () => new (await import('../../registry/store.js')).Registry();

const reporter = { log: (m: string) => info(m), warn: (m: string) => warnLine(m) };

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** `tao-infer stop [job_id] [--all] [platform stop flags, e.g. --delete-instance] [--yes] [--json]`. */
export function stopCommand(): Command {
  const cmd = new Command('stop')
    .description('Stop a service on its platform and remove it from the registry (no id: asks which, the latest first; with --yes the latest)')
    .argument('[job_id]', 'the service to stop (full job_id or a unique prefix of 4+ characters)')
    .option('--all', 'stop every service in the registry')
    .option('--json', 'print one JSON document on stdout')
    .option('-y, --yes', 'do not ask for confirmation');
  addPlatformFlags(cmd, new Set(cmd.options.map((x) => x.long!.replace(/^--(no-)?/, ''))), 'stop');
  return cmd.action(async (jobId: string | undefined, o: Record<string, any>) => {
    const flags: GlobalFlags = { json: o.json, yes: o.yes };
    const interactive = isInteractive(flags);
    const registry = await newRegistry();
    let targets: string[];
    if (o.all) {
      if (jobId) throw new InvalidInputError('--all', 'give either a job_id or --all, not both');
      targets = Object.keys((await registry.read()).entries);
      if (!targets.length) {
        emit(flags, { stopped: [], failed: [], already_gone_ids: [], message: 'nothing to stop: no services in the registry' }, () => 'nothing to stop: no services in the registry');
        return;
      }
      if (!o.yes) {
        if (!interactive) throw new MissingInputError('--yes', `confirmation to stop all ${targets.length} services`);
        if (!(await askConfirm(`Stop all ${targets.length} services?`))) return;
      }
    } else if (jobId) {
      targets = [(await (await lib()).findService(jobId, { registry })).job_id];
    } else {
      const latest = await (await lib()).latestJobId({ registry });
      if (!latest) {
        // Nothing to stop is not a failure (same as `stop --all` on an empty registry).
        emit(flags, { stopped: [], failed: [], already_gone_ids: [], message: 'nothing to stop: no services in the registry' }, () => 'nothing to stop: no services in the registry');
        return;
      }
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
        const e = await (await lib()).stopService(id, { registry, reporter });
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
      extra = { ...extra, ...(await d.afterStop({ stopped: mine, remaining, options: g.values, env: process.env, ...reporter })) };
    }
    const gone = stopped.filter((e) => e.already_gone).map((e) => e.job_id);
    const single = targets.length === 1 ? { already_gone: gone.length === 1 } : {};
    emit(flags, { stopped: stopped.map((e) => e.job_id), failed, ...single, already_gone_ids: gone, ...extra }, () => '');
    if (failed.length) process.exitCode = 3;
  });
}

/** `tao-infer ls [--wide] [--json]`: registry entries with their live state from each platform (table: src/cli/ls-table.ts). */
export function lsCommand(): Command {
  const cmd = new Command('ls')
    .description('List services in the registry with their live state from the platform')
    .option('--wide', 'full job_ids and full detail, whatever the terminal width')
    .option('--json', 'print a JSON array of entries with their live state');
  addPlatformFlags(cmd, new Set(cmd.options.map((x) => x.long!.replace(/^--(no-)?/, ''))), 'ls');
  return cmd.action(async (o: Record<string, any>) => {
    const { services, latest } = await (await lib()).listServices({ registry: await newRegistry(), reporter });
    const { renderLsTable, terminalWidth, useColor } = await import('../ls-table.js');
    emit({ json: o.json }, services, () => {
      if (!services.length) return 'no services (start one with: tao-infer start --arch <network_arch> --model <model_path>)';
      return renderLsTable(services, { latest, now: Date.now(), width: terminalWidth(), wide: Boolean(o.wide), color: useColor() });
    });
  });
}

/** `tao-infer logs <job_id> [-f] [--tail N]`. */
export function logsCommand(): Command {
  return new Command('logs')
    .description('Show the logs of a service')
    .argument('<job_id>', 'the service (full job_id or a unique prefix of 4+ characters)')
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

/** `tao-infer tunnel <job_id>`: restart a dead local forwarder (src/forwarder, routed by src/platforms/routing.ts). */
export function tunnelCommand(): Command {
  return new Command('tunnel')
    .description('Restart the local forwarder (SSH tunnel or port-forward on this machine) of a service')
    .argument('<job_id>', 'the service (full job_id or a unique prefix of 4+ characters)')
    .option('--json', 'print the updated entry as JSON')
    .action(async (jobId: string, o: Record<string, any>) => {
      const registry = await newRegistry();
      const entry = await (await lib()).findService(jobId, { registry });
      const adapter = await loadAdapter(entry.platform);
      const fields = await adapter.restartForwarder(entry, { env: process.env, ...reporter });
      const updated = Object.keys(fields).length ? await registry.update(entry.job_id, fields) : entry;
      emit({ json: o.json }, updated, () => (Object.keys(fields).length ? `forwarder restarted: ${updated?.host_url} (pid ${updated?.forwarder_pid})` : `forwarder already running: ${entry.host_url}`));
    });
}

const collectPlatform = (v: string, prev: string[] = []) => [...prev, v];

/** `tao-infer discover [--platform P]... [platform flags] [--json]`: find tao-infer's services on the platforms and add them to the registry. */
export function discoverCommand(): Command {
  const cmd = new Command('discover')
    .description('Find the services tao-infer launched on each platform (by their labels / markers) and add the missing ones to the registry; forwarders are restarted so host_url works')
    .option('--platform <name>', `only this platform (repeatable; default all: ${PLATFORM_NAMES.join(', ')})`, collectPlatform)
    .option('--json', 'print one JSON document {added, already_known, not_reachable} on stdout');
  addPlatformFlags(cmd, new Set(cmd.options.map((x) => x.long!.replace(/^--(no-)?/, ''))), 'discover');
  return cmd.action(async (o: Record<string, any>) => {
    const platforms = ((o.platform as string[] | undefined) ?? []).map(checkPlatform);
    const options: Record<string, Record<string, unknown>> = {};
    for (const p of platforms.length ? platforms : PLATFORM_NAMES) {
      // Missing values (e.g. no --slurm-host) are not asked for: that platform is reported as not reachable.
      options[p] = await platformOptionValues(p, o, process.env, false, undefined, 'discover').catch(() => ({}));
    }
    const r = await (await lib()).discoverServices({ platforms, options }, { registry: await newRegistry(), reporter });
    emit({ json: o.json }, r, () => {
      const lines: string[] = [];
      for (const a of r.added) lines.push(`added          ${a.job_id}  ${a.network_arch} on ${a.platform}  ${a.live.state}  ${a.host_url || '-'}`);
      for (const k of r.already_known) lines.push(`already known  ${k.job_id}  on ${k.platform}`);
      for (const n of r.not_reachable) lines.push(`not reachable  ${n.platform}${n.job_id ? ` ${n.job_id}` : ''}: ${n.reason}`);
      lines.push(`${r.added.length} added, ${r.already_known.length} already known, ${r.not_reachable.length} not reachable`);
      return lines.join('\n');
    });
  });
}

/** `tao-infer prune [--dry-run] [--yes] [--json]`: remove entries whose service is gone or has ended. */
export function pruneCommand(): Command {
  return new Command('prune')
    .description('Remove registry entries whose service is gone or has ended (complete, error, canceled), with their platform objects and forwarders; never entries in state unknown')
    .option('--dry-run', 'only list what would be removed')
    .option('--json', 'print one JSON document {removed, kept, failed, dry_run} on stdout')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (o: Record<string, any>) => {
      const flags: GlobalFlags = { json: o.json, yes: o.yes };
      const { pruneServices } = await lib();
      const deps = { registry: await newRegistry(), reporter };
      const render = (r: Awaited<ReturnType<typeof pruneServices>>) => () => {
        if (!r.removed.length && !r.failed.length) return 'nothing to prune';
        const verb = r.dry_run ? 'would remove' : 'removed';
        return [
          ...r.removed.map((x) => `${verb}  ${x.job_id}  ${x.network_arch} on ${x.platform}  ${x.state}${x.reason ? `: ${x.reason}` : ''}`),
          ...r.failed.map((x) => `could not remove ${x.job_id}: ${x.error}`),
        ].join('\n');
      };
      const preview = await pruneServices({ dryRun: true }, deps);
      if (o.dryRun || !preview.removed.length) {
        emit(flags, preview, render(preview));
        return;
      }
      if (!o.yes) {
        if (!isInteractive(flags)) throw new MissingInputError('--yes', `confirmation to remove ${preview.removed.length} ended or gone services (see --dry-run)`);
        info(render(preview)());
        if (!(await askConfirm(`Remove these ${preview.removed.length} services?`))) return;
      }
      const r = await pruneServices({}, deps);
      emit(flags, r, render(r));
      if (r.failed.length) process.exitCode = 3;
    });
}
