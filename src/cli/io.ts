/**
 * CLI input/output: interactive detection, prompts (inquirer, loaded lazily, drawn on stderr so
 * stdout stays clean for --json), progress lines, and the single error renderer.
 */
import { InterruptedError, MissingInputError, TaoInferError, exitCodeFor, type Candidate } from '../errors.js';

/** The global flags, declared once on the program (src/cli/main.ts). */
export interface GlobalFlags {
  /** One JSON document on stdout (results, and errors). */
  json?: boolean;
  /** Never prompt. */
  yes?: boolean;
}

/** The global flags as a command's action sees them (given before or after the command name). */
export function globalFlags(cmd: { optsWithGlobals(): object }): GlobalFlags {
  const o = cmd.optsWithGlobals() as { json?: unknown; yes?: unknown };
  return { json: o.json === true, yes: o.yes === true };
}

/** Interactive only with a TTY on stdin and stderr, without --yes, and when CI is not set. */
export function isInteractive(flags: GlobalFlags, env: NodeJS.ProcessEnv = process.env): boolean {
  if (flags.yes) return false;
  if (env.CI && env.CI !== 'false' && env.CI !== '0') return false;
  return Boolean(process.stdin.isTTY && process.stderr.isTTY);
}

const promptContext = { output: process.stderr, clearPromptOnDone: false } as const;

/**
 * Run one inquirer prompt. Ctrl-C in a prompt (inquirer's ExitPromptError) becomes InterruptedError, so the
 * command ends with exit 130 like any other interrupt, before anything was launched.
 */
async function prompted<T>(ask: () => Promise<T>): Promise<T> {
  try {
    return await ask();
  } catch (e) {
    if ((e as Error)?.name === 'ExitPromptError') throw new InterruptedError('Ctrl-C at a prompt');
    throw e;
  }
}

/**
 * Free-text prompt on stderr; `validate` returns an error text or true.
 * @throws InterruptedError on Ctrl-C
 */
export async function askText(message: string, opts: { default?: string; validate?: (v: string) => string | true } = {}): Promise<string> {
  const { input } = await import('@inquirer/prompts');
  return prompted(() => input({ message, default: opts.default, validate: opts.validate }, promptContext));
}

/**
 * A choice among `choices` (arrow keys, Enter) on stderr; resolves the chosen `value`.
 * @throws InterruptedError on Ctrl-C
 */
export async function askSelect<T extends string>(message: string, choices: Array<{ name: string; value: T; description?: string }>): Promise<T> {
  const { select } = await import('@inquirer/prompts');
  return prompted(() => select<T>({ message, choices }, promptContext));
}

/**
 * A yes/no question on stderr (default `dflt`).
 * @throws InterruptedError on Ctrl-C
 */
export async function askConfirm(message: string, dflt = false): Promise<boolean> {
  const { confirm } = await import('@inquirer/prompts');
  return prompted(() => confirm({ message, default: dflt }, promptContext));
}

/**
 * A required input: the given value, else a prompt when interactive, else MissingInputError naming the flag.
 */
export async function requireInput(
  value: string | undefined,
  flag: string,
  what: string,
  interactive: boolean,
  prompt: () => Promise<string>,
): Promise<string> {
  if (value !== undefined && value !== '') return value;
  if (!interactive) throw new MissingInputError(flag, what);
  return prompt();
}

/** Prompt to choose among several services (request routing); the highlighted one's host_url and start time show below. */
export async function chooseService(message: string, candidates: Candidate[]): Promise<string> {
  return askSelect(
    message,
    candidates.map((c) => ({ name: `${c.job_id}  ${c.network_arch}`, value: c.job_id, description: `${c.host_url ?? 'no host_url'}, started ${c.started_at ?? '?'}` })),
  );
}

/** Messages for people go to stderr; stdout is for results. */
export function info(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** A `warning: ...` line on stderr. */
export function warnLine(msg: string): void {
  process.stderr.write(`warning: ${msg}\n`);
}

/** The library's reporter (deps.reporter) for commands: messages and warnings on stderr. */
export const cliReporter = { log: (m: string) => info(m), warn: (m: string) => warnLine(m) };

/** A readiness progress reporter: one rewritten line on a TTY, a line per state change (or each 15 s) otherwise. */
export function progressReporter(label: string): { progress: (elapsedS: number, state: string) => void; done: () => void } {
  const tty = Boolean(process.stderr.isTTY);
  let lastState = '';
  let lastPrint = 0;
  let drawn = false;
  return {
    progress(elapsedS, state) {
      const line = `${label}: ${elapsedS.toFixed(0)}s elapsed, ${state}`;
      if (tty) {
        process.stderr.write(`\r\x1b[2K${line}`);
        drawn = true;
      } else if (state !== lastState || elapsedS - lastPrint >= 15) {
        process.stderr.write(`${line}\n`);
        lastPrint = elapsedS;
      }
      lastState = state;
    },
    done() {
      if (tty && drawn) process.stderr.write('\n');
    },
  };
}

/**
 * Launch progress lines on stderr (an image pull): on a TTY one line redrawn in place; otherwise plain lines,
 * only the `important` ones and at most one other every 10 s. Never on stdout, so `--json` output stays clean.
 */
export function lineReporter(): { line: (text: string, important: boolean) => void; done: () => void } {
  const tty = Boolean(process.stderr.isTTY);
  let drawn = false;
  let lastPrint = 0;
  return {
    line(text, important) {
      if (tty) {
        process.stderr.write(`\r\x1b[2K${text}`);
        drawn = true;
      } else if (important || Date.now() - lastPrint >= 10_000) {
        process.stderr.write(`${text}\n`);
        lastPrint = Date.now();
      }
    },
    done() {
      if (tty && drawn) process.stderr.write('\n');
      drawn = false;
    },
  };
}

/** Print a result: JSON document on stdout with --json, else the text renderer. */
export function emit(flags: GlobalFlags, json: unknown, text: () => string): void {
  if (flags.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else {
    const t = text();
    if (t) process.stdout.write(t.endsWith('\n') ? t : `${t}\n`);
  }
}

/**
 * The one place errors become output and an exit code. Stack traces only with DEBUG=1.
 * With --json the error is also the single JSON document on stdout.
 */
export function handleError(err: unknown, flags: GlobalFlags): number {
  const code = exitCodeFor(err);
  const debug = process.env.DEBUG === '1' || process.env.DEBUG === 'tao-infer';
  if (err instanceof TaoInferError) {
    process.stderr.write(`error: ${err.message}\n`);
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    if (flags.json)
      process.stdout.write(`${JSON.stringify({ error: { code: err.code, type: err.name, message: err.message, hint: err.hint, ...err.details(), exit_code: code } }, null, 2)}\n`);
  } else {
    const e = err as Error;
    process.stderr.write(`error: unexpected failure: ${e?.message ?? String(err)}\n`);
    process.stderr.write(debug && e?.stack ? `${e.stack}\n` : 'hint: this is a bug in tao-infer; re-run with DEBUG=1 for the stack trace and report it.\n');
    if (flags.json) process.stdout.write(`${JSON.stringify({ error: { code: 'internal', message: e?.message ?? String(err), exit_code: code } }, null, 2)}\n`);
  }
  return code;
}
