/** `tao-infer prune`: remove entries whose service is gone or has ended, with their platform objects and forwarders. */
import { MissingInputError } from '../../errors.js';
import { askConfirm, cliReporter, emit, globalFlags, info, isInteractive } from '../io.js';
import { pruneServices } from '../../manage.js';
import { Registry } from '../../registry/store.js';
import { declaredCommand } from './index.js';

/** `tao-infer prune [--dry-run] [--yes] [--json]`: remove entries whose service is gone or has ended. */
export function pruneCommand() {
  return declaredCommand('prune')
    .option('--dry-run', 'only list what would be removed')
    .action(async (o, command) => {
      const flags = globalFlags(command);
      const deps = { registry: new Registry(), reporter: cliReporter };
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
      if (!flags.yes) {
        if (!isInteractive(flags)) throw new MissingInputError('--yes', `confirmation to remove ${preview.removed.length} ended or gone services (see --dry-run)`);
        info(render(preview)());
        if (!(await askConfirm(`Remove these ${preview.removed.length} services?`))) return;
      }
      const r = await pruneServices({}, deps);
      emit(flags, r, render(r));
      if (r.failed.length) process.exitCode = 3;
    });
}
