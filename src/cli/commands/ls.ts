/** `tao-infer ls`: the registry with each service's live state (table: src/cli/ls-table.ts). */
import { addPlatformFlags } from '../platform-flags.js';
import { cliReporter, emit, globalFlags } from '../io.js';
import { listServices } from '../../manage.js';
import { Registry } from '../../registry/store.js';
import { renderLsTable, terminalWidth, useColor } from '../ls-table.js';
import { declaredCommand } from './index.js';

/** `tao-infer ls [--wide] [--json]`: registry entries with their live state from each platform (table: src/cli/ls-table.ts). */
export function lsCommand() {
  const cmd = declaredCommand('ls')
    .option('--wide', 'full job_ids and full detail, whatever the terminal width');
  addPlatformFlags(cmd, 'ls');
  return cmd.action(async (o, command) => {
    const { services, latest } = await listServices({ registry: new Registry(), reporter: cliReporter });
    emit(globalFlags(command), services, () => {
      if (!services.length) return 'no services (start one with: tao-infer start --arch <network_arch> --model <model_path>)';
      return renderLsTable(services, { latest, now: Date.now(), width: terminalWidth(), wide: Boolean(o.wide), color: useColor() });
    });
  });
}

