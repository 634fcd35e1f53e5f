/**
 * Running external commands (docker, brev, ...) and turning failures into CommandFailedError.
 * Never pass a secret in `args`: argv is shown in errors and `--dry-run`, and visible in the process table.
 *
 * Built on node:child_process `spawn` rather than execa: this runs on every start and `ls`, and loading execa
 * cost 20–50 ms of CLI start-up (issue 9, bench/profile-start.mjs). Same result shape as execa with
 * `reject: false`: one final newline stripped from stdout/stderr, exit code -1 when the child was killed
 * (timeout, abort signal) or could not be started.
 */
import { spawn } from 'node:child_process';
import { CommandFailedError, PlatformUnavailableError } from '../errors.js';

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Data written to the child's stdin (the channel for secrets). */
  input?: string;
  /** Kill the child (SIGTERM, then SIGKILL 2 s later) after this long; the result then has exit code -1. */
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

/** Output kept per stream; beyond it the child is killed (exit code -1) and a note is added to stderr. */
export const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

function stripFinalNewline(s: string): string {
  return s.endsWith('\r\n') ? s.slice(0, -2) : s.endsWith('\n') ? s.slice(0, -1) : s;
}

/**
 * Run `file args` (no shell) and return the result whatever the exit code.
 * @throws PlatformUnavailableError when the executable is missing.
 */
export function runCapture(file: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const size = { out: 0, err: 0 };
    let note = '';
    let killed = false;
    let hardKill: NodeJS.Timeout | undefined;
    const kill = (why: string) => {
      if (killed || child.exitCode !== null) return;
      killed = true;
      note ||= why;
      child.kill('SIGTERM');
      hardKill = setTimeout(() => child.kill('SIGKILL'), 2000);
      hardKill.unref();
    };
    const collect = (chunks: Buffer[], key: 'out' | 'err') => (d: Buffer) => {
      if (size[key] + d.length > MAX_OUTPUT_BYTES) return kill(`output exceeded ${MAX_OUTPUT_BYTES} bytes`);
      size[key] += d.length;
      chunks.push(d);
    };
    child.stdout!.on('data', collect(out, 'out'));
    child.stderr!.on('data', collect(err, 'err'));
    const timer = opts.timeoutMs !== undefined ? setTimeout(() => kill(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs) : undefined;
    const onAbort = () => kill('aborted');
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      if (timer) clearTimeout(timer);
      if (hardKill) clearTimeout(hardKill);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => undefined); // EPIPE when the child exits without reading
      child.stdin!.end(opts.input);
    }
    child.once('error', (e: NodeJS.ErrnoException) => {
      done();
      if (e.code === 'ENOENT') reject(new PlatformUnavailableError(opts.platform ?? file, `'${file}' was not found on PATH`, { hint: opts.installHint }));
      else resolve({ exitCode: -1, stdout: '', stderr: `cannot run ${file}: ${e.message}` });
    });
    child.once('close', (code) => {
      done();
      const stderr = stripFinalNewline(Buffer.concat(err).toString('utf8'));
      resolve({
        exitCode: killed || code === null ? -1 : code,
        stdout: stripFinalNewline(Buffer.concat(out).toString('utf8')),
        stderr: note ? `${stderr}${stderr ? '\n' : ''}${file}: ${note}` : stderr,
      });
    });
  });
}

/** Last `n` non-empty lines of a text. */
export function tailLines(text: string, n: number): string[] {
  const lines = text.split(/\r?\n/);
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines.slice(-n);
}

/**
 * Require exit 0 of a finished run of `file args`. Returns `r`.
 * @throws CommandFailedError (argv shown, stderr tail, `hint(stderr)`)
 */
export function checkExit(file: string, args: string[], r: RunResult, hint?: (stderr: string) => string | undefined): RunResult {
  if (r.exitCode !== 0) {
    const stderr = r.stderr || r.stdout;
    throw new CommandFailedError([file, ...args], r.exitCode, tailLines(stderr, 12).join('\n'), { hint: hint?.(stderr) });
  }
  return r;
}

/** Run and require exit 0. @throws CommandFailedError (argv shown, stderr tail), PlatformUnavailableError */
export async function runChecked(file: string, args: string[], opts: RunOptions & { hint?: (stderr: string) => string | undefined } = {}): Promise<RunResult> {
  return checkExit(file, args, await runCapture(file, args, opts), opts.hint);
}
