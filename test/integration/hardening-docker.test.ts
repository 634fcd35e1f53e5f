/**
 * Issue 8 on the real Docker engine: `logs` failures are exit 3 on stderr (8.8); two concurrent stops of one
 * job both succeed (8.11); a start racing a foreign unlocked writer re-records a vanished entry and retries a
 * host port taken between probe and bind (8.10). A docker wrapper in a temp dir plays the foreign program
 * just before `docker run` and then runs the real client.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, runCli } from '../helpers/cli.js';
import { docker, dockerTestEnv, ensureTestImage, realDocker, removeContainers, TEST_IMAGE } from '../helpers/docker.js';

const containers: string[] = [];
const pidFiles: string[] = [];
const dirs: string[] = [];

beforeAll(() => ensureTestImage(), 240_000);
afterAll(() => {
  removeContainers(containers);
  for (const f of pidFiles) {
    if (!existsSync(f)) continue;
    try {
      process.kill(Number(readFileSync(f, 'utf8')), 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A `docker` that runs `hook` (sh) before the first `docker run`, then the real client. */
function wrapper(hook: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'tao-docker-wrap-'));
  dirs.push(dir);
  const once = join(dir, 'hook-done');
  writeFileSync(
    join(dir, 'docker'),
    `#!/bin/sh\nif [ "$1" = run ] && [ ! -e '${once}' ]; then : > '${once}'; ${hook}\nfi\nexec '${realDocker()}' "$@"\n`,
  );
  chmodSync(join(dir, 'docker'), 0o755);
  return dir;
}

describe('logs: platform failures are exit 3 with the error on stderr', () => {
  it('no such container, and an unreachable daemon', async () => {
    const t = dockerTestEnv();
    dirs.push(t.dir);
    writeFileSync(t.stateFile, JSON.stringify({ ghost: { job_id: 'ghost', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:1', host_port: 1, started_at: '2026-01-01T00:00:00Z' } }), { mode: 0o600 });
    const r = await runCli(['logs', 'ghost'], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/No such (container|object)/);
    const down = await runCli(['logs', 'ghost'], { env: { ...t.env, DOCKER_HOST: `unix://${join(t.dir, 'no-daemon.sock')}` } });
    expect(down.exitCode, down.stderr).toBe(3);
    expect(down.stdout).toBe('');
  });
});

describe('stop', () => {
  it('two concurrent stops of one job both exit 0 and the job is gone', async () => {
    const t = dockerTestEnv();
    dirs.push(t.dir);
    const id = `tao-hard-${Date.now().toString(36)}`;
    containers.push(id);
    expect(docker(['run', '-d', '--name', id, '--label', 'tao-infer.test=hardening', '--entrypoint', 'sleep', TEST_IMAGE, '300']).code).toBe(0);
    writeFileSync(t.stateFile, JSON.stringify({ [id]: { job_id: id, platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:1', host_port: 1, started_at: '2026-01-01T00:00:00Z' }, latest: id }), { mode: 0o600 });
    const [a, b] = await Promise.all([runCli(['stop', id, '--json'], { env: t.env }), runCli(['stop', id, '--json'], { env: t.env })]);
    expect(a.exitCode, a.stderr).toBe(0);
    expect(b.exitCode, b.stderr).toBe(0);
    expect(docker(['inspect', id]).code).not.toBe(0);
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
  });
});

describe('start racing a foreign unlocked writer', () => {
  it('an entry wiped by another program during launch is recorded again (the container runs, so it must be listed)', async () => {
    const t = dockerTestEnv();
    dirs.push(t.dir);
    // The published skill's pattern: read, modify, write the whole file, no lock; here it drops our entry.
    const wrap = wrapper(`printf '{}' > "$TAO_INF_STATE_FILE"`);
    const r = await runCli(['start', '--arch', 'cosmos-rl', '--model', '/m', '--num-gpus', '0', '--no-wait', '--json'], { env: { ...t.env, PATH: `${wrap}:${t.env.PATH}` } });
    const out = r.exitCode === 0 ? parseJson(r) : undefined;
    if (out) containers.push(out.job_id);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/vanished during launch .*recorded it again/);
    const reg = JSON.parse(readFileSync(t.stateFile, 'utf8'));
    expect(reg[out.job_id]).toMatchObject({ job_id: out.job_id, state: 'started', host_port: out.host_port });
    const stop = await runCli(['stop', out.job_id], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
  });

  it('a host port bound by another program between probe and docker run: one retry on the next port', async () => {
    const t = dockerTestEnv();
    dirs.push(t.dir);
    const pidFile = join(t.dir, 'listener.pid');
    pidFiles.push(pidFile);
    // Bind the port docker is about to publish, as a foreign program would, then let docker run fail on it.
    const hook = `port=$(printf '%s\\n' "$@" | sed -n 's/^127\\.0\\.0\\.1:\\([0-9]*\\):8080$/\\1/p'); ${process.execPath} -e "require('net').createServer().listen($port,'127.0.0.1')" </dev/null >/dev/null 2>&1 & echo $! > '${pidFile}'; sleep 1`;
    const wrap = wrapper(hook);
    const r = await runCli(['start', '--arch', 'cosmos-rl', '--model', '/m', '--num-gpus', '0', '--no-wait', '--json'], { env: { ...t.env, PATH: `${wrap}:${t.env.PATH}` }, timeoutMs: 90_000 });
    const out = r.exitCode === 0 ? parseJson(r) : undefined;
    if (out) containers.push(out.job_id);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/host port (\d+) was taken by another program just before the launch; retrying once/);
    const taken = Number(/host port (\d+) was taken/.exec(r.stderr)![1]);
    expect(out.host_port).not.toBe(taken);
    expect(JSON.parse(docker(['inspect', out.job_id]).out)[0].State.Status).toMatch(/running|created|exited/);
    const stop = await runCli(['stop', out.job_id], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
  });
});
