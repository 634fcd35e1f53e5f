import { describe, expect, it } from 'vitest';
import { PlatformUnavailableError, CommandFailedError } from '../../src/errors.js';
import { runCapture, runChecked } from '../../src/util/run.js';

const node = process.execPath;

describe('running external commands (util/run.ts)', () => {
  it('returns exit code, stdout and stderr with one final newline stripped, like execa', async () => {
    const r = await runCapture(node, ['-e', 'process.stdout.write("a\\nb\\n\\n"); process.stderr.write("warn\\n"); process.exitCode = 3']);
    expect(r).toEqual({ exitCode: 3, stdout: 'a\nb\n', stderr: 'warn' });
  });

  it('passes exactly the given environment and feeds input on stdin', async () => {
    const r = await runCapture(node, ['-e', 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(s.toUpperCase(), process.env.ONLY_THIS, process.env.HOME === undefined))'], {
      env: { ONLY_THIS: 'yes', PATH: process.env.PATH },
      input: 'secret from stdin',
    });
    expect(r.stdout).toBe('SECRET FROM STDIN yes true');
  });

  it('a missing executable is a PlatformUnavailableError with the install hint', async () => {
    const e = await runCapture('tao-infer-no-such-binary', [], { platform: 'local-docker', installHint: 'Install it.' }).catch((x) => x);
    expect(e).toBeInstanceOf(PlatformUnavailableError);
    expect(e.message).toMatch(/'tao-infer-no-such-binary' was not found on PATH/);
    expect(e.hint).toBe('Install it.');
  });

  it('a child past its timeout is killed and reported with exit code -1', async () => {
    const t0 = Date.now();
    const r = await runCapture(node, ['-e', 'setTimeout(() => {}, 30000)'], { timeoutMs: 200 });
    expect(r.exitCode).toBe(-1);
    expect(r.stderr).toMatch(/timed out after 200 ms/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('an abort signal kills the child (exit code -1)', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const r = await runCapture(node, ['-e', 'setTimeout(() => {}, 30000)'], { signal: ac.signal });
    expect(r.exitCode).toBe(-1);
    expect(r.stderr).toMatch(/aborted/);
  });

  it('runChecked turns a non-zero exit into CommandFailedError carrying the stderr tail and hint', async () => {
    const e = await runChecked(node, ['-e', 'console.error("boom: address already in use"); process.exit(125)'], { hint: (s) => (/in use/.test(s) ? 'free the port' : undefined) }).catch((x) => x);
    expect(e).toBeInstanceOf(CommandFailedError);
    expect(e.message).toMatch(/boom: address already in use/);
    expect(e.hint).toBe('free the port');
  });
});
