/**
 * Running external commands (docker, brev, ...) with execa and turning failures into CommandFailedError.
 * Never pass a secret in `args`: argv is shown in errors and `--dry-run`, and visible in the process table.
 */
import { execa } from 'execa';
import { CommandFailedError, PlatformUnavailableError } from '../errors.js';

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Data written to the child's stdin (the channel for secrets). */
  input?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Platform name for a "command not found" error. */
  platform?: string;
  /** Hint for the not-found case. */
  installHint?: string;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Run and return the result whatever the exit code. @throws PlatformUnavailableError when the executable is missing. */
export async function runCapture(file: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await execa(file, args, {
    reject: false,
    env: opts.env ?? process.env,
    extendEnv: false,
    timeout: opts.timeoutMs,
    cancelSignal: opts.signal,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
  });
  if ((r as { code?: string }).code === 'ENOENT' || (r.failed && /ENOENT/.test(String(r.message)) && r.exitCode === undefined))
    throw new PlatformUnavailableError(opts.platform ?? file, `'${file}' was not found on PATH`, { hint: opts.installHint });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

/** Last `n` non-empty lines of a text. */
export function tailLines(text: string, n: number): string[] {
  const lines = text.split(/\r?\n/);
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines.slice(-n);
}

/** Run and require exit 0. @throws CommandFailedError (argv shown, stderr tail), PlatformUnavailableError */
export async function runChecked(file: string, args: string[], opts: RunOptions & { hint?: (stderr: string) => string | undefined } = {}): Promise<RunResult> {
  const r = await runCapture(file, args, opts);
  if (r.exitCode !== 0) {
    const stderr = r.stderr || r.stdout;
    throw new CommandFailedError([file, ...args], r.exitCode, tailLines(stderr, 12).join('\n'), { hint: opts.hint?.(stderr) });
  }
  return r;
}
