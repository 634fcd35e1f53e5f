// Issue 8 point 1: a lock holder frozen (SIGSTOP) past the stale time, whose lock another process takes
// over, must not rename its stale state over the newer file when it resumes.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from '../../src/registry/store.js';
import { ROOT } from '../helpers/cli.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * A real registry writer (test/fixtures/registry-writer-pausing.mjs) that took the lock and was then SIGSTOPped
 * mid-mutation, with a lock stale time of 2 s. `output()` is what it printed so far; `exited` its exit code.
 */
async function frozenHolder() {
  const dir = mkdtempSync(join(tmpdir(), 'tao-frozen-'));
  dirs.push(dir);
  const file = join(dir, 'state.json');
  const env = { ...process.env, TAO_INF_LOCK_STALE_MS: '2000' };
  const holder = spawn(process.execPath, [join(ROOT, 'test/fixtures/registry-writer-pausing.mjs'), file, 'frozen-writer', '300'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise<number | null>((r) => holder.once('exit', (c) => r(c)));
  await new Promise<void>((res, rej) => {
    holder.stdout!.on('data', (d) => {
      out += String(d);
      if (out.includes('locked')) res();
    });
    holder.once('exit', (c) => rej(new Error(`holder exited ${c} before taking the lock`)));
  });
  holder.kill('SIGSTOP');
  return { file, holder, exited, output: () => out };
}

describe('registry lock taken over from a frozen holder', () => {
  it('a SIGSTOPped holder that resumes after another process took the lock loses no entry', async () => {
    const { file, holder, exited, output } = await frozenHolder();
    try {
      // Another process (this one) waits for the lock to go stale, takes it over and records its entry.
      const t0 = Date.now();
      await new Registry(file, { staleMs: 2000 }).mutate((s) => {
        s.entries['taken-over'] = { job_id: 'taken-over', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:2', started_at: new Date().toISOString() };
        s.latest = 'taken-over';
      });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
    } finally {
      holder.kill('SIGCONT');
    }
    expect(await exited).toBe(0);
    expect(output()).toContain('done');
    const raw = JSON.parse(readFileSync(file, 'utf8'));
    expect(Object.keys(raw).sort()).toEqual(['frozen-writer', 'latest', 'taken-over']);
    expect(raw.latest).toBe('taken-over');
  }, 30_000);

  it('a frozen holder that resumes while the new holder still holds the lock leaves that lock alone and waits for it', async () => {
    const { file, holder, exited, output } = await frozenHolder();
    let lockKeptWhileHeld = false;
    try {
      await new Registry(file, { staleMs: 2000 }).mutate(async (s) => {
        // We hold the taken-over lock; the frozen holder resumes, finds its lock lost, and must not remove ours.
        const mtime = statSync(`${file}.lock`).mtimeMs;
        holder.kill('SIGCONT');
        await new Promise((r) => setTimeout(r, 1200));
        lockKeptWhileHeld = existsSync(`${file}.lock`) && statSync(`${file}.lock`).mtimeMs >= mtime;
        expect(output()).not.toContain('done'); // it waits for our lock instead of writing
        s.entries['taken-over'] = { job_id: 'taken-over', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:2', started_at: new Date().toISOString() };
      });
    } finally {
      holder.kill('SIGCONT');
    }
    expect(lockKeptWhileHeld).toBe(true);
    expect(await exited).toBe(0);
    expect(Object.keys(JSON.parse(readFileSync(file, 'utf8'))).sort()).toEqual(['frozen-writer', 'taken-over']);
  }, 30_000);
});
