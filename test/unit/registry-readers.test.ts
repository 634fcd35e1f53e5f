// Issue 8 point 9: a read-only command never moves the registry aside; a file being rewritten in place by
// another program is read again until it parses. Point 11: a group/other-writable registry is warned about once.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from '../../src/registry/store.js';
import { ROOT } from '../helpers/cli.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tao-readers-'));
  dirs.push(dir);
  return { dir, file: join(dir, 'state.json') };
}

describe('registry readers', () => {
  it('reads while another program rewrites the file in place: never quarantined, the entry is seen', async () => {
    const { dir, file } = tmp();
    writeFileSync(file, '{}', { mode: 0o600 });
    const writer = spawn(process.execPath, [join(ROOT, 'test/fixtures/rewrite-in-place.mjs'), file, '3000'], { stdio: 'ignore' });
    const exited = new Promise((r) => writer.once('exit', r));
    const reg = new Registry(file, { warn: () => undefined });
    let ok = 0;
    const errors: string[] = [];
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      try {
        const s = await reg.read();
        if (s.entries.a1) ok++;
      } catch (e) {
        errors.push((e as { code?: string }).code ?? String(e));
      }
      await new Promise((r) => setTimeout(r, 3));
    }
    await exited;
    expect(readdirSync(dir).filter((f) => f.includes('.corrupt-'))).toEqual([]);
    expect(ok).toBeGreaterThan(50);
    // A reader may give up on a file that never settles, but only by saying so, never by calling it corrupt.
    expect(errors.filter((c) => c !== 'registry_unstable')).toEqual([]);
  }, 20_000);

  it('a group/other-writable registry is warned about once, then written back with mode 600', async () => {
    const { file } = tmp();
    writeFileSync(file, '{}');
    chmodSync(file, 0o666);
    const warnings: string[] = [];
    const reg = new Registry(file, { warn: (m) => warnings.push(m) });
    await reg.read();
    await reg.read();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/writable by group or others \(mode 666\)/);
    await reg.mutate((s) => void (s.entries.x = { job_id: 'x', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: '', started_at: '2026-01-01T00:00:00Z' }));
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});
