/**
 * The registry as the CLI meets it: a SIGKILLed lock holder, a corrupt file, a symlink, a foreign
 * entry written by NVIDIA's published skill. Runs the built CLI; local-docker stop goes to the real engine.
 */
import { existsSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, parseJson, runCli, tempState } from '../helpers/cli.js';
import { leaveStaleLock } from '../helpers/lock.js';

const skillEntry = (job_id: string) => ({
  job_id,
  platform: 'local-docker',
  platform_job_id: null,
  network_arch: 'cosmos-rl',
  host_url: 'http://localhost:8199',
  docker_url: `http://${job_id}:8080`,
  host_port: 8199,
  started_at: '2026-01-01T00:00:00+00:00',
});

describe('registry through the CLI', () => {
  it('a SIGKILLed lock holder delays the next command no longer than the stale timeout', async () => {
    const { stateFile } = tempState();
    writeFileSync(stateFile, JSON.stringify({ 'gone-1': skillEntry('gone-1'), latest: 'gone-1' }), { mode: 0o600 });
    await leaveStaleLock(stateFile);
    expect(existsSync(`${stateFile}.lock`)).toBe(true);
    const t0 = Date.now();
    // The container is already gone: stop only has to clean the registry, under the lock.
    const r = await runCli(['stop', 'gone-1', '--json'], { env: { TAO_INF_STATE_FILE: stateFile, TAO_INF_LOCK_STALE_MS: '3000' } });
    const elapsed = Date.now() - t0;
    expect(r.exitCode, r.stderr).toBe(0);
    expect(parseJson(r).stopped).toEqual(['gone-1']);
    expect(elapsed).toBeLessThan(3000 + 4000);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toEqual({});
  });

  it('a corrupt registry is reported with exit 6 by a read-only ls (left in place), never reset', async () => {
    const { stateFile } = tempState();
    writeFileSync(stateFile, '{"abc": {"job_id": "abc", "platform": "local-docker"', { mode: 0o600 });
    const r = await runCli(['ls', '--json'], { env: { TAO_INF_STATE_FILE: stateFile } });
    expect(r.exitCode).toBe(6);
    const err = parseJson(r).error;
    expect(err.code).toBe('registry_corrupt');
    expect(readFileSync(stateFile, 'utf8')).toBe('{"abc": {"job_id": "abc", "platform": "local-docker"');
    expect(readdirSync(dirname(stateFile)).filter((f) => f.includes('.corrupt-'))).toHaveLength(0);
  });

  it('a symlinked registry is refused with exit 6 and its target untouched', async () => {
    const { dir, stateFile } = tempState();
    const target = join(dir, 'elsewhere.json');
    writeFileSync(target, '{}');
    symlinkSync(target, stateFile);
    const r = await runCli(['stop', '--all', '--yes'], { env: { TAO_INF_STATE_FILE: stateFile } });
    expect(r.exitCode).toBe(6);
    expect(r.stderr).toMatch(/symbolic link/);
    expect(readFileSync(target, 'utf8')).toBe('{}');
  });

  it('entries written by the published skill are listed, routed to and kept on writes', async () => {
    const { stateFile } = tempState();
    writeFileSync(stateFile, JSON.stringify({ 'skill-1': skillEntry('skill-1'), latest: 'skill-1' }), { mode: 0o600 });
    const ls = await runCli(['ls', '--json'], { env: { TAO_INF_STATE_FILE: stateFile } });
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(parseJson(ls)).toEqual([expect.objectContaining({ job_id: 'skill-1', network_arch: 'cosmos-rl', live: expect.objectContaining({ state: 'unknown' }) })]);
    // Routing picks the only entry; nothing listens on its port, so the request fails as unreachable (exit 4), not as bad input.
    const req = await runCli(['request', '--prompt', 'x', '--image', join(ROOT, 'test/fixtures/media/cat.png')], { env: { TAO_INF_STATE_FILE: stateFile } });
    expect(req.stderr).toContain('Sending to job_id=skill-1 arch=cosmos-rl url=http://localhost:8199/v1/chat/completions');
    expect(req.exitCode).toBe(4);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))['skill-1']).toEqual(skillEntry('skill-1'));
  });
});
