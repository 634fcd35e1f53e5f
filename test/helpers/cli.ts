/**
 * Runs the real, built CLI as a child process, the way users and CI scripts do: the bundled bin that
 * package.json `bin` names (`dist/bin/tao-infer.cjs`, built by `npm run build`).
 * Each test gets its own registry file through TAO_INF_STATE_FILE.
 */
import { execa, type Options } from 'execa';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
/** The `tao-infer` bin from package.json, absolute. */
export const CLI = join(ROOT, (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['tao-infer']!);

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A fresh temp dir with a registry path inside it (the file itself is not created). */
export function tempState(): { dir: string; stateFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tao-infer-test-'));
  return { dir, stateFile: join(dir, 'state.json') };
}

/** Run `tao-infer <args>` non-interactively (CI=true, no stdin) and never throw on non-zero exit. */
export async function runCli(
  args: string[],
  opts: { env?: Record<string, string | undefined>; input?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<CliResult> {
  const o: Options = {
    reject: false,
    env: { CI: 'true', NO_COLOR: '1', ...opts.env },
    extendEnv: true,
    timeout: opts.timeoutMs ?? 170_000,
    cwd: opts.cwd ?? ROOT,
    stripFinalNewline: false,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
  };
  const r = await execa(process.execPath, [CLI, ...args], o);
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Parse the single JSON document `--json` must print on stdout. */
export function parseJson<T = any>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.exitCode}):\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  }
}
