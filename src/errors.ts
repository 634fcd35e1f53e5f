/**
 * Error hierarchy of tao-infer. Every failure a user can meet is one of these classes; the CLI maps
 * each family to one exit code (see `exitCodeFor`) and prints `message` plus `hint`.
 *
 * Exit codes (documented in README.md):
 *   2  bad input (UserError)            — nothing was launched, the registry is unchanged
 *   3  platform failure (PlatformError) — the platform or its CLI/API refused or failed
 *   4  service not ready                — readiness timed out or the service failed while loading
 *   5  request rejected                 — the microservice answered 4xx/5xx to a request
 *   6  registry problem                 — lock timeout, corrupt/unsafe registry file
 *   130 interrupted (Ctrl-C)            — a start interrupted while launching or loading is cleaned up
 *   1  anything else (a bug)
 */

export interface TaoInferErrorOptions {
  /** What the user should do next; printed after the message. */
  hint?: string;
  cause?: unknown;
  /**
   * Thrown by an adapter's launch that knows the platform created nothing (e.g. the docker daemon did not
   * answer): the start's rollback then removes the registry entry without asking the platform to stop anything.
   */
  nothingLaunched?: boolean;
}

/** Base class: `code` is a stable machine-readable name, `hint` tells the user what to do. */
export class TaoInferError extends Error {
  readonly code: string;
  readonly hint?: string;
  /** See TaoInferErrorOptions.nothingLaunched. */
  readonly nothingLaunched: boolean;
  constructor(code: string, message: string, opts: TaoInferErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    if (opts.hint !== undefined) this.hint = opts.hint;
    this.nothingLaunched = opts.nothingLaunched === true;
  }
  /** Extra fields for `--json` error output. Subclasses add their data. */
  details(): Record<string, unknown> {
    return {};
  }
}

// ---------------------------------------------------------------- exit 2: bad input
export class UserError extends TaoInferError {}

/** A reference/data file (YAML/JSON) is missing or does not match its schema. */
export class ConfigError extends UserError {
  constructor(
    readonly file: string,
    readonly issues: string[],
    opts: TaoInferErrorOptions = {},
  ) {
    super('config_invalid', `${file}: ${issues.join('; ')}`, opts);
  }
  override details() {
    return { file: this.file, issues: this.issues };
  }
}

export class UnsupportedArchError extends UserError {
  constructor(
    readonly network_arch: string,
    readonly valid: string[],
  ) {
    super('unsupported_arch', `network_arch '${network_arch}' is not supported`, {
      hint: `Use one of: ${valid.join(', ')} (see 'tao-infer archs').`,
    });
  }
  override details() {
    return { network_arch: this.network_arch, valid: this.valid };
  }
}

/** One input value (flag, prompt answer, body field) is invalid. `field` names the flag or field. */
export class InvalidInputError extends UserError {
  constructor(
    readonly field: string,
    message: string,
    opts: TaoInferErrorOptions = {},
  ) {
    super('invalid_input', message, opts);
  }
  override details() {
    return { field: this.field };
  }
}

/** A required input is missing and we may not prompt (CI, --yes, no TTY). */
export class MissingInputError extends InvalidInputError {
  constructor(flag: string, what: string) {
    super(flag, `missing ${what}`, { hint: `Pass ${flag} (prompts are disabled without a TTY, with --yes or when CI is set).` });
  }
}

export interface Candidate {
  job_id: string;
  network_arch: string;
  host_url?: string;
  started_at?: string;
}

/** Several services match and none may be picked silently. */
export class AmbiguousTargetError extends UserError {
  constructor(
    message: string,
    readonly candidates: Candidate[],
    /** How the choice is given: `--job` (request) or `<job_id>` (stop, logs, tunnel). */
    how = '--job',
  ) {
    super('ambiguous_target', message, {
      hint:
        `Choose one with ${how === '--job' ? '--job <job_id>' : 'its full job_id'}:\n` +
        candidates.map((c) => `  ${c.job_id}  ${c.network_arch}  ${c.host_url ?? ''}  ${c.started_at ?? ''}`).join('\n'),
    });
  }
  override details() {
    return { candidates: this.candidates };
  }
}

export class JobNotFoundError extends UserError {
  constructor(
    readonly job_id: string,
    hint = "Run 'tao-infer ls' to see the services in the registry.",
  ) {
    super('job_not_found', `no service with job_id '${job_id}' in the registry`, { hint });
  }
  override details() {
    return { job_id: this.job_id };
  }
}

/** No service exists to satisfy the request. */
export class NoServiceError extends UserError {
  constructor(message: string, hint = "Start one with 'tao-infer start'.") {
    super('no_service', message, { hint });
  }
}

// ---------------------------------------------------------------- exit 3: platform failure
export class PlatformError extends TaoInferError {}

