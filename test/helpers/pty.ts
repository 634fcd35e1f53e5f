// Drives the CLI through a real pseudo-terminal, as a person at a terminal would: util-linux `script`
// (bsdutils, on every Debian system) gives the command a pty for stdin/stdout/stderr, so the CLI is
// interactive (isTTY) and draws its inquirer prompts; the test waits for each prompt text and types keys.
import { spawn } from 'node:child_process';
import { CLI, ROOT } from './cli.js';

export const KEY = { enter: '\r', down: '\x1b[B', up: '\x1b[A', ctrlC: '\x03' } as const;

export interface PtySession {
  /** Wait until the output since the last match matches `re` (ANSI codes removed); returns the match. */
  expect(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Type raw keys (see KEY). */
  send(keys: string): void;
  /** Wait for the CLI to end; resolves its exit code and all output (stdout and stderr share the pty). */
  done(timeoutMs?: number): Promise<{ exitCode: number; output: string }>;
  /** Everything printed so far, ANSI codes removed. */
  output(): string;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r/g;

/** Start `tao-infer <args>` on a pty. `env` is added to this process' environment; CI is removed. */
export function startPty(args: string[], env: Record<string, string | undefined> = {}): PtySession {
  const quoted = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  // The pty keeps script's default size (80 columns), a common terminal: prompts must read well there.
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, TERM: 'xterm' };
  delete childEnv.CI;
  const child = spawn('script', ['-q', '-f', '-e', '-c', quoted, '/dev/null'], { cwd: ROOT, env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  let raw = '';
  let cursor = 0;
  const waiters = new Set<() => void>();
  const onData = (d: Buffer) => {
    raw += d.toString('utf8');
    for (const w of [...waiters]) w();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  let ended = false;
  void exited.then(() => {
    ended = true;
    for (const w of [...waiters]) w();
  });
  const clean = () => raw.replace(ANSI, '');
  return {
    output: clean,
    send(keys) {
      child.stdin.write(keys);
    },
    expect(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const text = clean();
          const m = text.slice(cursor).match(re);
          if (m) {
            cursor += (m.index ?? 0) + m[0].length;
            finish();
            resolve(m);
          } else if (ended) {
            finish();
            reject(new Error(`the CLI ended before printing ${re}; output:\n${text}`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`no ${re} within ${timeoutMs} ms; output:\n${clean()}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async done(timeoutMs = 60_000) {
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        const exitCode = await exited;
        return { exitCode, output: clean() };
      } finally {
        clearTimeout(timer);
        child.stdin.end();
      }
    },
  };
}
