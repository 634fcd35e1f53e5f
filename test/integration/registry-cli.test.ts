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
    expect(parseJson(ls)).toEqual([expect.objectContaining({ job_id: 'skill-1', network_arch: 'cosmos-rl', live: expect.objectContaining({ state: 'gone' }) })]); // no such container on this daemon
    // Routing picks the only entry; nothing listens on its port, so the request fails as unreachable (exit 4), not as bad input.
    const req = await runCli(['request', '--prompt', 'x', '--image', join(ROOT, 'test/fixtures/media/cat.png')], { env: { TAO_INF_STATE_FILE: stateFile } });
    expect(req.stderr).toContain('Sending to job_id=skill-1 arch=cosmos-rl url=http://localhost:8199/v1/chat/completions');
    expect(req.exitCode).toBe(4);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))['skill-1']).toEqual(skillEntry('skill-1'));
  });

  it('short ids: a unique 4+ prefix works for stop and request --job; too short or ambiguous is exit 2 listing the candidates', async () => {
    const { stateFile } = tempState();
    const env = { TAO_INF_STATE_FILE: stateFile };
    const a = 'feed1111-0000-4000-8000-00000000000a';
    const b = 'feed2222-0000-4000-8000-00000000000b';
    writeFileSync(stateFile, JSON.stringify({ [a]: skillEntry(a), [b]: skillEntry(b), latest: b }), { mode: 0o600 });
    const short = await runCli(['stop', 'fee', '--json'], { env });
    expect(short.exitCode).toBe(2);
    expect(parseJson(short).error.message).toMatch(/at least 4 characters/);
    const amb = await runCli(['logs', 'feed'], { env });
    expect(amb.exitCode).toBe(2);
    expect(amb.stderr).toContain(a);
    expect(amb.stderr).toContain(b);
    const req = await runCli(['request', '--job', 'feed2', '--prompt', 'x', '--image', join(ROOT, 'test/fixtures/media/cat.png')], { env });
    expect(req.stderr).toContain(`Sending to job_id=${b}`);
    expect(req.exitCode).toBe(4);
    // The container is already gone on the engine: stop by prefix removes the full entry.
    const stop = await runCli(['stop', 'feed1', '--json'], { env });
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(parseJson(stop).stopped).toEqual([a]);
    expect(Object.keys(JSON.parse(readFileSync(stateFile, 'utf8')))).toEqual([b, 'latest']);
  });

  it('request warns on stderr when the service is past its expires_at; ls shows AGE and EXPIRES', async () => {
    const { stateFile } = tempState();
    const env = { TAO_INF_STATE_FILE: stateFile, COLUMNS: '200' };
    const id = 'e0e0e0e0-0000-4000-8000-000000000001';
    const past = new Date(Date.now() - 5 * 60_000).toISOString();
    writeFileSync(stateFile, JSON.stringify({ [id]: { ...skillEntry(id), expires_at: past }, latest: id }), { mode: 0o600 });
    const req = await runCli(['request', '--prompt', 'x', '--image', join(ROOT, 'test/fixtures/media/cat.png')], { env });
    expect(req.stderr).toMatch(new RegExp(`warning: service ${id} expired 5m ago`));
    const ls = await runCli(['ls'], { env });
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/^JOB_ID +ARCH +PLATFORM +STATE +AGE +EXPIRES +URL +DETAIL/);
    expect(ls.stdout).toMatch(/^e0e0e0e0\* +cosmos-rl +local-docker +\S+ +\d+d +5m ago +http:\/\/localhost:8199/m);
    // Not a terminal: no colour codes.
    expect(ls.stdout).not.toContain('\u001b[');
  });

  it('start --dry-run shows --idle-timeout as the arch flag and --max-duration as the expiry label; refusals are exit 2', async () => {
    const { stateFile } = tempState();
    const env = { TAO_INF_STATE_FILE: stateFile };
    const dry = await runCli(['start', '--arch', 'tao-dataservices', '--model', 'hf_model://o/m', '--idle-timeout', '15', '--max-duration', '2h', '--dry-run', '--json'], { env });
    expect(dry.exitCode, dry.stderr).toBe(0);
    const out = parseJson(dry);
    expect(out.inner_command).toMatch(/ --idle_timeout_minutes 15$/);
    const argv = JSON.stringify(out.plan);
    expect(argv).toMatch(/tao-infer\.expires_at=\d{4}-\d\d-\d\dT/);
    expect(dry.stderr).toContain('tao-infer prune');
    const refused = await runCli(['start', '--arch', 'cosmos-rl', '--model', 'hf_model://o/m', '--idle-timeout', '15', '--dry-run', '--json'], { env });
    expect(refused.exitCode).toBe(2);
    expect(parseJson(refused).error.message).toMatch(/cosmos-rl has no idle timeout/);
    const bad = await runCli(['start', '--arch', 'cosmos-rl', '--model', 'hf_model://o/m', '--max-duration', '2', '--dry-run', '--json'], { env });
    expect(bad.exitCode).toBe(2);
    expect(existsSync(stateFile)).toBe(false);
  });
});
