import { PlatformError, type TaoInferErrorOptions } from '../errors.js';

/**
 * A local forwarder (slurm SSH tunnel, kubernetes port-forward, brev ssh forward) did not come up, or
 * cannot be restarted (its port is taken, the job it forwards to is not running). Exit 3 like every
 * platform failure. Carries the forwarder's log file and the last lines of it.
 */
export class ForwarderError extends PlatformError {
  constructor(
    readonly platform: string,
    readonly jobId: string,
    message: string,
    readonly logFile: string | undefined,
    readonly logTail: string[] = [],
    opts: TaoInferErrorOptions = {},
  ) {
    super('forwarder_failed', `${platform}: ${message}${logTail.length ? `:\n${logTail.join('\n')}` : ''}`, opts);
  }
  override details() {
    return { platform: this.platform, job_id: this.jobId, log_file: this.logFile, log_tail: this.logTail };
  }
}