/** Credentials, CLI, or endpoint of a platform missing/unreachable. */
export class PlatformUnavailableError extends PlatformError {
  constructor(
    readonly platform: string,
    message: string,
    opts: TaoInferErrorOptions = {},
  ) {
    super('platform_unavailable', `${platform}: ${message}`, opts);
  }
  override details() {
    return { platform: this.platform };
  }
}

/** An external command failed. `argv` must already have secrets masked (names only). */
export class CommandFailedError extends PlatformError {
  constructor(
    readonly argv: string[],
    readonly exitCode: number | undefined,
    readonly stderrTail: string,
    opts: TaoInferErrorOptions = {},
  ) {
    super(
      'command_failed',
      `command failed (exit ${exitCode ?? 'signal'}): ${argv.join(' ').slice(0, 400)}${stderrTail ? `\n${stderrTail}` : ''}`,
      opts,
    );
  }
  override details() {
    return { argv: this.argv, command_exit_code: this.exitCode, stderr_tail: this.stderrTail };
  }
}

/** The platform accepted the job but it failed before the service came up (image pull, pod failure, ...). */
export class LaunchFailedError extends PlatformError {
  constructor(
    message: string,
    readonly reason?: string,
    readonly logTail: string[] = [],
    opts: TaoInferErrorOptions = {},
  ) {
    super('launch_failed', logTail.length ? `${message}\n--- last ${logTail.length} log lines ---\n${logTail.join('\n')}` : message, opts);
  }
  override details() {
    return { reason: this.reason, log_tail: this.logTail };
  }
}

// ---------------------------------------------------------------- exit 4: service not ready
export class ServiceNotReadyError extends TaoInferError {}

export class ReadinessTimeoutError extends ServiceNotReadyError {
  constructor(
    readonly job_id: string,
    readonly seconds: number,
    readonly lastState: string,
  ) {
    super('readiness_timeout', `service ${job_id} was not ready after ${seconds}s (last state: ${lastState})`, {
      hint: `Check 'tao-infer logs ${job_id}', or wait longer with --timeout.`,
    });
  }
  override details() {
    return { job_id: this.job_id, timeout_s: this.seconds, last_state: this.lastState };
  }
}

/** The service failed while starting: container exited, or readiness said initialization/model_load error. */
export class ServiceFailedError extends ServiceNotReadyError {
  constructor(
    readonly job_id: string,
    message: string,
    readonly errorType: string,
    readonly logTail: string[] = [],
    readonly exitCode?: number,
  ) {
    super(
      'service_failed',
      `service ${job_id} failed: ${message}${logTail.length ? `\n--- last ${logTail.length} log lines ---\n${logTail.join('\n')}` : ''}`,
      { hint: `See 'tao-infer logs ${job_id}' (if kept) for the full log.` },
    );
  }
  override details() {
    return { job_id: this.job_id, error_type: this.errorType, service_exit_code: this.exitCode, log_tail: this.logTail };
  }
}

// ---------------------------------------------------------------- exit 5: request rejected
export class RequestRejectedError extends TaoInferError {
  constructor(
    readonly status: number,
    readonly errorType: string,
    message: string,
    opts: TaoInferErrorOptions = {},
  ) {
    super('request_rejected', `request rejected (HTTP ${status} ${errorType}): ${message}`, opts);
  }
  override details() {
    return { status: this.status, error_type: this.errorType };
  }
}

// ---------------------------------------------------------------- exit 6: registry
export class RegistryError extends TaoInferError {}

export class RegistryCorruptError extends RegistryError {
  constructor(
    readonly file: string,
    readonly quarantinedTo: string,
    reason: string,
  ) {
    super('registry_corrupt', `registry ${file} could not be parsed (${reason}); it was moved aside to ${quarantinedTo}`, {
      hint: `Nothing was deleted. Inspect ${quarantinedTo}, repair it and move it back, or re-run the command to start a new registry.`,
    });
  }
  override details() {
    return { file: this.file, quarantined_to: this.quarantinedTo };
  }
}

/** The user interrupted the command (Ctrl-C / SIGINT / SIGTERM). */
export class InterruptedError extends TaoInferError {
  constructor(signal: string) {
    super('interrupted', `interrupted by ${signal}`);
  }
}

/** Family → exit code. The single place that decides process exit codes. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof InterruptedError) return 130;
  if (err instanceof UserError) return 2;
  if (err instanceof PlatformError) return 3;
  if (err instanceof ServiceNotReadyError) return 4;
  if (err instanceof RequestRejectedError) return 5;
  if (err instanceof RegistryError) return 6;
  return 1;
}

export const EXIT_CODES = {
  ok: 0,
  bug: 1,
  bad_input: 2,
  platform_failure: 3,
  service_not_ready: 4,
  request_rejected: 5,
  registry: 6,
  interrupted: 130,
} as const;
