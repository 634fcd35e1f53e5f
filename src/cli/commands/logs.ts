/** `tao-infer logs`: a service's log from its platform, once or followed. */
import { InvalidInputError } from '../../errors.js';
import { cliReporter } from '../io.js';
import { serviceLogs } from '../../manage.js';
import { Registry } from '../../registry/store.js';
import { declaredCommand } from './index.js';

/** `tao-infer logs <job_id> [-f] [--tail N]`. */
export function logsCommand() {
  return declaredCommand('logs')
    .argument('<job_id>', 'the service (full job_id or a unique prefix of 4+ characters)')
    .option('-f, --follow', 'keep following the log')
    .option('--tail <n>', 'only the last n lines')
    .action(async (jobId, o) => {
      let tail: number | undefined;
      if (o.tail !== undefined) {
        if (!/^\d+$/.test(String(o.tail))) throw new InvalidInputError('--tail', `--tail must be a whole number, got '${o.tail}'`);
        tail = Number(o.tail);
      }
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      for await (const chunk of serviceLogs(jobId, { follow: Boolean(o.follow), tail }, { registry: new Registry(), reporter: cliReporter, signal: ac.signal })) {
        process.stdout.write(chunk);
      }
    });
}

