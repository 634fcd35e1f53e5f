/** `tao-infer tunnel`: restart a dead local forwarder (src/forwarder, routed by src/platforms/routing.ts). */
import { loadAdapter } from '../../platforms/index.js';
import { cliReporter, emit, globalFlags } from '../io.js';
import { findService } from '../../manage.js';
import { Registry } from '../../registry/store.js';
import { declaredCommand } from './index.js';

/** `tao-infer tunnel <job_id>`: restart a dead local forwarder (src/forwarder, routed by src/platforms/routing.ts). */
export function tunnelCommand() {
  return declaredCommand('tunnel')
    .argument('<job_id>', 'the service (full job_id or a unique prefix of 4+ characters)')
    .action(async (jobId, _o, command) => {
      const registry = new Registry();
      const entry = await findService(jobId, { registry });
      const adapter = await loadAdapter(entry.platform);
      const fields = await adapter.restartForwarder(entry, { env: process.env, ...cliReporter });
      const updated = Object.keys(fields).length ? await registry.update(entry.job_id, fields) : entry;
      emit(globalFlags(command), updated, () => (Object.keys(fields).length ? `forwarder restarted: ${updated?.host_url} (pid ${updated?.forwarder_pid})` : `forwarder already running: ${entry.host_url}`));
    });
}

